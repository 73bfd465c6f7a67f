//! Progress on long work (import, apply, diff): a bar on stderr when it is a
//! terminal, nothing at all when it is piped or redirected.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Is stderr a terminal a person watches?
pub fn wanted() -> bool {
    std::io::stderr().is_terminal()
}

/// A progress bar that leaves the screen when dropped (on success and on
/// error alike), so messages after it start on a clean line.
#[derive(Debug)]
pub struct Bar(ProgressBar);

impl std::ops::Deref for Bar {
    type Target = ProgressBar;

    fn deref(&self) -> &ProgressBar {
        &self.0
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// A bar of bytes (`total` known) or a spinner with a byte count; hidden
/// when stderr is not a terminal.
pub fn bytes(total: Option<u64>, prefix: &str) -> Bar {
    Bar(make(total, prefix))
}

fn make(total: Option<u64>, prefix: &str) -> ProgressBar {
    if !wanted() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template(
                "{prefix} {msg:12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{spinner} {prefix} {msg} {bytes} {binary_bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_prefix(prefix.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
