//! Embeddings cached on disk between mining runs: `.npy` files (NumPy's format, so Python can
//! read them too) named by a SHA-256 of the model's files and settings, the prompt and the texts
//! (the `cache_folder` of sentence-transformers' `mine_hard_negatives`, `util/hard_negatives.py`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fingerprint::ContentDigest;
use crate::fsutil::write_atomic_with;
use crate::model::bi_encoder::{BiEncoder, Embeddings};

/// The `.npy` magic and version 1.0.
const NPY_MAGIC: &[u8] = b"\x93NUMPY\x01\x00";

/// A hex digest identifying `model`'s embeddings: its weight and tokenizer bytes, truncation
/// length and pooling. Reading the weights takes a moment; compute it once per run.
pub fn model_fingerprint(model: &BiEncoder) -> Result<String> {
    let mut hasher = ContentDigest::new();
    for path in model.weight_files() {
        hasher.update_file(path)?;
    }
    hasher.update_file(&model.model().files().tokenizer)?;
    hasher.update(
        format!(
            "|max_seq_length={}|pooling={:?}|normalized",
            model.max_seq_length(),
            model.pooling()
        )
        .as_bytes(),
    );
    Ok(hasher.hex())
}

/// The cache file for `texts` embedded by the model with `fingerprint` after `prompt`:
/// `{folder}/{kind}_embeddings_{sha256}.npy` (`kind` is `query` or `corpus`).
pub fn cache_path(
    folder: &Path,
    kind: &str,
    fingerprint: &str,
    prompt: Option<&str>,
    texts: &[String],
) -> PathBuf {
    let mut hasher = ContentDigest::new();
    hasher.update(fingerprint.as_bytes());
    // Lengths first, so that no two different lists hash the same bytes.
    match prompt {
        Some(prompt) => {
            hasher.update([1u8]);
            hasher.update((prompt.len() as u64).to_le_bytes());
            hasher.update(prompt.as_bytes());
        }
        None => hasher.update([0u8]),
    }
    hasher.update((texts.len() as u64).to_le_bytes());
    for text in texts {
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    folder.join(format!("{kind}_embeddings_{}.npy", hasher.hex()))
}

/// Write `embeddings` as a little-endian f32 `.npy` array of shape `(rows, dim)`, atomically.
pub fn write_npy(path: &Path, embeddings: &Embeddings) -> Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        embeddings.len(),
        embeddings.dim()
    );
    // Pad with spaces so that magic + length + header + '\n' is a multiple of 64 bytes.
    let unpadded = NPY_MAGIC.len() + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let header_len = u16::try_from(header.len()).expect("the header is under 200 bytes");
    write_atomic_with(path, |file| {
        let mut writer = std::io::BufWriter::new(file);
        use std::io::Write;
        writer.write_all(NPY_MAGIC)?;
        writer.write_all(&header_len.to_le_bytes())?;
        writer.write_all(header.as_bytes())?;
        for value in embeddings.values() {
            writer.write_all(&value.to_le_bytes())?;
        }
        writer.flush()
    })
}

/// Read an `.npy` file written by [`write_npy`] (or NumPy: `<f4`, C order, two dimensions).
pub fn read_npy(path: &Path) -> Result<Embeddings> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    let bad = |message: String| {
        Error::input(path, None, message)
            .with_hint("delete the cache file; it is rebuilt on the next run")
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (no \\x93NUMPY magic)".into()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        version => return Err(bad(format!("unsupported .npy version {version}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated .npy header".into()))?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(bad(format!(
            "expected a little-endian f32 array in C order, found header {}",
            header.trim()
        )));
    }
    let shape: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .map(|dims| {
            dims.split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .filter_map(|d| d.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let [rows, dim] = shape[..] else {
        return Err(bad(format!(
            "expected a 2-dimensional array, found header {}",
            header.trim()
        )));
    };
    let data = &bytes[start + header_len..];
    if data.len() != rows * dim * 4 {
        return Err(bad(format!(
            "shape ({rows}, {dim}) needs {} data bytes, found {}",
            rows * dim * 4,
            data.len()
        )));
    }
    let values = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Embeddings::new(dim.max(1), values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trips_and_has_numpy_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.npy");
        let embeddings = Embeddings::new(3, vec![1.0, -2.5, 0.125, 4.0, 5.0, 6.0]).unwrap();
        write_npy(&path, &embeddings).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // NumPy: the data starts at a multiple of 64 and the header names the shape.
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(header.ends_with('\n'));
        assert_eq!(read_npy(&path).unwrap(), embeddings);

        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let error = read_npy(&path).unwrap_err().to_string();
        assert!(error.contains("needs 24 data bytes, found 20"), "{error}");
    }

    #[test]
    fn cache_names_change_with_model_prompt_and_texts() {
        let folder = Path::new("cache");
        let texts = vec!["a".to_string(), "bc".to_string()];
        let base = cache_path(folder, "corpus", "m1", None, &texts);
        assert!(base
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("corpus_embeddings_"));
        assert_eq!(base, cache_path(folder, "corpus", "m1", None, &texts));
        assert_ne!(base, cache_path(folder, "corpus", "m2", None, &texts));
        assert_ne!(base, cache_path(folder, "corpus", "m1", Some(""), &texts));
        let regrouped = vec!["ab".to_string(), "c".to_string()];
        assert_ne!(base, cache_path(folder, "corpus", "m1", None, &regrouped));
    }
}
