//! Hashes that name things kept on disk, each in one place, named for its job.
//!
//! Each algorithm is frozen: its output is stored (teacher fingerprints in score caches,
//! embedding cache file names, pair keys), so changing one would orphan what earlier runs wrote.
//! - [`file_hash`]: FNV-1a 64 of a model file, a part of teacher fingerprints (and so of the
//!   teacher ids of score caches).
//! - [`ContentDigest`]: SHA-256 over files and bytes, the name of an embedding cache file.
//! - [`stable_hash`]: XXH3-128, the key of a (query, passage) pair and the check of an entry in
//!   a score cache, and the hash of a chat template in a teacher fingerprint (published and
//!   frozen, so Python's `xxhash.xxh3_128` computes the same keys).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};
use twox_hash::XxHash3_128;

use crate::error::{Error, Result};

/// Feed a file's bytes to `consume`, a MiB at a time.
fn read_in_chunks(path: &Path, mut consume: impl FnMut(&[u8])) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| Error::io("cannot read", path, e))?;
        if n == 0 {
            return Ok(());
        }
        consume(&buffer[..n]);
    }
}

/// FNV-1a 64 over a file's bytes (streamed), as 16 hex digits: cheap, stable, enough to tell
/// weight files apart. Teacher fingerprints are made of these.
pub fn file_hash(path: &Path) -> Result<String> {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    read_in_chunks(path, |bytes| {
        for &byte in bytes {
            hash ^= byte as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    })?;
    Ok(format!("{hash:016x}"))
}

/// A SHA-256 digest of files and bytes, fed in order.
pub struct ContentDigest(Sha256);

impl Default for ContentDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl ContentDigest {
    /// An empty digest.
    pub fn new() -> Self {
        Self(Sha256::new())
    }

    /// Add bytes.
    pub fn update(&mut self, bytes: impl AsRef<[u8]>) {
        self.0.update(bytes);
    }

    /// Add a file's bytes (streamed).
    pub fn update_file(&mut self, path: &Path) -> Result<()> {
        read_in_chunks(path, |bytes| self.0.update(bytes))
    }

    /// The digest as 64 lowercase hex digits.
    pub fn hex(self) -> String {
        format!("{:x}", self.0.finalize())
    }
}

/// XXH3-128 of `bytes`: the same on every machine and in Python (`xxhash.xxh3_128`).
pub fn stable_hash(bytes: &[u8]) -> u128 {
    XxHash3_128::oneshot(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_their_published_reference_values() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        std::fs::write(&file, b"a").unwrap();
        // FNV-1a 64 of "a" (the FNV reference test vectors).
        assert_eq!(file_hash(&file).unwrap(), "af63dc4c8601ec8c");
        // SHA-256 of "abc" (FIPS 180-2, appendix B.1), fed as a file and as bytes.
        std::fs::write(&file, b"ab").unwrap();
        let mut digest = ContentDigest::new();
        digest.update_file(&file).unwrap();
        digest.update(b"c");
        assert_eq!(
            digest.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // XXH3-128 of the empty input (xxhash's reference value).
        assert_eq!(stable_hash(b""), 0x99aa06d3014798d86001c324468d497f);
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = file_hash(Path::new("/nonexistent/model.onnx"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/model.onnx"), "{err}");
    }
}
