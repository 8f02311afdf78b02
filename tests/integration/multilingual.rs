//! Parallel-data distillation through the binary: the teacher reads one language's columns, the
//! student trains on every language of a row; column problems are clear errors.

use std::path::{Path, PathBuf};

use crate::common::{crossdistill, fixture, stderr};

fn write_parallel(dir: &Path, rows: usize) {
    let lines: Vec<String> = (0..rows)
        .map(|i| {
            serde_json::json!({
                "en_1": format!("a man is playing item {i}"),
                "en_2": format!("someone plays with {} things", i * 3 % 7),
                "de_1": format!("ein mann spielt {i}"),
                "de_2": format!("jemand spielt mit {} dingen", i * 3 % 7),
                "score": (i % 5) as f32 / 4.0
            })
            .to_string()
        })
        .collect();
    std::fs::write(dir.join("train.jsonl"), lines.join("\n")).unwrap();
    std::fs::write(dir.join("dev.jsonl"), lines[..6].join("\n")).unwrap();
}

fn write_recipe(dir: &Path, student_columns: &str) -> PathBuf {
    write_parallel(dir, 12);
    let recipe = format!(
        r#"version = 1
[run]
output_dir = "run"
seed = 3
[teacher]
kind = "candle"
model = "{teacher}"
columns = ["en_1", "en_2"]
[student]
model = "{student}"
max_length = 32
columns = {student_columns}
[data.train]
path = "train.jsonl"
[data.eval]
path = "dev.jsonl"
max_rows = 4
[[loss]]
kind = "mse"
labels = "teacher"
[train]
batch_size = 8
learning_rate = 5e-3
log_every = 1
save_every = 0
"#,
        teacher = fixture("tiny-bert-ce").display(),
        student = fixture("tiny-xlmr-ce").display(),
    );
    let path = dir.join("recipe.toml");
    std::fs::write(&path, recipe).unwrap();
    path
}

#[test]
fn one_example_per_language_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(dir.path(), r#"[["en_1", "en_2"], ["de_1", "de_2"]]"#);
    let output = crossdistill(&["train", recipe.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(
        log.contains("12 rows/epoch (24 examples), 3 steps"),
        "{log}"
    );
    let metrics = std::fs::read_to_string(dir.path().join("run/metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|row| row["loss"].as_f64().map(|_| row["step"].as_u64().unwrap()))
        .collect();
    assert_eq!(steps, [1, 2, 3]);
    let resolved = std::fs::read_to_string(dir.path().join("run/recipe.resolved.toml")).unwrap();
    assert!(
        resolved.contains(r#"columns = [["en_1", "en_2"], ["de_1", "de_2"]]"#),
        "{resolved}"
    );
    assert!(dir.path().join("run/final/model.safetensors").exists());
    // Held-out agreement: the first 4 dev rows (max_rows), each in both languages.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("on 8 held-out pairs"), "{stdout}");
}

#[test]
fn a_column_the_data_lacks_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(dir.path(), r#"[["en_1", "en_2"], ["fr_1", "fr_2"]]"#);
    let output = crossdistill(&["train", recipe.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.starts_with("error:"), "{message}");
    assert!(message.contains("fr_1"), "{message}");
    assert!(!message.contains("panicked"), "{message}");

    let recipe = write_recipe(dir.path(), r#"[["en_1", "en_2"], ["de_1"]]"#);
    let output = crossdistill(&["recipe", "check", recipe.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stdout).into_owned() + &stderr(&output);
    assert!(
        message.contains("student.columns: every column group must have the same length"),
        "{message}"
    );
}

#[test]
fn score_precomputes_the_teacher_columns_only() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(dir.path(), r#"[["en_1", "en_2"], ["de_1", "de_2"]]"#);
    let cache = dir.path().join("cache");
    let set = format!("cache.dir={}", cache.display());
    let output = crossdistill(&["score", recipe.to_str().unwrap(), "--set", &set, "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // 12 training rows and 4 held-out rows (max_rows; copies of the first 4): one English pair
    // each.
    assert_eq!(summary["pairs"], 16, "{summary}");
    assert_eq!(summary["teacher_scored"], 12, "{summary}");

    // Training then finds every teacher score in the cache.
    let output = crossdistill(&["train", recipe.to_str().unwrap(), "--set", &set]);
    assert!(output.status.success(), "{}", stderr(&output));
    let metrics = std::fs::read_to_string(dir.path().join("run/metrics.jsonl")).unwrap();
    let misses: f64 = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|row| row["cache/misses"].as_f64())
        .sum();
    assert_eq!(misses, 0.0, "{metrics}");
    assert!(metrics.contains("cache/hits"), "{metrics}");
}
