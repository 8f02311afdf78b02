//! Crash-safe file writes: write to a temporary file in the same directory, fsync, rename,
//! fsync the directory. A reader sees the old file or the new one, never half of one.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

fn tmp_sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

/// fsync a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("cannot sync directory", dir, e))
}

/// Create `dir` and its parents, with a clear error.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create directory", dir, e))
}

/// Write `path` atomically with whatever `write` puts into the file.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    if !parent.as_os_str().is_empty() {
        create_dir_all(parent)?;
    }
    let tmp = tmp_sibling(path, "tmp");
    let result = (|| {
        let mut file = File::create(&tmp)?;
        write(&mut file)?;
        file.flush()?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("cannot write", path, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("cannot move into place", path, e)
    })?;
    sync_dir(parent)
}

/// The process's file-mode creation mask, read without changing it (`umask(2)` can only be
/// read by setting it, which would race with other threads creating files). Linux reports it in
/// `/proc/self/status`; elsewhere the common 022 is assumed.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Umask:"))
                .and_then(|value| u32::from_str_radix(value.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Give `path` the mode a newly created file gets (0666 less the umask), as for every other
/// file we write: the safetensors crate writes through a private (0600) temporary file.
#[cfg(unix)]
fn set_default_mode(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = 0o666 & !umask();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("cannot set the permissions of", path, e))
}

#[cfg(not(unix))]
fn set_default_mode(_path: &Path) -> Result<()> {
    Ok(())
}

/// Save `tensors` as a safetensors file at `path` (not atomically: write it into a
/// [`StagedDir`]), with the mode of any new file (umask respected). A failed write names the
/// file and keeps the OS error (a full disk, a file size limit), which candle's own error leaves
/// out.
pub fn save_safetensors(
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    path: &Path,
) -> Result<()> {
    save_safetensors_with_candle(tensors, path)?;
    set_default_mode(path)
}

fn save_safetensors_with_candle(
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    path: &Path,
) -> Result<()> {
    candle_core::safetensors::save(tensors, path).map_err(|error| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(current) = cause {
            if let Some(io) = current.downcast_ref::<std::io::Error>() {
                let source = match io.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(io.kind(), io.to_string()),
                };
                return Error::io("cannot write", path, source);
            }
            cause = current.source();
        }
        Error::from(error)
    })
}

/// Write `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// A directory being filled next to its final place; [`StagedDir::commit`] swaps it in.
#[derive(Debug)]
pub struct StagedDir {
    staging: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl StagedDir {
    /// Start a fresh staging directory for `target`.
    pub fn new(target: &Path) -> Result<Self> {
        let staging = tmp_sibling(target, "staging");
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .map_err(|e| Error::io("cannot remove", &staging, e))?;
        }
        create_dir_all(&staging)?;
        Ok(Self {
            staging,
            target: target.to_path_buf(),
            committed: false,
        })
    }

    /// Where to write the files.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// fsync every file, then replace `target` with the staged directory.
    pub fn commit(mut self) -> Result<()> {
        for entry in std::fs::read_dir(&self.staging)
            .map_err(|e| Error::io("cannot read", &self.staging, e))?
        {
            let entry = entry.map_err(|e| Error::io("cannot read", &self.staging, e))?;
            if entry.path().is_file() {
                File::open(entry.path())
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io("cannot sync", entry.path(), e))?;
            }
        }
        sync_dir(&self.staging)?;
        let old = tmp_sibling(&self.target, "old");
        if self.target.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(|e| Error::io("cannot remove", &old, e))?;
            }
            std::fs::rename(&self.target, &old)
                .map_err(|e| Error::io("cannot move aside", &self.target, e))?;
        }
        std::fs::rename(&self.staging, &self.target)
            .map_err(|e| Error::io("cannot move into place", &self.target, e))?;
        self.committed = true;
        if let Some(parent) = self.target.parent() {
            sync_dir(parent)?;
        }
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io("cannot remove", &old, e))?;
        }
        Ok(())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn safetensors_files_get_the_mode_of_other_new_files() {
        let dir = tempfile::tempdir().unwrap();
        let tensors = std::collections::HashMap::from([(
            "w".to_string(),
            candle_core::Tensor::zeros(2, candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap(),
        )]);
        let weights = dir.path().join("model.safetensors");
        save_safetensors(&tensors, &weights).unwrap();
        let other = dir.path().join("config.json");
        write_atomic(&other, b"{}").unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let plain = dir.path().join("plain");
        File::create(&plain).unwrap();
        assert_eq!(mode(&weights), mode(&plain));
        assert_eq!(mode(&other), mode(&plain));
        assert_eq!(mode(&plain), 0o666 & !umask());
    }
}
