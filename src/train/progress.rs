//! How the trainer reports what it does: a trait the caller implements (the CLI renders it;
//! library code never prints).

use serde_json::Value;

/// What the trainer tells whoever watches it (the CLI renders it; library code never prints).
pub trait TrainProgress {
    /// Training starts at `step` of `total_steps`.
    fn start(&mut self, _step: usize, _total_steps: usize) {}
    /// An optimizer step finished with this (batch) loss.
    fn step(&mut self, _step: usize, _loss: f32) {}
    /// A metrics row was logged.
    fn logged(&mut self, _row: &Value) {}
    /// A human-readable event (checkpoint saved, evaluation result, ...).
    fn message(&mut self, _text: &str) {}
    /// Evaluator `name` has scored `done` of its `total` pairs.
    fn evaluating(&mut self, _name: &str, _done: usize, _total: usize) {}
}

/// A progress sink that ignores everything.
pub struct Silent;
impl TrainProgress for Silent {}
