//! The run directory: checked before it is created, locked for the whole run, and full-disk
//! errors of its writes told with how to go on.

use std::path::Path;

use crate::error::{Error, Result};

/// `output_dir`, or the first of its parents that exists, must be a directory: say so with the
/// recipe key rather than as an OS error from creating it.
pub fn check_output_dir(output_dir: &Path) -> Result<()> {
    let mut path = output_dir;
    loop {
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(Error::invalid(format!(
                    "run.output_dir {} cannot be created: {} is a file, expected a directory",
                    output_dir.display(),
                    path.display()
                ))
                .with_hint("set run.output_dir (or --set run.output_dir=DIR) to a directory path, or move the file away"))
            }
            Err(_) => match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => path = parent,
                _ => return Ok(()),
            },
        }
    }
}

/// An exclusive lock on `output_dir/.lock`, held for the whole run: a second run on the same
/// directory gets an error naming the process that holds it. Released when the file closes
/// (also when the process dies).
pub fn lock_run_dir(output_dir: &Path) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let path = output_dir.join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("cannot open", &path, e))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)
                .map_err(|e| Error::io("cannot write", &path, e))?;
            file.rewind()
                .map_err(|e| Error::io("cannot write", &path, e))?;
            write!(file, "{}", std::process::id())
                .map_err(|e| Error::io("cannot write", &path, e))?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "whose id is not written yet".to_string(),
                pid => pid.to_string(),
            };
            Err(Error::invalid(format!(
                "{} is in use by another crossdistill run (process {holder}, holding {})",
                output_dir.display(),
                path.display()
            ))
            .with_hint("wait for it to finish, or choose another run.output_dir"))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("cannot lock", &path, e)),
    }
}

/// ENOSPC, EFBIG and EDQUOT: the disk, the file size limit or the quota is full.
pub fn explain_full_disk(error: Error) -> Error {
    let full = |source: &std::io::Error| {
        matches!(
            source.kind(),
            std::io::ErrorKind::StorageFull
                | std::io::ErrorKind::FileTooLarge
                | std::io::ErrorKind::QuotaExceeded
        )
    };
    match error {
        Error::Io {
            action,
            path,
            source,
        } if full(&source) => {
            let message = format!(
                "{action} {}: {source}; the run directory keeps its last complete checkpoint",
                path.display()
            );
            Error::invalid(message).with_hint(
                "free disk space (or raise the file size limit or quota), then run again with --resume",
            )
        }
        other => other,
    }
}
