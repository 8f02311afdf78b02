//! The `cuda` feature on an NVIDIA GPU: candle's CUDA backend runs the composed ops (the fused CPU
//! kernels do not apply there). Built only with `--features cuda` (this target's
//! `required-features`) and run by `scripts/cuda-check` on a machine with a GPU; the CPU suite
//! checks the same code paths on the CPU.
//!
//! - logits of both torch fixtures within 1e-5, through the library and `predict --device cuda`;
//! - gradients of every parameter on the GPU equal the CPU's;
//! - a short distillation run with `run.device = "cuda"` tracks the same run on the CPU.

#[allow(dead_code)]
#[path = "../integration/common.rs"]
mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use crossdistill::model::{CrossEncoder, LoadOptions, ScoreActivation};

use common::{crossdistill, expected_rows, fixture, max_abs_diff, stderr, write_distill_recipe};

fn gpu() -> Device {
    Device::new_cuda(0).expect("a CUDA device (this test target needs an NVIDIA GPU)")
}

fn load(name: &str, device: &Device) -> CrossEncoder {
    let options = LoadOptions {
        device: device.clone(),
        ..LoadOptions::default()
    };
    CrossEncoder::load(fixture(name).to_str().unwrap(), None, &options).unwrap()
}

fn fixture_pairs(name: &str) -> Vec<(String, String)> {
    expected_rows(name)
        .iter()
        .map(|r| {
            (
                r["query"].as_str().unwrap().to_string(),
                r["passage"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn fixture_logits_on_cuda_match_torch() {
    for name in ["tiny-bert-ce", "tiny-xlmr-ce"] {
        let model = load(name, &gpu());
        let expected: Vec<f32> = expected_rows(name)
            .iter()
            .map(|r| r["logit"].as_f64().unwrap() as f32)
            .collect();
        for batch_size in [1, 3, 64] {
            let logits = model
                .predict(&fixture_pairs(name), batch_size, ScoreActivation::Identity)
                .unwrap();
            let diff = max_abs_diff(&logits, &expected);
            println!("{name} batch {batch_size}: max |logit - torch| = {diff:.2e}");
            assert!(diff <= 1e-5, "{name} batch {batch_size}: {diff}");
        }
    }
}

#[test]
fn predict_cli_on_cuda_matches_torch() {
    let dir = tempfile::tempdir().unwrap();
    let name = "tiny-xlmr-ce";
    let input = dir.path().join("pairs.jsonl");
    let lines: Vec<String> = fixture_pairs(name)
        .iter()
        .map(|(q, p)| serde_json::json!({"query": q, "passage": p}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let output = dir.path().join("scores.jsonl");
    let run = crossdistill(&[
        "predict",
        "--model",
        fixture(name).to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--activation",
        "identity",
        "--device",
        "cuda",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let scores: Vec<f32> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).unwrap();
            row["score"].as_f64().unwrap() as f32
        })
        .collect();
    let expected: Vec<f32> = expected_rows(name)
        .iter()
        .map(|r| r["logit"].as_f64().unwrap() as f32)
        .collect();
    let diff = max_abs_diff(&scores, &expected);
    println!("predict --device cuda: max |logit - torch| = {diff:.2e}");
    assert!(diff <= 1e-5, "{diff}");
}

/// Per-parameter gradients of an MSE on the logits (no dropout), on `device`.
fn gradients(name: &str, device: &Device) -> HashMap<String, Vec<f32>> {
    let model = load(name, device);
    let pairs: Vec<(String, String)> = fixture_pairs(name).into_iter().take(4).collect();
    let encoded = model.tokenizer().encode_pairs(&pairs).unwrap();
    let refs: Vec<_> = encoded.iter().collect();
    let logits = model
        .forward_encoded(&refs, None)
        .unwrap()
        .squeeze(1)
        .unwrap();
    let targets = Tensor::new(&[0.9f32, -0.4, 0.3, 1.2][..pairs.len()], device).unwrap();
    let loss = (logits - targets)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    model
        .params()
        .iter()
        .map(|(spec, var)| {
            let grad = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient for {}", spec.name));
            (
                spec.name.clone(),
                grad.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect()
}

#[test]
fn gradients_on_cuda_equal_the_cpu_gradients() {
    for name in ["tiny-bert-ce", "tiny-xlmr-ce"] {
        let cpu = gradients(name, &Device::Cpu);
        let cuda = gradients(name, &gpu());
        assert_eq!(cpu.len(), cuda.len());
        // Against the model's largest gradient: some are zero up to rounding (a key bias does not
        // change the softmax), so a per-parameter scale would compare noise with noise.
        let scale = cpu.values().flatten().fold(0f32, |m, g| m.max(g.abs()));
        let mut worst = 0f32;
        for (param, on_cpu) in &cpu {
            let on_gpu = &cuda[param];
            let diff = max_abs_diff(on_cpu, on_gpu) / scale;
            worst = worst.max(diff);
            assert!(
                diff <= 1e-5,
                "{name} {param}: |grad gpu - cpu| / max|grad| = {diff}"
            );
            assert!(
                on_gpu.iter().any(|g| *g != 0.0),
                "{name} {param}: zero gradient on the GPU"
            );
        }
        println!(
            "{name}: {} parameters, worst |grad gpu - cpu| / max|grad| = {worst:.2e}",
            cpu.len()
        );
    }
}

fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).unwrap();
            row.get("loss").and_then(|v| v.as_f64())
        })
        .collect()
}

#[test]
fn a_distillation_run_on_cuda_tracks_the_cpu_run() {
    let dir = tempfile::tempdir().unwrap();
    // 64 rows in batches of 8, two epochs: 16 steps, each logged.
    let recipe = write_distill_recipe(dir.path(), 64, 16, "epochs = 2");
    let mut by_device = Vec::new();
    for device in ["cpu", "cuda"] {
        let output_dir = dir.path().join(format!("run-{device}"));
        let run = crossdistill(&[
            "train",
            recipe.to_str().unwrap(),
            "--set",
            &format!("run.device={device}"),
            "--set",
            &format!("run.output_dir={}", output_dir.display()),
            "--set",
            "train.log_every=1",
            "--set",
            "train.save_every=10",
        ]);
        assert!(run.status.success(), "{device}: {}", stderr(&run));
        let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
        println!("{device}: {}", stdout.trim());
        assert!(stdout.contains("student-teacher Spearman on 16 held-out pairs"));
        assert!(output_dir.join("final/model.safetensors").is_file());
        by_device.push(losses(&output_dir));
    }
    let (cpu, cuda) = (&by_device[0], &by_device[1]);
    assert_eq!(cpu.len(), 16, "one row per step");
    assert_eq!(cpu.len(), cuda.len());
    for (step, (a, b)) in cpu.iter().zip(cuda).enumerate() {
        assert!(
            (a - b).abs() <= 1e-3 * a.abs().max(1.0),
            "step {}: loss {a} on the CPU, {b} on the GPU",
            step + 1
        );
    }
    assert!(cuda.last() < cuda.first(), "the loss falls: {cuda:?}");
}
