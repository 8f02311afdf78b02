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
