//! Reduced precision at the seams users reach: a bf16/f16 candle teacher's fingerprint (the
//! score cache must not mix its scores with f32 ones), the models that run in f32 only, and the
//! CPU refusal of `--dtype` (the numerics themselves are checked against f32 in
//! `model::cross_encoder`'s unit tests, and the bf16 training forward in `model_training.rs`).

use crossdistill::model::{LoadOptions, Precision};
use crossdistill::teacher::{load_candle_teacher, load_pair_scorer, Teacher};

use crate::common::{crossdistill, fixture, stderr};

fn options(dtype: Precision) -> LoadOptions {
    LoadOptions {
        dtype,
        ..LoadOptions::default()
    }
}

#[test]
fn a_reduced_precision_teacher_has_its_own_fingerprint() {
    let model = fixture("tiny-bert-ce");
    let spec = model.to_str().unwrap();
    let fingerprint = |dtype| {
        load_candle_teacher(spec, None, &options(dtype), 8, None)
            .unwrap()
            .fingerprint()
    };
    let f32 = fingerprint(Precision::F32);
    let bf16 = fingerprint(Precision::Bf16);
    let f16 = fingerprint(Precision::F16);
    // f32 keeps the fingerprint it had before precision existed (caches stay valid).
    assert!(!f32.contains("dtype"), "{f32}");
    assert_eq!(bf16, format!("{f32}|dtype=bf16"));
    assert_eq!(f16, format!("{f32}|dtype=f16"));
    let teacher = load_candle_teacher(spec, None, &options(Precision::Bf16), 8, None).unwrap();
    assert!(
        teacher.describe().ends_with(", bf16)"),
        "{}",
        teacher.describe()
    );
}

#[test]
fn models_that_run_in_f32_only_refuse_another_precision() {
    for (name, what) in [
        ("tiny-deberta-v3-ce", "a deberta-v2 model runs in f32 only"),
        (
            "tiny-qwen3-reranker",
            "a causal-LM reranker runs in f32 only",
        ),
    ] {
        let model = fixture(name);
        let error = load_pair_scorer(model.to_str().unwrap(), None, &options(Precision::F16))
            .err()
            .expect("refused")
            .to_string();
        assert!(
            error.contains("dtype f16 asked for") && error.contains(what),
            "{name}: {error}"
        );
        load_pair_scorer(model.to_str().unwrap(), None, &options(Precision::F32)).unwrap();
    }
}

#[test]
fn dtype_on_the_cpu_and_on_the_onnx_backend_is_refused_with_the_reason() {
    let model = fixture("tiny-bert-ce");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"query\": \"q\", \"passage\": \"p\"}\n").unwrap();
    for (command, extra) in [
        ("predict", vec!["--input", input.to_str().unwrap()]),
        (
            "rank",
            vec!["--query", "q", "--documents", input.to_str().unwrap()],
        ),
    ] {
        let mut args = vec![
            command,
            "--model",
            model.to_str().unwrap(),
            "--dtype",
            "f16",
        ];
        args.extend(extra);
        let run = crossdistill(&args);
        assert_eq!(run.status.code(), Some(2), "{command}");
        assert!(
            stderr(&run).contains("--dtype f16 asked for on the CPU"),
            "{command}: {}",
            stderr(&run)
        );
    }
    let run = crossdistill(&[
        "predict",
        "--backend",
        "onnx",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--dtype",
        "bf16",
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("--backend onnx runs the exported graph in its own precision"),
        "{}",
        stderr(&run)
    );
}
