//! [`PairScorer`]: a cross-encoder in inference, whatever its architecture.

use super::cross_encoder::{CrossEncoder, ScoreActivation};
use super::precision::Precision;
use super::source::ModelFiles;
use crate::error::Result;

/// A cross-encoder in inference: (query, passage) pairs in, one row of logits per pair out.
///
/// [`CrossEncoder`] (BERT, XLM-RoBERTa, ELECTRA: crossdistill's own trainable encoder)
/// implements it, and so do the inference-only models of [`crate::teacher`] (ModernBERT and
/// DeBERTa-v2 on candle-transformers, the Qwen2/Qwen3 causal-LM rerankers). `predict`, `rank`, `eval`, `mine --teacher` and the candle
/// teacher use models through it; `teacher::load_pair_scorer` picks the implementation from
/// config.json's `model_type`.
///
/// Contract: pairs are tokenised as sentence-transformers does (the tokenizer's pair template,
/// `longest_first` truncation to [`PairScorer::max_length`], padding to the longest pair of a
/// batch), scored in length-sorted batches, and returned in input order; no dropout.
pub trait PairScorer: Send + Sync {
    /// The files the model came from.
    fn files(&self) -> &ModelFiles;

    /// config.json's `model_type` as written (`bert`, `electra`, `modernbert`, `deberta-v2`, ...).
    fn model_type(&self) -> &str;

    /// Outputs of the head.
    fn num_labels(&self) -> usize;

    /// What decides the scores beyond config.json, the weight files, tokenizer.json and
    /// [`PairScorer::max_length`] (a causal-LM reranker's chat template and score tokens); part
    /// of the teacher fingerprint that keys the score cache. Empty by default.
    fn scoring_fingerprint(&self) -> String {
        String::new()
    }

    /// The truncation length, special tokens included.
    fn max_length(&self) -> usize;

    /// The precision the model computes in; logits come out in f32 whatever it is. F32 by
    /// default (models that can only run in f32).
    fn dtype(&self) -> Precision {
        Precision::F32
    }

    /// The activation `predict` applies by default: the model's saved `activation_fn`, else
    /// sigmoid for one label and identity for several (as sentence-transformers).
    fn default_activation(&self) -> ScoreActivation;

    /// Raw logits `[num_labels]` per pair, in input order, computed in length-sorted batches of
    /// `batch_size` (at least 1). `on_batch` is told how many pairs each finished batch held.
    fn predict_logits(
        &self,
        pairs: &[(&str, &str)],
        batch_size: usize,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>>;

    /// Scores (the first logit after `activation`), in input order.
    fn predict(
        &self,
        pairs: &[(&str, &str)],
        batch_size: usize,
        activation: ScoreActivation,
    ) -> Result<Vec<f32>> {
        Ok(self
            .predict_logits(pairs, batch_size, &mut |_| {})?
            .into_iter()
            .map(|row| activation.apply(row[0]))
            .collect())
    }
}

impl PairScorer for CrossEncoder {
    fn files(&self) -> &ModelFiles {
        CrossEncoder::files(self)
    }

    fn model_type(&self) -> &str {
        &self.config().model_type
    }

    fn num_labels(&self) -> usize {
        CrossEncoder::num_labels(self)
    }

    fn max_length(&self) -> usize {
        self.tokenizer().max_length()
    }

    fn dtype(&self) -> Precision {
        CrossEncoder::dtype(self)
    }

    fn default_activation(&self) -> ScoreActivation {
        CrossEncoder::default_activation(self)
    }

    fn predict_logits(
        &self,
        pairs: &[(&str, &str)],
        batch_size: usize,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        CrossEncoder::predict_logits(self, pairs, batch_size, on_batch)
    }

    fn predict(
        &self,
        pairs: &[(&str, &str)],
        batch_size: usize,
        activation: ScoreActivation,
    ) -> Result<Vec<f32>> {
        CrossEncoder::predict(self, pairs, batch_size, activation)
    }
}
