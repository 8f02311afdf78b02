//! The `cuda` feature on an NVIDIA GPU: candle's CUDA backend runs the composed ops (the fused CPU
//! kernels do not apply there). Built only with `--features cuda` (this target's
//! `required-features`) and run by `scripts/cuda-check` on a machine with a GPU; the CPU suite
//! checks the same code paths on the CPU.
//!
//! - logits of both torch fixtures within 1e-5, through the library and `predict --device cuda`;
//! - gradients of every parameter on the GPU equal the CPU's;
//! - a short distillation run with `run.device = "cuda"` tracks the same run on the CPU;
//! - the fused AdamW kernels equal their CPU code.

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

/// Three steps of the fused AdamW kernels (NVRTC-compiled at first use) on the GPU against their
/// CPU code from the same weights and gradients: one step not ok (skipped on the device), clip
/// factors below 1, weight decay. The CPU code equals the host AdamW bit for bit (lib tests);
/// the GPU's IEEE f32 arithmetic without FMA contraction should too.
#[test]
fn fused_adamw_on_cuda_equals_its_cpu_code() {
    use crossdistill::train::{AdamW, AdamWConfig, DeviceAdamW, DeviceGradients};

    let config = AdamWConfig {
        weight_decay: 0.1,
        ..AdamWConfig::default()
    };
    let mut results = Vec::new();
    for device in [Device::Cpu, gpu()] {
        let model = load("tiny-bert-ce", &device);
        let params = model.params();
        let mut adamw = DeviceAdamW::from_host(&AdamW::new(params, config), params).unwrap();
        for (step, (ok, clip)) in [(1f32, 0.5f32), (0.0, f32::NAN), (1.0, 0.25)]
            .into_iter()
            .enumerate()
        {
            let grads: Vec<Option<Tensor>> = params
                .vars()
                .iter()
                .enumerate()
                .map(|(p, var)| {
                    let n = var.elem_count();
                    let values: Vec<f32> = (0..n)
                        .map(|i| {
                            ((i * 7919 + p * 104_729 + step * 31) % 2003) as f32 / 1001.5 - 1.0
                        })
                        .collect();
                    Some(Tensor::from_vec(values, var.shape(), &device).unwrap())
                })
                .collect();
            let grads = DeviceGradients::from_tensors(grads);
            let ok = Tensor::new(&[ok], &device).unwrap();
            let clip = Tensor::new(&[clip], &device).unwrap();
            adamw
                .step(params.vars(), &grads, 1e-2 * (step + 1) as f64, &ok, &clip)
                .unwrap();
        }
        let host = adamw.to_host(params).unwrap();
        assert_eq!(host.steps(), 2, "the not-ok step was not counted");
        let mut values: Vec<Vec<f32>> = params
            .vars()
            .iter()
            .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        for (m, v) in host.moments() {
            values.push(m.to_vec());
            values.push(v.to_vec());
        }
        results.push(values);
    }
    let mut worst = 0f32;
    for (cpu, gpu) in results[0].iter().zip(&results[1]) {
        let scale = cpu.iter().fold(0f32, |s, x| s.max(x.abs())).max(1e-30);
        worst = worst.max(max_abs_diff(cpu, gpu) / scale);
    }
    println!("fused AdamW, GPU vs CPU code: worst relative difference {worst:.2e}");
    assert!(worst <= 1e-6, "{worst}");
}
