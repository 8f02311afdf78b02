//! Checkpoints: `checkpoint-STEP/` holds the student (HF format), the optimizer moments, and the
//! trainer state (step, data position, log window), enough to resume exactly. Each is written
//! into a staging directory and swapped in whole, so a crash leaves the previous one intact.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::optim::AdamW;
use super::trainer::LogWindow;
use crate::error::{Error, Result};
use crate::fsutil::{write_atomic, StagedDir};
use crate::model::CrossEncoder;
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
    /// Held-out agreement after training.
    pub agreement_after: Option<f64>,
    /// The best value of `metric_for_best_model` so far.
    pub best_metric: Option<f64>,
    /// The step it was reached at.
    pub best_step: Option<usize>,
}

const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// The checkpoint directories of a run, by step (only complete ones).
pub fn list(output_dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(output_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(Error::io("cannot read", output_dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("cannot read", output_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(step) = name
            .strip_prefix("checkpoint-")
            .and_then(|s| s.parse::<usize>().ok())
        {
            if entry.path().join(STATE_FILE).is_file() {
                found.push((step, entry.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The newest complete checkpoint.
pub fn latest(output_dir: &Path) -> Result<Option<PathBuf>> {
    Ok(list(output_dir)?.pop().map(|(_, dir)| dir))
}

/// Write `checkpoint-STEP/` and drop the oldest beyond `keep`.
pub fn save(
    output_dir: &Path,
    student: &CrossEncoder,
    optimizer: &AdamW,
    state: &TrainerState,
    keep: Option<usize>,
) -> Result<PathBuf> {
    let dir = output_dir.join(format!("checkpoint-{}", state.step));
    let staged = StagedDir::new(&dir)?;
    student.write_to(staged.path(), student.default_activation())?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (i, (m, v)) in optimizer.moments().enumerate() {
        tensors.insert(
            format!("m.{i}"),
            Tensor::from_slice(m, m.len(), &Device::Cpu)?,
        );
        tensors.insert(
            format!("v.{i}"),
            Tensor::from_slice(v, v.len(), &Device::Cpu)?,
        );
    }
    tensors.insert(
        "step".into(),
        Tensor::from_slice(&[optimizer.steps() as f64], 1, &Device::Cpu)?,
    );
    candle_core::safetensors::save(&tensors, staged.path().join(OPTIMIZER_FILE))?;
    write_atomic(
        &staged.path().join(STATE_FILE),
        serde_json::to_string_pretty(state)?.as_bytes(),
    )?;
    staged.commit()?;
    if let Some(keep) = keep {
        let all = list(output_dir)?;
        for (_, old) in all.iter().take(all.len().saturating_sub(keep.max(1))) {
            std::fs::remove_dir_all(old).map_err(|e| Error::io("cannot remove", old, e))?;
        }
    }
    Ok(dir)
}

/// Restore weights and optimizer from `dir`; returns the trainer state.
pub fn load(dir: &Path, student: &CrossEncoder, optimizer: &mut AdamW) -> Result<TrainerState> {
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path)
        .map_err(|e| Error::io("cannot read", &state_path, e))?;
    let state: TrainerState = serde_json::from_str(&text).map_err(|e| {
        Error::input(
            &state_path,
            Some(e.line()),
            format!("invalid trainer state: {e}"),
        )
    })?;
    let weights = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)?;
    student.params().assign(&weights)?;
    let mut moments_by_name =
        candle_core::safetensors::load(dir.join(OPTIMIZER_FILE), &Device::Cpu)?;
    let step = moments_by_name
        .remove("step")
        .map(|t| t.to_vec1::<f64>())
        .transpose()?
        .and_then(|v| v.first().copied())
        .unwrap_or(0.0) as u64;
    let count = moments_by_name.len() / 2;
    let mut moments = Vec::with_capacity(count);
    for i in 0..count {
        let take = |name: String, map: &mut HashMap<String, Tensor>| -> Result<Vec<f32>> {
            map.remove(&name)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "{} lacks `{name}`",
                        dir.join(OPTIMIZER_FILE).display()
                    ))
                })?
                .to_vec1::<f32>()
                .map_err(Error::from)
        };
        moments.push((
            take(format!("m.{i}"), &mut moments_by_name)?,
            take(format!("v.{i}"), &mut moments_by_name)?,
        ));
    }
    optimizer.restore(step, moments)?;
    Ok(state)
}

/// Drop metrics rows logged after `step` (they belong to the part of the run being redone).
pub fn truncate_metrics(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_some_and(|s| s as usize <= step)
        })
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    write_atomic(path, out.as_bytes())
}
