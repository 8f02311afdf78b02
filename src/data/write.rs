//! Writing JSONL outputs so that readers never see half a file.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Write `rows` to `path` as JSON Lines (one compact JSON value per line), atomically: the rows go
/// to a temporary file in the same directory, which is flushed to disk (`fsync`) and then renamed
/// over `path`; on Unix the directory is synced too, so the rename survives a crash. A reader
/// sees the old file or the complete new one, never a part. The directory must exist. On error
/// the temporary file is removed and `path` is left as it was.
pub fn write_jsonl_atomic(
    path: &Path,
    rows: impl IntoIterator<Item = serde_json::Value>,
) -> Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        Error::invalid(format!(
            "cannot write JSONL to {}: expected a file path, found no file name",
            path.display()
        ))
    })?;
    let (temporary, file) = create_temporary(&directory, &file_name.to_string_lossy())?;
    let written = write_rows(file, &temporary, rows).and_then(|()| {
        std::fs::rename(&temporary, path).map_err(|source| Error::io("cannot write", path, source))
    });
    if let Err(error) = written {
        // The write already failed; a leftover temporary file is the lesser problem.
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    sync_directory(&directory)
}

/// A new file `.NAME.tmp-PID-N` in `directory`, created exclusively.
fn create_temporary(directory: &Path, file_name: &str) -> Result<(PathBuf, File)> {
    let process = std::process::id();
    let mut attempt = 0u32;
    loop {
        let temporary = directory.join(format!(".{file_name}.tmp-{process}-{attempt}"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)
        {
            Ok(file) => return Ok((temporary, file)),
            Err(source) if source.kind() == std::io::ErrorKind::AlreadyExists && attempt < 1000 => {
                attempt += 1;
            }
            Err(source) => return Err(Error::io("cannot create", &temporary, source)),
        }
    }
}

fn write_rows(
    file: File,
    temporary: &Path,
    rows: impl IntoIterator<Item = serde_json::Value>,
) -> Result<()> {
    let io_error = |source| Error::io("cannot write", temporary, source);
    let mut writer = BufWriter::new(file);
    for row in rows {
        serde_json::to_writer(&mut writer, &row)
            .map_err(|error| io_error(std::io::Error::from(error)))?;
        writer.write_all(b"\n").map_err(io_error)?;
    }
    let file = writer
        .into_inner()
        .map_err(|error| io_error(error.into_error()))?;
    file.sync_all().map_err(io_error)
}

#[cfg(unix)]
fn sync_directory(directory: &Path) -> Result<()> {
    File::open(directory)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| Error::io("cannot sync", directory, source))
}

#[cfg(not(unix))]
fn sync_directory(_directory: &Path) -> Result<()> {
    // Directories cannot be opened for syncing on this platform; the rename is still atomic.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_one_line_per_row_and_replaces_the_old_file_leaving_no_temporary() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("scores.jsonl");
        std::fs::write(&path, "old contents\n").unwrap();
        let rows = vec![
            json!({"query": "q", "passage": "p", "score": 0.5}),
            json!({"query": "ü \"quoted\"\nnewline", "score": 1}),
        ];
        write_jsonl_atomic(&path, rows.clone()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        // Key order is kept (serde_json's preserve_order).
        assert_eq!(lines[0], r#"{"query":"q","passage":"p","score":0.5}"#);
        let read_back: Vec<serde_json::Value> = lines
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(read_back, rows);
        let names: Vec<String> = std::fs::read_dir(directory.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["scores.jsonl".to_string()]);
    }

    #[test]
    fn a_missing_directory_is_an_error_that_names_it() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("missing").join("out.jsonl");
        let error = write_jsonl_atomic(&path, [json!({})])
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("cannot create"), "{error}");
        assert!(error.contains("missing"), "{error}");
    }
}
