//! Shared helpers: fixture paths, the reference rows torch produced, running the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// `tests/fixtures/NAME` (copied from the shared torch fixtures; see tests/fixtures/SOURCE.md).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The rows of a fixture's expected.jsonl.
pub fn expected_rows(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixture(name).join("expected.jsonl"))
        .expect("fixture expected.jsonl");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("fixture rows are JSON"))
        .collect()
}

/// Run the crossdistill binary with `args`.
/// `rows` training rows (`train.jsonl`) and their first `eval_rows` as held-out rows (`eval.jsonl`),
/// each a (query, passage) pair with a `score` label in [0, 1].
pub fn write_scored_pairs(dir: &Path, rows: usize, eval_rows: usize) {
    let lines: Vec<String> = (0..rows)
        .map(|i| {
            serde_json::json!({
                "query": format!("what is item number {i}"),
                "passage": format!("item {i} is a thing with {} parts", i * 7 % 13),
                "score": (i % 5) as f32 / 4.0
            })
            .to_string()
        })
        .collect();
    std::fs::write(dir.join("train.jsonl"), lines.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("eval.jsonl"), lines[..eval_rows].join("\n") + "\n").unwrap();
}

/// A distillation recipe in `dir` over [`write_scored_pairs`]'s `rows` and `eval_rows`: the tiny
/// XLM-R fixture teaches the tiny BERT fixture with MSE (output_dir `run`, seed 7, batch 8,
/// log every 2 steps, checkpoint every 3); `extra` lines go into `[train]`.
pub fn write_distill_recipe(dir: &Path, rows: usize, eval_rows: usize, extra: &str) -> PathBuf {
    write_scored_pairs(dir, rows, eval_rows);
    let recipe = format!(
        r#"version = 1
[run]
output_dir = "run"
seed = 7
[teacher]
kind = "candle"
model = "{teacher}"
batch_size = 16
[student]
model = "{student}"
max_length = 32
[data.train]
path = "train.jsonl"
columns = ["query", "passage"]
[data.eval]
path = "eval.jsonl"
columns = ["query", "passage"]
[[loss]]
kind = "mse"
labels = "teacher"
[train]
batch_size = 8
learning_rate = 5e-3
log_every = 2
save_every = 3
{extra}
"#,
        teacher = fixture("tiny-xlmr-ce").display(),
        student = fixture("tiny-bert-ce").display(),
    );
    let path = dir.join("recipe.toml");
    std::fs::write(&path, recipe).unwrap();
    path
}

pub fn crossdistill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crossdistill"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the crossdistill binary runs")
}

/// stderr of a finished command as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A small deterministic generator (SplitMix64), so every run of the test sees the same data
/// and the same kill moments.
pub struct Random(pub u64);

impl Random {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// `n` words from a small fixed list.
    pub fn words(&mut self, n: u64) -> String {
        const WORDS: &[&str] = &[
            "river", "mountain", "city", "language", "python", "rust", "paris", "france",
            "weather", "tropical", "capital", "program", "model", "teacher", "student", "score",
            "cache", "memory", "disk", "train", "query", "passage", "night", "day",
        ];
        (0..n)
            .map(|_| WORDS[self.below(WORDS.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A duration in [0, limit), in thousandths of it.
    pub fn duration_below(&mut self, limit: std::time::Duration) -> std::time::Duration {
        limit.mul_f64(self.below(1000) as f64 / 1000.0)
    }
}

/// A saved model's `model.safetensors` in `dir` as (name, flattened f32 values), sorted by name.
pub fn model_weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let tensors =
        candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let mut out: Vec<_> = tensors
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
