//! The storage under a cache's redb database: the file, read with bounds checks, either
//! writable (held with an exclusive lock) or read-only (a shared lock, and writes kept in memory).
//!
//! redb's own file backend allocates whatever length a page pointer asks for and reads it, so
//! a damaged pointer into a truncated file can ask for gigabytes or read past the end. Here a
//! read past the end of the file is an I/O error (`UnexpectedEof`), which the cache reports as
//! damage, before any buffer is allocated.
//!
//! Opening a database writes to it even when nothing is committed (redb marks the file open,
//! and repairs it after a crash), so the read-only mode never writes the file: every write goes
//! to an overlay in memory that later reads see. A cache on a read-only file system, in a
//! directory without write permission or in a file without it can then be inspected and
//! exported.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::sync::Mutex;

/// How the file is held.
#[derive(Debug)]
enum Mode {
    /// Writes go to the file.
    Writable,
    /// Writes go to memory; the file is never changed.
    ReadOnly(Overlay),
}

/// What a read-only database wrote: its length, the length below which the file's bytes still
/// count, and the writes in order (later ones win).
#[derive(Debug, Default)]
struct Overlay {
    writes: Vec<(u64, Vec<u8>)>,
    file_valid_to: u64,
}

/// A redb storage backend over one file; see the module docs.
#[derive(Debug)]
pub(super) struct CacheFile {
    file: File,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    len: u64,
    mode: Mode,
}

/// The file is held by another process.
pub(super) fn is_locked(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock
}

impl CacheFile {
    /// Hold `file` for writing: an exclusive lock, as redb's own backend takes.
    pub fn writable(file: File) -> io::Result<Self> {
        lock(&file, libc::LOCK_EX)?;
        let len = file.metadata()?.len();
        Ok(Self {
            file,
            state: Mutex::new(State {
                len,
                mode: Mode::Writable,
            }),
        })
    }

    /// Hold `file` for reading only: a shared lock (a writer holds an exclusive one, so a cache
    /// being written cannot be opened, and one being read cannot be written).
    pub fn read_only(file: File) -> io::Result<Self> {
        lock(&file, libc::LOCK_SH)?;
        let len = file.metadata()?.len();
        Ok(Self {
            file,
            state: Mutex::new(State {
                len,
                mode: Mode::ReadOnly(Overlay {
                    writes: Vec::new(),
                    file_valid_to: len,
                }),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn lock(file: &File, operation: libc::c_int) -> io::Result<()> {
    // SAFETY: flock on a file descriptor this `File` owns; no memory is passed.
    let result = unsafe { libc::flock(file.as_raw_fd(), operation | libc::LOCK_NB) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn past_the_end(offset: u64, len: usize, file_len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "a read of {len} bytes at offset {offset} goes past the end of the file ({file_len} bytes): the file is truncated or a page pointer is damaged"
        ),
    )
}

impl redb::StorageBackend for CacheFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.state().len)
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let state = self.state();
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|end| end > state.len) {
            return Err(past_the_end(offset, len, state.len));
        }
        let mut buffer = vec![0; len];
        match &state.mode {
            Mode::Writable => self.file.read_exact_at(&mut buffer, offset)?,
            Mode::ReadOnly(overlay) => {
                let from_file = overlay.file_valid_to.saturating_sub(offset).min(len as u64);
                if from_file > 0 {
                    self.file
                        .read_exact_at(&mut buffer[..from_file as usize], offset)?;
                }
                for (at, bytes) in &overlay.writes {
                    let start = offset.max(*at);
                    let stop = (offset + len as u64).min(at + bytes.len() as u64);
                    if start < stop {
                        buffer[(start - offset) as usize..(stop - offset) as usize]
                            .copy_from_slice(&bytes[(start - at) as usize..(stop - at) as usize]);
                    }
                }
            }
        }
        Ok(buffer)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.state();
        match &mut state.mode {
            Mode::Writable => self.file.set_len(len)?,
            Mode::ReadOnly(overlay) => {
                overlay.file_valid_to = overlay.file_valid_to.min(len);
                for (at, bytes) in &mut overlay.writes {
                    bytes.truncate(len.saturating_sub(*at) as usize);
                }
                overlay.writes.retain(|(_, bytes)| !bytes.is_empty());
            }
        }
        state.len = len;
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> io::Result<()> {
        match self.state().mode {
            Mode::Writable => self.file.sync_data(),
            Mode::ReadOnly(_) => Ok(()),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut state = self.state();
        let end = offset + data.len() as u64;
        match &mut state.mode {
            Mode::Writable => self.file.write_all_at(data, offset)?,
            Mode::ReadOnly(overlay) => overlay.writes.push((offset, data.to_vec())),
        }
        state.len = state.len.max(end);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::StorageBackend;

    #[test]
    fn read_only_writes_stay_in_memory_and_reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let backend = CacheFile::read_only(File::open(&path).unwrap()).unwrap();
        backend.write(2, b"ab").unwrap();
        assert_eq!(backend.read(0, 6).unwrap(), b"01ab45");
        backend.set_len(4).unwrap();
        backend.set_len(8).unwrap();
        assert_eq!(backend.read(0, 8).unwrap(), b"01ab\0\0\0\0");
        backend.write(6, b"xyz").unwrap();
        assert_eq!(backend.len().unwrap(), 9);
        assert_eq!(backend.read(5, 4).unwrap(), b"\0xyz");
        let error = backend.read(8, 1 << 40).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
    }

    #[test]
    fn a_writer_and_a_reader_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let reader = CacheFile::read_only(File::open(&path).unwrap()).unwrap();
        let second_reader = CacheFile::read_only(File::open(&path).unwrap()).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        assert!(is_locked(&CacheFile::writable(file).unwrap_err()));
        drop((reader, second_reader));
    }
}
