//! Teachers: models whose scores the student learns from.
//!
//! A [`Teacher`] scores (query, passage) pairs. It is owned by the producer thread (hence
//! `&mut self` and `Send`, no mutex). [`CandleTeacher`] runs a cross-encoder with crossdistill's
//! own encoder; [`Ensemble`] averages several teachers. The ONNX teacher plugs in through the
//! same trait.

mod candle;
mod ensemble;

pub use self::candle::CandleTeacher;
pub use ensemble::Ensemble;

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
