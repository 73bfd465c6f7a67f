//! The command's one error: a sentence for a person, naming the layer or
//! file at fault, and the exit status it ends the process with.

use std::fmt;

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong, naming the layer or file.
    pub message: String,
    /// The exit status: 1 for an error, 2 for bad usage.
    pub code: u8,
}

impl Failure {
    /// A failure saying `message` (exit status 1).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }

    /// Bad usage that the argument parser cannot see (exit status 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }

    /// The same failure with `context` in front (`context: message`).
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self {
            message: format!("{context}: {}", self.message),
            code: self.code,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<overlay_driver::DriverError> for Failure {
    /// Driver errors already name the layer (`layer "abc" does not exist`).
    fn from(e: overlay_driver::DriverError) -> Self {
        Self::new(e.to_string())
    }
}

/// Result of the command's operations.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

/// Returns early with a [`Failure`] made by `format!`.
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::error::Failure::new(format!($($arg)*)))
    };
}
pub(crate) use fail;
