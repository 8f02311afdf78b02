//! The ONNX teacher against the torch reference (tests/fixtures/*/expected.jsonl `logit`:
//! transformers f32, batch of 1) and against the candle teacher; the `--backend onnx` CLI; and
//! every bad input answered with a message that says what to do.
//!
//! ONNX Runtime comes from `ORT_DYLIB_PATH`, which `scripts/test` sets (scripts/ort-env installs
//! onnxruntime 1.31.1 into .venv-ort/ when needed).

use std::path::{Path, PathBuf};
use std::process::Command;

use crossdistill::fingerprint::file_hash;
use crossdistill::model::{CrossEncoder, LoadOptions, ScoreActivation};
use crossdistill::teacher::{CandleTeacher, Ensemble, OnnxTeacher, Teacher};

use crate::common::{crossdistill, expected_rows, fixture, max_abs_diff, stderr};

const FIXTURES: [&str; 2] = ["tiny-bert-ce", "tiny-xlmr-ce"];

fn onnx_teacher(name: &str, batch_size: usize, activation: Option<ScoreActivation>) -> OnnxTeacher {
    OnnxTeacher::new(
        fixture(name).to_str().unwrap(),
        "model.onnx",
        None,
        batch_size,
        activation,
        None,
    )
    .expect("fixture ONNX teacher loads")
}

fn candle_teacher(name: &str, batch_size: usize, activation: ScoreActivation) -> CandleTeacher {
    let model = CrossEncoder::load(
        fixture(name).to_str().unwrap(),
        None,
        &LoadOptions::default(),
    )
    .expect("fixture loads");
    CandleTeacher::new(model, batch_size, activation).unwrap()
}

