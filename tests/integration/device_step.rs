//! The device-resident training step (`StepOptimizer::Device`: gradients, norm, non-finite check,
//! clipping and fused AdamW on the device, scalars read once per log window) run on the CPU with
//! `CROSSDISTILL_DEVICE_STEP=1`, against the host path: the same metrics rows, the same weights,
//! the same skipped steps and errors, and an exact resume.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{fixture, model_weights, stderr, write_distill_recipe};

fn run(dir: &Path, args: &[&str], device_step: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crossdistill"));
    command
        .args(args)
        .current_dir(dir)
        .env("HF_HUB_OFFLINE", "1");
    if device_step {
        command.env("CROSSDISTILL_DEVICE_STEP", "1");
    } else {
        command.env_remove("CROSSDISTILL_DEVICE_STEP");
    }
    command.output().expect("the crossdistill binary runs")
}

/// The largest difference between two runs' final weights, relative to each tensor's largest
/// magnitude.
fn weight_difference(a: &Path, b: &Path) -> f64 {
    let (a, b) = (model_weights(a), model_weights(b));
    assert_eq!(a.len(), b.len());
    let mut worst = 0f64;
    for ((name, x), (other, y)) in a.iter().zip(&b) {
        assert_eq!(name, other);
        let scale = x
            .iter()
            .chain(y)
            .fold(0f32, |s, v| s.max(v.abs()))
            .max(1e-12);
        let diff = x.iter().zip(y).fold(0f32, |d, (p, q)| d.max((p - q).abs()));
        worst = worst.max(f64::from(diff / scale));
    }
    worst
}

fn training_rows(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|row| row.get("loss").is_some())
        .collect()
}

fn close(a: &Value, b: &Value, key: &str) -> bool {
    let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
    (x - y).abs() <= 1e-5 * x.abs().max(y.abs()).max(1e-3)
}

#[test]
fn the_device_step_trains_like_the_host_path_and_resumes_exactly() {
    let host_dir = tempfile::tempdir().unwrap();
    let device_dir = tempfile::tempdir().unwrap();
    let extra = "epochs = 2\ngradient_accumulation = 2\nmax_grad_norm = 0.05";
    for (dir, device_step) in [(&host_dir, false), (&device_dir, true)] {
        write_distill_recipe(dir.path(), 48, 8, extra);
        let output = run(dir.path(), &["train", "recipe.toml"], device_step);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(
            stderr(&output).contains("device-resident step on Cpu"),
            device_step,
            "{}",
            stderr(&output)
        );
    }
    let (host_run, device_run) = (host_dir.path().join("run"), device_dir.path().join("run"));
    let (host_rows, device_rows) = (training_rows(&host_run), training_rows(&device_run));
    assert_eq!(host_rows.len(), device_rows.len());
    assert!(host_rows.len() >= 3, "{host_rows:?}");
    for (h, d) in host_rows.iter().zip(&device_rows) {
        assert_eq!(h["step"], d["step"]);
        assert_eq!(h["learning_rate"], d["learning_rate"]);
        for key in ["loss", "loss/mse", "grad_norm"] {
            assert!(close(h, d, key), "{key}: host {h} vs device {d}");
        }
    }
    // Clipping was active (the norm is well above 0.05), so the clip factor was exercised.
    assert!(host_rows
        .iter()
        .all(|r| r["grad_norm"].as_f64().unwrap() > 0.05));
    let difference = weight_difference(&host_run.join("final"), &device_run.join("final"));
    // The fused kernels' CPU code is the host AdamW's arithmetic, and both norms sum in f64 in
    // the same order: the paths agree bit for bit.
    assert_eq!(difference, 0.0, "final weights differ");

    // Resume the device-path run from checkpoint-3 (its optimizer state saved from the device):
    // the same final weights as the uninterrupted device-path run.
    let reference = device_dir.path().join("reference");
    std::fs::rename(device_run.join("final"), &reference).unwrap();
    for entry in std::fs::read_dir(&device_run).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() && name != "checkpoint-3" {
            std::fs::remove_dir_all(&path).unwrap();
        }
    }
    let resumed = run(
        device_dir.path(),
        &["train", "recipe.toml", "--resume"],
        true,
    );
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(
        weight_difference(&reference, &device_run.join("final")),
        0.0
    );
    assert_eq!(training_rows(&device_run).len(), device_rows.len());
}

/// A loss that overflows at step 3 (learning rate 1e30): the device path skips it on the device
/// and tells of it when the window is read, or stops with the host path's error.
fn diverging(dir: &Path, on_nan: &str) {
    let rows: Vec<String> = (0..6)
        .map(|i| {
            format!(
                r#"{{"query": "question {i}", "passage": "answer {i}", "score": {}}}"#,
                f64::from(i % 3) / 2.0
            )
        })
        .collect();
    std::fs::write(dir.join("train.jsonl"), rows.join("\n") + "\n").unwrap();
    let recipe = format!(
        r#"version = 1
[run]
output_dir = "run"
seed = 1
[student]
model = "{student}"
max_length = 32
[data.train]
path = "train.jsonl"
[[loss]]
kind = "mse"
labels = "data"
[train]
batch_size = 2
max_steps = 3
learning_rate = 1e30
on_nan = "{on_nan}"
"#,
        student = fixture("tiny-bert-ce").display()
    );
    std::fs::write(dir.join("recipe.toml"), recipe).unwrap();
}

#[test]
fn a_non_finite_step_is_skipped_or_stops_the_run_on_the_device_path_as_on_the_host() {
    for on_nan in ["stop", "skip"] {
        let mut messages = Vec::new();
        for device_step in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            diverging(dir.path(), on_nan);
            let output = run(dir.path(), &["train", "recipe.toml"], device_step);
            let message = stderr(&output);
            if on_nan == "stop" {
                assert_eq!(output.status.code(), Some(2), "{message}");
                assert!(
                    message.contains("non-finite loss or gradient at step 3 (loss NaN); the batch holds the rows at lines [2, 4] of"),
                    "{message}"
                );
            } else {
                assert!(output.status.success(), "{message}");
                assert!(
                    message.contains("step 3: non-finite loss or gradient (loss NaN), batch skipped (rows at lines [2, 4] of"),
                    "{message}"
                );
                assert!(dir.path().join("run/final/model.safetensors").is_file());
            }
            let dir_name = dir.path().display().to_string();
            messages.push(
                message
                    .lines()
                    .filter_map(|l| l.find("step 3").map(|at| l[at..].replace(&dir_name, "DIR")))
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(messages[0], messages[1], "on_nan = {on_nan}");
    }
}
