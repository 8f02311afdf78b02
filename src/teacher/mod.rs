//! Teachers: models whose scores the student learns from.
//!
//! A [`Teacher`] scores (query, passage) pairs. It is owned by the producer thread (hence
//! `&mut self` and `Send`, no mutex). [`CandleTeacher`] runs a cross-encoder with candle:
//! crossdistill's own encoder (BERT, XLM-RoBERTa, ELECTRA, ModernBERT: the students' model in
//! eval mode) or candle-transformers' DeBERTa-v2 ([`DebertaV2CrossEncoder`]), chosen from
//! config.json's `model_type` by [`load_pair_scorer`] / [`load_candle_teacher`], or a
//! [`CausalLmReranker`] (Qwen2/Qwen3 in sentence-transformers 6's `LogitScore` layout);
//! [`OnnxTeacher`] runs a cross-encoder exported to ONNX with ONNX Runtime; [`Ensemble`]
//! averages several teachers (of any mix of architectures and backends).

mod candle;
mod causal_lm;
pub mod chat_template;
mod deberta;
mod ensemble;
mod inference;
mod load;
mod onnx;
pub mod qwen;

pub use self::candle::CandleTeacher;
pub use causal_lm::{is_causal_lm_reranker, CausalLmReranker, LogitScoreConfig};
pub use deberta::{DebertaV2Config, DebertaV2CrossEncoder};
pub use ensemble::Ensemble;
pub use load::{load_candle_teacher, load_pair_scorer, CANDLE_MODEL_TYPES};
pub use onnx::{OnnxDevice, OnnxSignature, OnnxTeacher};

use crate::error::Result;

/// A model that scores pairs for distillation.
pub trait Teacher: Send {
    /// Scores for `pairs`, in input order, after the teacher's activation. Implementations
    /// batch internally (length-sorted) and must return exactly one score per pair.
    fn score(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<f32>>;

    /// A string that changes whenever the scores could change: weights and tokenizer hashes,
    /// backend, max_length, activation (used as the score cache key).
    fn fingerprint(&self) -> String;

    /// A short human-readable description for logs and model cards.
    fn describe(&self) -> String;
}
