//! What a run carries from step to step and keeps in its checkpoints: the trainer state and the
//! loss sums since the last log row.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::pipeline::DataPosition;

/// What the trainer needs besides weights and optimizer to continue.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: usize,
    /// Data position after the last batch used.
    pub position: DataPosition,
    /// Loss sums since the last log row.
    pub window: LogWindow,
    /// Learning rate of the last step.
    pub last_lr: f64,
    /// Gradient norm of the last step.
    pub last_grad_norm: f64,
    /// Held-out agreement before training.
    pub agreement_before: Option<f64>,
    /// The student's scores of the held-out pairs before training, kept until the teacher's
    /// scores of them arrive (at the end of training) to give `agreement_before`.
    #[serde(default)]
    pub held_out_before: Option<Vec<f64>>,
    /// Held-out agreement after training.
    pub agreement_after: Option<f64>,
    /// The best value of `metric_for_best_model` so far.
    pub best_metric: Option<f64>,
    /// The step it was reached at.
    pub best_step: Option<usize>,
    /// Steps skipped for non-finite values (`train.on_nan = "skip"`) so far.
    #[serde(default)]
    pub skipped_steps: usize,
    /// Complete lines of each append-only log (path relative to the run directory) when the
    /// checkpoint was taken; filled in by [`checkpoint::save`](super::checkpoint::save). `None`
    /// in checkpoints of older versions.
    #[serde(default)]
    pub logs: Option<BTreeMap<String, usize>>,
}

/// Loss sums since the last log row.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LogWindow {
    steps: usize,
    loss: f64,
    per_loss: BTreeMap<String, f64>,
    pairs: usize,
    seconds: f64,
}

impl LogWindow {
    /// Add one optimizer step: its loss, each loss's summed value over the micro-batches (times
    /// `scale`, one over their number), the pairs it trained on and the seconds it took.
    pub fn add_step(
        &mut self,
        loss: f64,
        parts: BTreeMap<String, f64>,
        scale: f64,
        pairs: usize,
        seconds: f64,
    ) {
        self.steps += 1;
        self.loss += loss;
        for (key, value) in parts {
            *self.per_loss.entry(key).or_default() += value * scale;
        }
        self.pairs += pairs;
        self.seconds += seconds;
    }

    /// No step since the last log row.
    pub fn is_empty(&self) -> bool {
        self.steps == 0
    }

    /// The metrics row of the window at `step`: mean losses, learning rate, gradient norm and
    /// throughput.
    pub fn row(&self, step: usize, steps_per_epoch: usize, lr: f64, grad_norm: f64) -> Value {
        let n = self.steps.max(1) as f64;
        let mut row = serde_json::Map::new();
        row.insert("step".into(), json!(step));
        row.insert(
            "epoch".into(),
            json!(round(step as f64 / steps_per_epoch.max(1) as f64, 4)),
        );
        row.insert("loss".into(), json!(self.loss / n));
        for (kind, sum) in &self.per_loss {
            row.insert(kind.clone(), json!(sum / n));
        }
        row.insert("learning_rate".into(), json!(lr));
        row.insert("grad_norm".into(), json!(grad_norm));
        let pairs_per_s = if self.seconds > 0.0 {
            self.pairs as f64 / self.seconds
        } else {
            0.0
        };
        row.insert("pairs_per_s".into(), json!(round(pairs_per_s, 2)));
        Value::Object(row)
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}
