//! `metrics.jsonl`: one JSON row per line, appended and synced as it is written.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// Append one JSON row to metrics.jsonl and fsync it.
pub fn append_metrics(path: &Path, row: &Value) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("cannot open", path, e))?;
    let mut line = serde_json::to_vec(row)?;
    line.push(b'\n');
    file.write_all(&line)
        .and_then(|_| file.sync_data())
        .map_err(|e| Error::io("cannot write", path, e))
}
