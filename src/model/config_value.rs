//! Typed reads of config.json values, with errors that name the key, the file and what was found.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// A non-negative integer at `key` (absent or null: `None`).
pub(crate) fn get_usize(raw: &Value, key: &str, path: &Path) -> Result<Option<usize>> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
            Error::input(
                path,
                None,
                format!("`{key}` must be a non-negative integer, found {v}"),
            )
        }),
    }
}

/// A number at `key` (absent or null: `None`).
pub(super) fn get_f64(raw: &Value, key: &str, path: &Path) -> Result<Option<f64>> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            Error::input(path, None, format!("`{key}` must be a number, found {v}"))
        }),
    }
}

/// A boolean at `key` (absent or null: `None`).
pub(super) fn get_bool(raw: &Value, key: &str, path: &Path) -> Result<Option<bool>> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| {
            Error::input(
                path,
                None,
                format!("`{key}` must be true or false, found {v}"),
            )
        }),
    }
}

/// A string at `key` (absent or null: `None`).
pub(super) fn get_str<'a>(raw: &'a Value, key: &str, path: &Path) -> Result<Option<&'a str>> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or_else(|| {
            Error::input(path, None, format!("`{key}` must be a string, found {v}"))
        }),
    }
}

/// `value` when present and positive, else an error naming `key`.
pub(super) fn require(value: Option<usize>, key: &str, path: &Path) -> Result<usize> {
    value.filter(|v| *v > 0).ok_or_else(|| {
        Error::input(
            path,
            None,
            format!("`{key}` is missing or 0; an encoder config needs it"),
        )
    })
}

/// Outputs of the head: `num_labels`, else the size of `id2label`, else 1 (as transformers
/// reads a sequence-classification config).
pub(crate) fn num_labels(raw: &Value, path: &Path) -> Result<usize> {
    Ok(match get_usize(raw, "num_labels", path)? {
        Some(n) => n,
        None => raw
            .get("id2label")
            .and_then(Value::as_object)
            .map(|m| m.len())
            .filter(|n| *n > 0)
            .unwrap_or(1),
    })
}

/// The activation sentence-transformers v4/v5 saved in config.json
/// (`sentence_transformers.activation_fn`), as written.
pub(crate) fn saved_activation_fn(raw: &Value) -> Option<&str> {
    raw.get("sentence_transformers")?
        .get("activation_fn")?
        .as_str()
}
