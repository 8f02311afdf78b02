//! Checkpoints: `checkpoint-STEP/` holds the student (HF format), the optimizer moments, and the
//! trainer state (step, data position, log window), enough to resume exactly. Each is written
//! into a staging directory and swapped in whole, so a crash leaves the previous one intact.
//!
//! The run's append-only logs (`metrics.jsonl`, `eval/*_results.csv`) are not copied into a
//! checkpoint: the trainer state records how many complete lines each had when the checkpoint was
//! taken, and [`rewind_logs`] cuts them back to that on resume, so rows of the redone steps are
//! written once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::optim::AdamW;
use super::trainer_state::TrainerState;
use crate::error::{Error, Result};
use crate::fsutil::{save_safetensors, write_atomic, StagedDir};
use crate::model::CrossEncoder;

const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const METRICS_FILE: &str = "metrics.jsonl";

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

/// Write `checkpoint-STEP/` (with `recipe`, the run's resolved recipe, which a resume is
/// compared with) and drop the oldest beyond `keep`.
pub fn save(
    output_dir: &Path,
    student: &CrossEncoder,
    optimizer: &AdamW,
    state: &TrainerState,
    recipe: &str,
    keep: Option<usize>,
) -> Result<PathBuf> {
    let dir = output_dir.join(format!("checkpoint-{}", state.step));
    let mut state = state.clone();
    state.logs = Some(log_lines(output_dir)?);
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
    save_safetensors(&tensors, &staged.path().join(OPTIMIZER_FILE))?;
    write_atomic(
        &staged.path().join(STATE_FILE),
        serde_json::to_string_pretty(&state)?.as_bytes(),
    )?;
    write_atomic(
        &staged.path().join(super::resume::RECIPE_FILE),
        recipe.as_bytes(),
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

/// Restore weights and optimizer from `dir`; returns the trainer state. A damaged file is
/// named, with the previous checkpoint to fall back on; weights that do not fit the student
/// (another model than the run's) say so.
pub fn load(dir: &Path, student: &CrossEncoder, optimizer: &mut AdamW) -> Result<TrainerState> {
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path)
        .map_err(|e| Error::io("cannot read", &state_path, e))?;
    let state: TrainerState = serde_json::from_str(&text)
        .map_err(|e| damaged(dir, &state_path, &format!("invalid trainer state: {e}")))?;
    let weights_path = dir.join("model.safetensors");
    let weights = candle_core::safetensors::load(&weights_path, &Device::Cpu)
        .map_err(|e| damaged(dir, &weights_path, &e.to_string()))?;
    student.params().assign(&weights).map_err(|e| {
        Error::invalid(format!(
            "cannot resume from {}: its model.safetensors does not fit the student {} ({e})",
            dir.display(),
            student.files().name
        ))
        .with_hint(
            "resume with the student model the run started with, or start a new run in another run.output_dir",
        )
    })?;
    let optimizer_path = dir.join(OPTIMIZER_FILE);
    let mut moments_by_name = candle_core::safetensors::load(&optimizer_path, &Device::Cpu)
        .map_err(|e| damaged(dir, &optimizer_path, &e.to_string()))?;
    let step = moments_by_name
        .remove("step")
        .map(|t| t.to_vec1::<f64>())
        .transpose()
        .map_err(|e| damaged(dir, &optimizer_path, &e.to_string()))?
        .and_then(|v| v.first().copied())
        .unwrap_or(0.0) as u64;
    let count = moments_by_name.len() / 2;
    let mut moments = Vec::with_capacity(count);
    for i in 0..count {
        let mut take = |name: String| -> Result<Vec<f32>> {
            moments_by_name
                .remove(&name)
                .ok_or_else(|| damaged(dir, &optimizer_path, &format!("it lacks `{name}`")))?
                .to_vec1::<f32>()
                .map_err(|e| damaged(dir, &optimizer_path, &format!("`{name}`: {e}")))
        };
        let m = take(format!("m.{i}"))?;
        let v = take(format!("v.{i}"))?;
        moments.push((m, v));
    }
    optimizer.restore(step, moments).map_err(|e| {
        Error::invalid(format!(
            "cannot resume from {}: its optimizer state does not fit the student {} ({e})",
            dir.display(),
            student.files().name
        ))
        .with_hint(
            "resume with the student model the run started with, or start a new run in another run.output_dir",
        )
    })?;
    Ok(state)
}

/// A checkpoint file that cannot be read: name it, and the checkpoint before it (if any) to
/// resume from instead.
fn damaged(dir: &Path, file: &Path, cause: &str) -> Error {
    let previous = dir.parent().and_then(|output_dir| {
        let all = list(output_dir).ok()?;
        let (step, _) = all.iter().find(|(_, path)| path == dir)?;
        all.iter()
            .rev()
            .find(|(earlier, _)| earlier < step)
            .map(|(_, path)| path.clone())
    });
    let hint = match previous {
        Some(previous) => format!(
            "the checkpoint is damaged: move {} away and run again with --resume to continue from the previous checkpoint {}",
            dir.display(),
            previous.display()
        ),
        None => format!(
            "the checkpoint is damaged and there is no earlier one: move {} away and run again with --resume to start from step 0",
            dir.display()
        ),
    };
    Error::input(
        file,
        None,
        format!("cannot resume from this checkpoint: {cause}"),
    )
    .with_hint(hint)
}

/// The run's append-only logs that exist now: `metrics.jsonl` and the evaluators'
/// `eval/*_results.csv`, as (path relative to `output_dir`, full path).
fn append_only_logs(output_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut logs = Vec::new();
    let metrics = output_dir.join(METRICS_FILE);
    if metrics.is_file() {
        logs.push((METRICS_FILE.to_string(), metrics));
    }
    let eval_dir = output_dir.join("eval");
    let entries = match std::fs::read_dir(&eval_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(logs),
        Err(e) => return Err(Error::io("cannot read", &eval_dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("cannot read", &eval_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with("_results.csv") && entry.path().is_file() {
            logs.push((format!("eval/{name}"), entry.path()));
        }
    }
    logs.sort();
    Ok(logs)
}

/// Complete (newline-terminated) lines of every append-only log of the run.
pub fn log_lines(output_dir: &Path) -> Result<BTreeMap<String, usize>> {
    let mut lines = BTreeMap::new();
    for (name, path) in append_only_logs(output_dir)? {
        let bytes = std::fs::read(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        lines.insert(name, bytes.iter().filter(|&&b| b == b'\n').count());
    }
    Ok(lines)
}

/// Cut every append-only log back to what it held when `state`'s checkpoint was taken (`None`:
/// no checkpoint, so remove them all). A row written after the checkpoint, and a line half
/// written when the process died, are dropped; the resumed run writes them again. Checkpoints of
/// older versions, which did not record the logs, keep the metrics rows up to their step.
pub fn rewind_logs(output_dir: &Path, state: Option<&TrainerState>) -> Result<()> {
    let no_logs = BTreeMap::new();
    let recorded = match state {
        Some(TrainerState {
            logs: Some(logs), ..
        }) => logs,
        Some(legacy) => return truncate_metrics(&output_dir.join(METRICS_FILE), legacy.step),
        None => &no_logs,
    };
    for (name, path) in append_only_logs(output_dir)? {
        let keep = recorded.get(&name).copied().unwrap_or(0);
        if keep == 0 {
            std::fs::remove_file(&path).map_err(|e| Error::io("cannot remove", &path, e))?;
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        let end = bytes
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .nth(keep - 1)
            .map_or(bytes.len(), |(index, _)| index + 1);
        if end < bytes.len() {
            write_atomic(&path, &bytes[..end])?;
        }
    }
    Ok(())
}

/// Drop metrics rows logged after `step` (they belong to the part of the run being redone).
fn truncate_metrics(path: &Path, step: usize) -> Result<()> {
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

/// Remove what a killed run left half-written in `output_dir`: the temporary files, staging
/// directories and moved-aside directories of atomic writes (`.NAME.tmp-PID…`,
/// `.NAME.staging-PID`, `.NAME.old-PID`). Call it only while holding the run directory's lock,
/// so no live process is writing them.
pub fn remove_stale_temporaries(output_dir: &Path) -> Result<()> {
    for dir in [output_dir.to_path_buf(), output_dir.join("eval")] {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("cannot read", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("cannot read", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_temporary_name(&name) {
                continue;
            }
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| Error::io("cannot remove", &path, e))?;
        }
    }
    Ok(())
}

/// True for the names [`crate::fsutil`] and [`crate::data::write_jsonl_atomic`] give their
/// temporaries: a dot, a name, `.tmp-`, `.staging-` or `.old-`, then a process id (and for
/// JSONL temporaries `-N`).
fn is_temporary_name(name: &str) -> bool {
    if !name.starts_with('.') {
        return false;
    }
    ["tmp", "staging", "old"].iter().any(|tag| {
        name.rsplit_once(&format!(".{tag}-"))
            .is_some_and(|(head, tail)| {
                head.len() > 1
                    && !tail.is_empty()
                    && tail.chars().all(|c| c.is_ascii_digit() || c == '-')
                    && tail.starts_with(|c: char| c.is_ascii_digit())
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with_logs(logs: &[(&str, usize)]) -> TrainerState {
        TrainerState {
            step: 4,
            logs: Some(logs.iter().map(|(k, v)| (k.to_string(), *v)).collect()),
            ..TrainerState::default()
        }
    }

    #[test]
    fn logs_are_cut_back_to_the_lines_recorded_at_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        std::fs::create_dir(run.join("eval")).unwrap();
        std::fs::write(run.join("metrics.jsonl"), "{\"step\":2}\n{\"step\":4}\n").unwrap();
        std::fs::write(run.join("eval/dev_results.csv"), "step,x\n3,0.5\n").unwrap();
        let recorded = log_lines(run).unwrap();
        assert_eq!(
            recorded,
            BTreeMap::from([
                ("eval/dev_results.csv".to_string(), 2),
                ("metrics.jsonl".to_string(), 2)
            ])
        );
        // The run went on, then died halfway through a line; a new evaluator appeared.
        std::fs::write(
            run.join("metrics.jsonl"),
            "{\"step\":2}\n{\"step\":4}\n{\"step\":6}\n{\"st",
        )
        .unwrap();
        std::fs::write(run.join("eval/dev_results.csv"), "step,x\n3,0.5\n6,0.7\n").unwrap();
        std::fs::write(run.join("eval/new_results.csv"), "step,y\n6,1\n").unwrap();
        let state = TrainerState {
            logs: Some(recorded),
            ..TrainerState::default()
        };
        rewind_logs(run, Some(&state)).unwrap();
        assert_eq!(
            std::fs::read_to_string(run.join("metrics.jsonl")).unwrap(),
            "{\"step\":2}\n{\"step\":4}\n"
        );
        assert_eq!(
            std::fs::read_to_string(run.join("eval/dev_results.csv")).unwrap(),
            "step,x\n3,0.5\n"
        );
        assert!(!run.join("eval/new_results.csv").exists());
        // No checkpoint: every log goes.
        rewind_logs(run, None).unwrap();
        assert!(!run.join("metrics.jsonl").exists());
        assert!(!run.join("eval/dev_results.csv").exists());
    }

    #[test]
    fn checkpoints_without_recorded_logs_keep_metrics_up_to_their_step() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics.jsonl");
        std::fs::write(&metrics, "{\"step\":2}\n{\"step\":4}\n{\"step\":6}\n{\"st").unwrap();
        let legacy = TrainerState {
            step: 4,
            ..TrainerState::default()
        };
        rewind_logs(dir.path(), Some(&legacy)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&metrics).unwrap(),
            "{\"step\":2}\n{\"step\":4}\n"
        );
        // An empty record is not legacy: it removes the logs.
        rewind_logs(dir.path(), Some(&state_with_logs(&[]))).unwrap();
        assert!(!metrics.exists());
    }

    #[test]
    fn only_temporaries_of_atomic_writes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        for name in [
            ".checkpoint-6.staging-4242",
            ".final.old-17",
            ".final.staging-17",
        ] {
            std::fs::create_dir(run.join(name)).unwrap();
            std::fs::write(run.join(name).join("model.safetensors"), "x").unwrap();
        }
        for name in [".metrics.jsonl.tmp-99", ".scores.jsonl.tmp-99-3"] {
            std::fs::write(run.join(name), "x").unwrap();
        }
        let kept = [
            ".lock",
            "metrics.jsonl",
            "checkpoint-6",
            ".hidden",
            ".x.tmp-abc",
            ".tmp-12",
        ];
        for name in kept {
            std::fs::write(run.join(name), "x").unwrap();
        }
        remove_stale_temporaries(run).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(run)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected: Vec<String> = kept.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(left, expected);
    }
}
