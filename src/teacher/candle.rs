//! The candle teacher: a cross-encoder run by crossdistill's own encoder, in eval mode.

use std::io::Read;
use std::path::Path;

use super::Teacher;
use crate::error::{Error, Result};
use crate::model::{CrossEncoder, ScoreActivation};

/// A cross-encoder teacher.
pub struct CandleTeacher {
    model: CrossEncoder,
    batch_size: usize,
    activation: ScoreActivation,
    fingerprint: String,
}

/// FNV-1a 64 over a file's bytes (streamed): cheap, stable, enough to tell weight files apart.
pub fn file_hash(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| Error::io("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        for &byte in &buffer[..n] {
            hash ^= byte as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    Ok(format!("{hash:016x}"))
}

impl CandleTeacher {
    /// Wrap a loaded model.
    pub fn new(
        model: CrossEncoder,
        batch_size: usize,
        activation: ScoreActivation,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::invalid(
                "teacher batch_size must be at least 1, found 0",
            ));
        }
        let files = model.files();
        let mut hashes = Vec::new();
        for weights in &files.weights {
            hashes.push(file_hash(weights)?);
        }
        let fingerprint = format!(
            "candle|weights={}|tokenizer={}|max_length={}|activation={:?}",
            hashes.join(","),
            file_hash(&files.tokenizer)?,
            model.tokenizer().max_length(),
            activation
        );
        Ok(Self {
            model,
            batch_size,
            activation,
            fingerprint,
        })
    }

    /// The wrapped model.
    pub fn model(&self) -> &CrossEncoder {
        &self.model
    }
}

impl Teacher for CandleTeacher {
    fn score(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        self.model.predict(pairs, self.batch_size, self.activation)
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn describe(&self) -> String {
        format!(
            "{} (candle, {:?})",
            self.model.files().reference(),
            self.activation
        )
    }
}
