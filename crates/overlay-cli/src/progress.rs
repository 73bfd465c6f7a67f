//! Progress on long work (import, apply, diff): a bar on stderr when it is a
//! terminal, nothing at all when it is piped or redirected.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Is stderr a terminal a person watches?
pub fn wanted() -> bool {
    std::io::stderr().is_terminal()
}

/// A progress bar that leaves the screen when dropped (on success and on
/// error alike), so messages after it start on a clean line.
#[derive(Debug)]
pub struct Bar {
    bar: ProgressBar,
    /// The [`Multi`] it is a line of, which must forget it too.
    multi: Option<MultiProgress>,
}

impl std::ops::Deref for Bar {
    type Target = ProgressBar;

    fn deref(&self) -> &ProgressBar {
        &self.bar
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        if let Some(m) = &self.multi {
            m.remove(&self.bar);
        }
    }
}

/// A bar of bytes (`total` known) or a spinner with a byte count; hidden
/// when stderr is not a terminal.
pub fn bytes(total: Option<u64>, prefix: &str) -> Bar {
    Bar {
        bar: make(total, prefix),
        multi: None,
    }
}

/// Bars of work done side by side (the layers of an import), one line
/// each, with lines printed above them as pieces finish; all hidden, and
/// nothing printed, when stderr is not a terminal (scripts read stdout and
/// the error, not a stream of progress).
#[derive(Debug, Clone)]
pub struct Multi(Option<MultiProgress>);

impl Multi {
    /// Bars on stderr if it is a terminal.
    pub fn new() -> Self {
        Self(wanted().then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())))
    }

    /// A new line: a bar of bytes, as [`bytes`] makes, below the others.
    pub fn bytes(&self, total: Option<u64>, prefix: &str) -> Bar {
        match &self.0 {
            Some(m) => Bar {
                bar: m.add(make(total, prefix)),
                multi: Some(m.clone()),
            },
            None => Bar {
                bar: ProgressBar::hidden(),
                multi: None,
            },
        }
    }

    /// Prints `line` above the bars (on a terminal only).
    pub fn println(&self, line: &str) {
        if let Some(m) = &self.0 {
            let _ = m.println(line);
        }
    }
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
