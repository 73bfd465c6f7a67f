//! The `overlay2` command.
//!
//! **Not implemented yet** (issue #8). Until it lands the binary says so and
//! exits with status 1 instead of pretending to work; the runnable example of
//! what exists today is `cargo run -p overlay-layout --example demo`
//! (see the workspace README).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    eprintln!("overlay2: the command line is not implemented yet (overlay2-rs issue #8)");
    std::process::ExitCode::FAILURE
}
