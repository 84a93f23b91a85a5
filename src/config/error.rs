//! Errors of the config module and where in the input they were found.

use std::fmt;
use std::path::PathBuf;

/// Where a setting came from, for error and warning messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// A logical line of zoo.cfg; the number is the 1-based physical line it starts on.
    Line(usize),
    /// A JVM system property (`-Dkey=value` from `JVMFLAGS`/`SERVER_JVMFLAGS`).
    SystemProperty,
    /// The configuration as a whole (a required key is missing, or keys disagree).
    File,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(line) => write!(f, "zoo.cfg line {line}"),
            Location::SystemProperty => f.write_str("system property"),
            Location::File => f.write_str("zoo.cfg"),
        }
    }
}

/// Why a configuration could not be loaded.
///
/// Unknown keys are never errors (they become warnings, see [`super::Loaded`]); values that
/// ZooKeeper would reject, or that would make ferrokeeper misbehave, are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that was opened.
        path: PathBuf,
        /// The underlying IO error.
        source: std::io::Error,
    },
    /// The text is not valid Java properties syntax (only a malformed `\uxxxx` escape can cause this).
    #[error("{location}: {message}")]
    Syntax {
        /// Where the bad escape is.
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// One key has a value that cannot be used, e.g. `zoo.cfg line 4: tickTime: "abc" is not a valid integer`.
    #[error("{location}: {key}: {value:?} {reason}")]
    InvalidValue {
        /// Where the key was set.
        location: Location,
        /// The key as spelled in the input (so `zookeeper.snapCount` stays `zookeeper.snapCount`).
        key: String,
        /// The trimmed value.
        value: String,
        /// Why it was rejected, phrased to follow the quoted value.
        reason: String,
    },
    /// A required key is missing or two keys contradict each other.
    #[error("{location}: {message}")]
    Invalid {
        /// The line of the key that made the contradiction visible, or [`Location::File`].
        location: Location,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::InvalidValue`].
    pub(crate) fn value(location: Location, key: &str, value: &str, reason: impl Into<String>) -> Self {
        ConfigError::InvalidValue {
            location,
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`ConfigError::Invalid`].
    pub(crate) fn invalid(location: Location, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            location,
            message: message.into(),
        }
    }
}
