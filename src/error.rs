//! The crate's one error type.
//!
//! Every failure that reaches a user names what was expected, what was found, where (file and
//! line, or recipe key) and how to fix it. Library code returns [`Error`]; only `main.rs` turns it
//! into `anyhow` for printing. Errors keep their source so the CLI can print the whole cause chain.

use std::path::{Path, PathBuf};

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where in a file a problem sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, when the format has lines.
    pub line: Option<usize>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.path.display(), line),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// Everything that can go wrong in crossdistill.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad user input in a file: a data row, a recipe, a model config.
    #[error("{location}: {message}{}", hint_suffix(.hint))]
    Input {
        /// File and line.
        location: Location,
        /// What was expected and what was found.
        message: String,
        /// How to fix it, when we know.
        hint: Option<String>,
    },
    /// Bad user input that is not tied to a file position (a flag, a parameter, a shape).
    #[error("{message}{}", hint_suffix(.hint))]
    Invalid {
        /// What was expected and what was found.
        message: String,
        /// How to fix it, when we know.
        hint: Option<String>,
    },
    /// A file or directory could not be read or written.
    #[error("{action} {}", .path.display())]
    Io {
        /// "cannot read", "cannot write", ...
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A model could not be found or loaded.
    #[error("model {model}: {message}{}", hint_suffix(.hint))]
    Model {
        /// The path or hub id the user gave.
        model: String,
        /// What went wrong.
        message: String,
        /// How to fix it.
        hint: Option<String>,
    },
    /// A tensor operation failed (shape mismatch inside candle, device error, ...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(#[source] tokenizers::Error),
    /// JSON that could not be (de)serialised outside a user file.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A worker thread died (panic) or hung up; the message says which and why.
    #[error("{thread} thread failed: {message}")]
    Thread {
        /// Which thread.
        thread: &'static str,
        /// The panic payload or reason.
        message: String,
    },
    /// Several independent problems (e.g. every error found in a recipe).
    #[error("{} problems:\n{}", .0.len(), list(.0))]
    Many(Vec<Error>),
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(hint) => format!(" (hint: {hint})"),
        None => String::new(),
    }
}

fn list(errors: &[Error]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    /// A problem at a file position.
    pub fn input(path: impl AsRef<Path>, line: Option<usize>, message: impl Into<String>) -> Self {
        Error::Input {
            location: Location {
                path: path.as_ref().to_path_buf(),
                line,
            },
            message: message.into(),
            hint: None,
        }
    }

    /// A problem with a value the user passed (flag, parameter, tensor shape).
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid {
            message: message.into(),
            hint: None,
        }
    }

    /// A model loading problem.
    pub fn model(model: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Model {
            model: model.into(),
            message: message.into(),
            hint: None,
        }
    }

    /// An I/O failure on `path`.
    pub fn io(action: &'static str, path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Attach (or replace) the "how to fix it" part.
    pub fn with_hint(mut self, new_hint: impl Into<String>) -> Self {
        match &mut self {
            Error::Input { hint, .. } | Error::Invalid { hint, .. } | Error::Model { hint, .. } => {
                *hint = Some(new_hint.into())
            }
            _ => {}
        }
        self
    }

    /// True for errors caused by what the user gave us (exit code 2 in the CLI either way, but
    /// useful to callers that want to retry on I/O problems only).
    pub fn is_user_input(&self) -> bool {
        matches!(
            self,
            Error::Input { .. } | Error::Invalid { .. } | Error::Model { .. } | Error::Many(_)
        )
    }
}

impl From<tokenizers::Error> for Error {
    fn from(e: tokenizers::Error) -> Self {
        Error::Tokenizer(e)
    }
}
