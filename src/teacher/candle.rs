//! The candle teacher: a cross-encoder run in eval mode by candle — crossdistill's own encoder
//! (BERT, XLM-RoBERTa, ELECTRA), a candle-transformers model (ModernBERT, DeBERTa-v2) or a
//! causal-LM reranker (Qwen2, Qwen3), through [`PairScorer`]; `load_candle_teacher` picks the
//! model from config.json.

use super::Teacher;
use crate::error::{Error, Result};
use crate::fingerprint::file_hash;
use crate::model::{PairScorer, ScoreActivation};

/// A cross-encoder teacher.
pub struct CandleTeacher {
    model: Box<dyn PairScorer>,
    batch_size: usize,
    activation: ScoreActivation,
    fingerprint: String,
}

impl CandleTeacher {
    /// Wrap a loaded model ([`crate::model::CrossEncoder`] or any other [`PairScorer`]).
    pub fn new(
        model: impl PairScorer + 'static,
        batch_size: usize,
        activation: ScoreActivation,
    ) -> Result<Self> {
        Self::from_boxed(Box::new(model), batch_size, activation)
    }

    /// Wrap a loaded model of any architecture. The fingerprint covers the architecture
    /// (`model_type`), config.json, the weight files, tokenizer.json, the truncation length, the
    /// activation, the precision when it is not f32, and [`PairScorer::scoring_fingerprint`] (a
    /// chat template). The device is not part of it: a model scores the same on any device.
    pub fn from_boxed(
        model: Box<dyn PairScorer>,
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
        let mut fingerprint = format!(
            "candle|arch={}|config={}|weights={}|tokenizer={}|max_length={}|activation={:?}",
            model.model_type(),
            file_hash(&files.config)?,
            hashes.join(","),
            file_hash(&files.tokenizer)?,
            model.max_length(),
            activation
        );
        // Reduced precision changes the scores: a bf16 teacher's scores must not be served from
        // (or into) an f32 teacher's cache entries. f32 keeps the fingerprint it always had.
        if !model.dtype().is_f32() {
            fingerprint.push_str(&format!("|dtype={}", model.dtype()));
        }
        let scoring = model.scoring_fingerprint();
        if !scoring.is_empty() {
            fingerprint.push('|');
            fingerprint.push_str(&scoring);
        }
        Ok(Self {
            model,
            batch_size,
            activation,
            fingerprint,
        })
    }

    /// The wrapped model.
    pub fn model(&self) -> &dyn PairScorer {
        self.model.as_ref()
    }

    /// The activation [`Teacher::score`] applies.
    pub fn activation(&self) -> ScoreActivation {
        self.activation
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
        let dtype = self.model.dtype();
        format!(
            "{} (candle, {}, {:?}{})",
            self.model.files().reference(),
            self.model.model_type(),
            self.activation,
            if dtype.is_f32() {
                String::new()
            } else {
                format!(", {dtype}")
            }
        )
    }
}