fn fixture_pairs(name: &str) -> (Vec<serde_json::Value>, Vec<(String, String)>) {
    let rows = expected_rows(name);
    let pairs = rows
        .iter()
        .map(|r| {
            (
                r["query"].as_str().unwrap().to_string(),
                r["passage"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (rows, pairs)
}

fn field(rows: &[serde_json::Value], key: &str) -> Vec<f32> {
    rows.iter()
        .map(|r| r[key].as_f64().unwrap() as f32)
        .collect()
}

fn as_refs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(q, p)| (q.as_str(), p.as_str()))
        .collect()
}

#[test]
fn logits_match_torch_and_candle_single_and_padded() {
    for name in FIXTURES {
        let (rows, pairs) = fixture_pairs(name);
        let pairs = as_refs(&pairs);
        let torch = field(&rows, "logit");
        let mut candle = candle_teacher(name, 4, ScoreActivation::Identity);
        let candle_logits = candle.score(&pairs).unwrap();
        // 1: every pair alone; 3: padded batches of mixed lengths; 64: one padded batch.
        for batch_size in [1, 3, 64] {
            let mut teacher = onnx_teacher(name, batch_size, Some(ScoreActivation::Identity));
            let logits = teacher.predict_logits(&pairs, &mut |_| {}).unwrap();
            assert!(logits.iter().all(|row| row.len() == 1), "{name}: one label");
            let logits: Vec<f32> = logits.into_iter().map(|row| row[0]).collect();
            let diff = max_abs_diff(&logits, &torch);
            assert!(
                diff <= 1e-5,
                "{name} batch {batch_size}: |Δ torch| = {diff}"
            );
            let diff = max_abs_diff(&logits, &candle_logits);
            assert!(
                diff <= 1e-4,
                "{name} batch {batch_size}: |Δ candle| = {diff}"
            );
            assert_eq!(
                teacher.score(&pairs).unwrap(),
                logits,
                "score = identity(logits)"
            );
        }
    }
}

#[test]
fn scores_apply_the_activation_and_default_to_the_models_sigmoid() {
    for name in FIXTURES {
        let (rows, pairs) = fixture_pairs(name);
        let pairs = as_refs(&pairs);
        // config.json: sentence_transformers.activation_fn = Sigmoid.
        let mut teacher = onnx_teacher(name, 5, None);
        assert_eq!(teacher.default_activation(), ScoreActivation::Sigmoid);
        assert_eq!(teacher.activation(), ScoreActivation::Sigmoid);
        let scores = teacher.score(&pairs).unwrap();
        let diff = max_abs_diff(&scores, &field(&rows, "score"));
        assert!(diff <= 1e-5, "{name}: |Δ torch sigmoid| = {diff}");
    }
}

#[test]
fn input_order_is_restored_after_length_sorting() {
    let (rows, pairs) = fixture_pairs("tiny-bert-ce");
    let torch = field(&rows, "logit");
    // An order that is neither sorted nor reversed, with a pair repeated (rows differ in length,
    // so the length sort moves them).
    let order: Vec<usize> = (0..pairs.len())
        .map(|i| (i * 5 + 3) % pairs.len())
        .chain([0, 0])
        .collect();
    let shuffled: Vec<(&str, &str)> = order
        .iter()
        .map(|&i| (pairs[i].0.as_str(), pairs[i].1.as_str()))
        .collect();
    let mut teacher = onnx_teacher("tiny-bert-ce", 3, Some(ScoreActivation::Identity));
    let mut seen = 0;
    let scores = teacher
        .predict_logits(&shuffled, &mut |n| seen += n)
        .unwrap();
    assert_eq!(seen, shuffled.len(), "on_batch counts every pair once");
    let want: Vec<f32> = order.iter().map(|&i| torch[i]).collect();
    let got: Vec<f32> = scores.into_iter().map(|row| row[0]).collect();
    assert!(max_abs_diff(&got, &want) <= 1e-5, "{got:?} vs {want:?}");
    assert!(teacher.score(&[]).unwrap().is_empty());
}

#[test]
fn one_thread_gives_the_same_logits() {
    let (rows, pairs) = fixture_pairs("tiny-xlmr-ce");
    let mut teacher = OnnxTeacher::new(
        fixture("tiny-xlmr-ce").to_str().unwrap(),
        "model.onnx",
        None,
        4,
        Some(ScoreActivation::Identity),
        Some(1),
    )
    .unwrap();
    assert_eq!(teacher.threads(), 1);
    let scores = teacher.score(&as_refs(&pairs)).unwrap();
    assert!(max_abs_diff(&scores, &field(&rows, "logit")) <= 1e-5);
}

#[test]
fn fingerprint_names_the_files_and_settings() {
    let dir = fixture("tiny-bert-ce");
    let teacher = onnx_teacher("tiny-bert-ce", 8, Some(ScoreActivation::Identity));
    let want = format!(
        "onnx|onnx={}|tokenizer={}|max_length=128|activation=Identity",
        file_hash(&dir.join("model.onnx")).unwrap(),
        file_hash(&dir.join("tokenizer.json")).unwrap()
    );
    assert_eq!(teacher.fingerprint(), want);
    assert_eq!(
        teacher.tokenizer().max_length(),
        128,
        "tokenizer_config and positions say 128"
    );
    let shorter = OnnxTeacher::new(
        dir.to_str().unwrap(),
        "model.onnx",
        Some(64),
        8,
        Some(ScoreActivation::Sigmoid),
        None,
    )
    .unwrap();
    assert_eq!(
        shorter.fingerprint(),
        want.replace(
            "max_length=128|activation=Identity",
            "max_length=64|activation=Sigmoid"
        )
    );
    assert!(teacher.describe().contains("model.onnx (onnx, Identity)"));
}

#[test]
fn ensemble_of_onnx_and_candle_is_the_mean() {
    let (rows, pairs) = fixture_pairs("tiny-bert-ce");
    let pairs = as_refs(&pairs);
    let onnx = onnx_teacher("tiny-bert-ce", 4, Some(ScoreActivation::Identity));
    let candle = candle_teacher("tiny-xlmr-ce", 4, ScoreActivation::Identity);
    let mut onnx_alone = onnx_teacher("tiny-bert-ce", 4, Some(ScoreActivation::Identity));
    let mut candle_alone = candle_teacher("tiny-xlmr-ce", 4, ScoreActivation::Identity);
    let a = onnx_alone.score(&pairs).unwrap();
    let b = candle_alone.score(&pairs).unwrap();
    let mut ensemble = Ensemble::new(vec![Box::new(onnx), Box::new(candle)]).unwrap();
    let mean: Vec<f32> = a.iter().zip(&b).map(|(x, y)| (x + y) / 2.0).collect();
    let scores = ensemble.score(&pairs).unwrap();
    assert!(max_abs_diff(&scores, &mean) <= 1e-6);
    // The BERT half is torch's logit (the XLM-R tokenizer on English pairs gives other numbers).
    assert!(max_abs_diff(&a, &field(&rows, "logit")) <= 1e-5);
    let fingerprint = ensemble.fingerprint();
    assert!(fingerprint.starts_with("ensemble[onnx|") && fingerprint.contains(";candle|"));
}

fn write_input(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join("input.jsonl");
    let lines: Vec<String> = expected_rows(name)
        .iter()
        .map(|r| {
            serde_json::json!({"id": r["id"], "query": r["query"], "passage": r["passage"]})
                .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn predict_onnx(model: &Path, input: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "predict",
        "--backend",
        "onnx",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    crossdistill(&args)
}

fn scores_of(stdout: &[u8]) -> (Vec<serde_json::Value>, Vec<f32>) {
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let scores = rows
        .iter()
        .map(|r| r["score"].as_f64().unwrap() as f32)
        .collect();
    (rows, scores)
}

#[test]
fn predict_backend_onnx_matches_torch_in_input_order() {
    for name in FIXTURES {
        let dir = tempfile::tempdir().unwrap();
        let input = write_input(dir.path(), name);
        let expected = expected_rows(name);
        let run = predict_onnx(
            &fixture(name),
            &input,
            &["--activation", "identity", "--batch-size", "3"],
        );
        assert!(run.status.success(), "{}", stderr(&run));
        let (rows, scores) = scores_of(&run.stdout);
        assert_eq!(rows.len(), expected.len());
        for (row, want) in rows.iter().zip(&expected) {
            assert_eq!(row["id"], want["id"], "input order kept");
        }
        assert!(
            max_abs_diff(&scores, &field(&expected, "logit")) <= 1e-5,
            "{name}"
        );
        // Default activation: the model's sigmoid, as sentence-transformers' predict.
        let run = predict_onnx(&fixture(name), &input, &[]);
        assert!(run.status.success(), "{}", stderr(&run));
        let (_, scores) = scores_of(&run.stdout);
        assert!(max_abs_diff(&scores, &field(&expected, "score_st_predict")) <= 1e-5);
    }
}

#[test]
fn predict_backend_onnx_without_the_runtime_says_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), "tiny-bert-ce");
    let missing = dir.path().join("no-such-libonnxruntime.so");
    let run = Command::new(env!("CARGO_BIN_EXE_crossdistill"))
        .args(["predict", "--backend", "onnx", "--model"])
        .arg(fixture("tiny-bert-ce"))
        .arg("--input")
        .arg(&input)
        .env("ORT_DYLIB_PATH", &missing)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let err = stderr(&run);
    assert!(err.starts_with("error: ORT_DYLIB_PATH is "), "{err}");
    assert!(
        err.contains("no-such-libonnxruntime.so, but that is no such file"),
        "{err}"
    );
    assert!(
        err.contains("needs the ONNX Runtime shared library (onnxruntime 1.31 or newer)"),
        "{err}"
    );
    assert!(err.contains("pip install onnxruntime==1.31.1"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn predict_backend_onnx_with_an_old_runtime_names_both_versions() {
    // A library that reports version 1.20.0 (tests/fixtures/onnx-bad/fake_old_onnxruntime.c).
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("libonnxruntime.so.1.20.0");
    let cc = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(fixture("onnx-bad/fake_old_onnxruntime.c"))
        .output()
        .expect("a C compiler (cc) is installed: Rust links with it");
    assert!(cc.status.success(), "{}", stderr(&cc));
    let input = write_input(dir.path(), "tiny-bert-ce");
    let run = Command::new(env!("CARGO_BIN_EXE_crossdistill"))
        .args(["predict", "--backend", "onnx", "--model"])
        .arg(fixture("tiny-bert-ce"))
        .arg("--input")
        .arg(&input)
        .env("ORT_DYLIB_PATH", &library)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let err = stderr(&run);
    assert!(
        err.contains("libonnxruntime.so.1.20.0 is version 1.20.0, but crossdistill needs onnxruntime 1.31 or newer"),
        "{err}"
    );
    assert!(err.contains("pip install onnxruntime==1.31.1"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn graphs_that_are_not_cross_encoders_are_refused() {
    // tests/fixtures/onnx-bad/README.md: what each graph takes and gives.
    let cases = [
        (
            "no-input-ids.onnx",
            "the ONNX model has no `input_ids` input; a cross-encoder takes int64 input_ids and attention_mask",
            "found inputs tokens (Int64 [-1, -1]), attention_mask (Int64 [-1, -1])",
        ),
        (
            "no-logits.onnx",
            "the ONNX model has no `logits` output",
            "found outputs scores (Float32 [-1, 1])",
        ),
        (
            "logits-3d.onnx",
            "the ONNX output logits (Float32 [-1, -1, 1]) is not 2-D",
            "a cross-encoder has a float logits output [batch, num_labels]",
        ),
    ];
    let model = fixture("tiny-bert-ce");
    for (file, message, found) in cases {
        // An absolute onnx_file is used as it is (config and tokenizer come from the model dir).
        let onnx = fixture("onnx-bad").join(file);
        let err = OnnxTeacher::new(
            model.to_str().unwrap(),
            onnx.to_str().unwrap(),
            None,
            8,
            None,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(message) && err.contains(found),
            "{file}: {err}"
        );
        assert!(
            err.contains("hint: export a *ForSequenceClassification model"),
            "{err}"
        );
    }
    // The same through the binary: exit code 2, one error line.
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), "tiny-bert-ce");
    let onnx = fixture("onnx-bad/no-logits.onnx");
    let run = predict_onnx(&model, &input, &["--onnx-file", onnx.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("has no `logits` output"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn missing_files_and_bad_settings_are_named() {
    let model = fixture("tiny-bert-ce");
    let model = model.to_str().unwrap();
    let err = OnnxTeacher::new(model, "onnx/model_quantized.onnx", None, 8, None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no onnx/model_quantized.onnx"), "{err}");
    assert!(err.contains("--onnx-file"), "{err}");

    // A directory with config and tokenizer but no model.onnx.
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture("tiny-bert-ce").join(file), dir.path().join(file)).unwrap();
    }
    let err = OnnxTeacher::new(
        dir.path().to_str().unwrap(),
        "model.onnx",
        None,
        8,
        None,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("has no model.onnx") && err.contains("export the model to ONNX"),
        "{err}"
    );

    let err = OnnxTeacher::new("/no/such/model", "model.onnx", None, 8, None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no such directory"), "{err}");

    let err = OnnxTeacher::new(model, "model.onnx", None, 0, None, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("batch_size must be at least 1, found 0"),
        "{err}"
    );

    let err = OnnxTeacher::new(model, "model.onnx", Some(512), 8, None, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("max_length 512 is longer than the model's position table allows (128)"),
        "{err}"
    );

    let err = OnnxTeacher::new(model, "model.onnx", None, 8, None, Some(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("threads must be at least 1, found 0"), "{err}");

    let run = crossdistill(&[
        "predict",
        "--backend",
        "onnx",
        "--model",
        model,
        "--input",
        "x.jsonl",
        "--device",
        "cuda",
    ]);
    // The CPU-only onnxruntime of the tests cannot register the CUDA execution provider: a
    // clear error naming the package, not a silent run on the CPU.
    assert_eq!(run.status.code(), Some(2));
    let message = stderr(&run);
    assert!(
        message.contains("ONNX Runtime could not run the teacher on cuda:0: registering CUDAExecutionProvider failed")
            && message.contains("pip install onnxruntime-gpu"),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
}
