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

/// Loss `mean((logit − target)²)` and per-parameter gradients of one forward in eval mode.
fn loss_and_gradients(
    model: &crossdistill::model::CrossEncoder,
    pairs: &[(&str, &str)],
    targets: &[f32],
) -> (f32, Vec<Vec<f32>>) {
    use candle_core::Tensor;
    use crossdistill::model::Mode;
    let encoded = model.tokenizer().encode_pairs(pairs).unwrap();
    let refs: Vec<_> = encoded.iter().collect();
    let batch = model.batch_tensors(&refs).unwrap();
    let logits = model.forward(&batch, &mut Mode::Eval).unwrap();
    assert_eq!(
        logits.dtype(),
        candle_core::DType::F32,
        "logits upcast to f32"
    );
    let targets = Tensor::from_slice(targets, (targets.len(), 1), model.device()).unwrap();
    let loss = (logits - targets)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let gradients = model
        .vars()
        .iter()
        .map(|var| {
            let grad = grads
                .get(var.as_tensor())
                .expect("every parameter gets a gradient");
            assert_eq!(grad.dtype(), candle_core::DType::F32, "f32 gradients");
            grad.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        })
        .collect();
    (loss.to_scalar::<f32>().unwrap(), gradients)
}

#[test]
fn bf16_mixed_precision_training_follows_f32() {
    // Reference: the f32 training forward (pinned to torch in model_parity.rs and
    // model_training.rs). The bf16 forward casts the f32 master weights per step; gradients
    // come back in f32 to the same Vars. Three plain SGD steps each, from the same weights.
    // Measured worst over the three steps: see `bf16_training_follows_f32`.
    let pairs = [
        ("what is python", "Python is a programming language."),
        ("capital of france", "Paris is the capital of France."),
        ("ok", "fine"),
        ("rust", "Rust is a systems language with ownership."),
    ];
    let targets = [1.0f32, 0.5, -0.5, 2.0];
    for name in ["tiny-bert-ce", "tiny-electra-ce", "tiny-modernbert-mean-ce"] {
        bf16_training_follows_f32(name, &pairs, &targets);
    }
}

/// Three SGD steps (learning rate 2e-3) of `name` in bf16 and in f32, each from its own
/// weights. Measured worst of the three steps (loss relative error, ‖g_bf16 − g_f32‖ /
/// ‖g_f32‖ over every parameter): tiny-bert-ce 8.2e-3, 3.3e-2; tiny-electra-ce 1.1e-2, 1.9e-2;
/// tiny-modernbert-mean-ce 2.8e-2, 8.5e-2. Tolerances 5e-2 and 1.5e-1.
fn bf16_training_follows_f32(name: &str, pairs: &[(&str, &str)], targets: &[f32]) {
    let model_dir = fixture(name);
    let load = |precision| {
        crossdistill::model::CrossEncoder::load(
            model_dir.to_str().unwrap(),
            None,
            &LoadOptions {
                train_precision: precision,
                ..LoadOptions::default()
            },
        )
        .unwrap()
    };
    let f32_model = load(Precision::F32);
    let bf16_model = load(Precision::Bf16);
    assert_eq!(bf16_model.train_precision(), Precision::Bf16);
    let learning_rate = 2e-3;
    let mut worst_loss = 0f32;
    let mut worst_gradient = 0f32;
    for step in 0..3 {
        let (f32_loss, f32_grads) = loss_and_gradients(&f32_model, pairs, targets);
        let (bf16_loss, bf16_grads) = loss_and_gradients(&bf16_model, pairs, targets);
        let loss_error = (bf16_loss - f32_loss).abs() / f32_loss.abs();
        let (mut diff, mut norm) = (0f64, 0f64);
        for (a, b) in f32_grads.iter().flatten().zip(bf16_grads.iter().flatten()) {
            diff += f64::from(a - b).powi(2);
            norm += f64::from(*a).powi(2);
        }
        let gradient_error = (diff.sqrt() / norm.sqrt()) as f32;
        eprintln!("{name} step {step}: loss {f32_loss} vs {bf16_loss} ({loss_error:.2e}), gradients {gradient_error:.2e}");
        assert!(
            loss_error <= 5e-2,
            "{name} step {step}: loss {f32_loss} vs {bf16_loss}"
        );
        assert!(
            gradient_error <= 1.5e-1,
            "{name} step {step}: gradient error {gradient_error}"
        );
        assert!(bf16_loss != f32_loss, "the bf16 forward ran in f32");
        worst_loss = worst_loss.max(loss_error);
        worst_gradient = worst_gradient.max(gradient_error);
        for (model, grads) in [(&f32_model, &f32_grads), (&bf16_model, &bf16_grads)] {
            for (var, grad) in model.vars().iter().zip(grads) {
                let grad =
                    candle_core::Tensor::from_slice(grad, var.shape(), var.device()).unwrap();
                let updated = (var.as_tensor() - (grad * learning_rate).unwrap()).unwrap();
                var.set(&updated).unwrap();
            }
        }
    }
    eprintln!("{name} worst: loss {worst_loss:.2e}, gradients {worst_gradient:.2e}");
    // The master weights stay f32: the checkpoint a bf16 run saves is an f32 checkpoint.
    assert!(bf16_model
        .vars()
        .iter()
        .all(|var| var.dtype() == candle_core::DType::F32));
}

#[test]
fn a_teacher_device_does_not_change_the_fingerprint() {
    // The same candle teacher placed by `run.device` and by `[teacher] device = "cpu"`, and an
    // onnx teacher with and without `device = "cpu"`: the cache keys are the same.
    let dir = tempfile::tempdir().unwrap();
    let teacher = fixture("tiny-bert-ce");
    let fingerprint = |kind: &str, device: &str| {
        let recipe = dir.path().join(format!("{kind}{}.toml", device.len()));
        std::fs::write(
            &recipe,
            format!(
                "version = 1\n[run]\noutput_dir = \"run\"\n[teacher]\nkind = \"{kind}\"\nmodel = {:?}\n{device}\n[student]\nmodel = {:?}\n[data.train]\npath = \"train.jsonl\"\n[[loss]]\nkind = \"mse\"\n",
                teacher.to_str().unwrap(),
                teacher.to_str().unwrap(),
            ),
        )
        .unwrap();
        let recipe = crossdistill::recipe::load(&recipe, &[]).unwrap();
        crossdistill::train::plan::build_teacher(&recipe, &candle_core::Device::Cpu)
            .unwrap()
            .expect("a teacher")
            .fingerprint()
    };
    for kind in ["candle", "onnx"] {
        assert_eq!(
            fingerprint(kind, ""),
            fingerprint(kind, "device = \"cpu\""),
            "{kind}"
        );
    }
}

/// `CROSSDISTILL_CPU_REDUCED_PRECISION=1` lifts the CPU refusal so that bf16 numerics can be
/// measured without a GPU: the same distillation in bf16 mixed precision logs losses within 5%
/// of the f32 run's at every logged step (1.7% measured on these tiny random models; README
/// "Precision and devices" has the quickstart's and the STSb teacher's).
#[test]
fn bf16_training_on_the_cpu_when_asked_follows_the_f32_loss_curve() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = crate::common::write_distill_recipe(dir.path(), 48, 8, "epochs = 2");
    let train = |precision: &str, allow: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_crossdistill"));
        command
            .args(["train", recipe.to_str().unwrap(), "--set"])
            .arg(format!("train.precision=\"{precision}\""))
            .arg("--set")
            .arg(format!(
                "run.output_dir={}",
                dir.path().join(precision).display()
            ))
            .env("HF_HUB_OFFLINE", "1")
            .env_remove("CROSSDISTILL_CPU_REDUCED_PRECISION");
        if allow {
            command.env("CROSSDISTILL_CPU_REDUCED_PRECISION", "1");
        }
        command.output().unwrap()
    };
    let refused = train("bf16", false);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("train.precision = \"bf16\" asked for on the CPU"),
        "{}",
        stderr(&refused)
    );
    let losses = |precision: &str| -> Vec<f64> {
        let run = train(precision, true);
        assert!(run.status.success(), "{precision}: {}", stderr(&run));
        std::fs::read_to_string(dir.path().join(precision).join("metrics.jsonl"))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64())
            .collect()
    };
    let (f32_losses, bf16_losses) = (losses("f32"), losses("bf16"));
    assert_eq!(f32_losses.len(), bf16_losses.len());
    assert!(f32_losses.len() >= 5, "{f32_losses:?}");
    let worst = f32_losses
        .iter()
        .zip(&bf16_losses)
        .map(|(a, b)| (a - b).abs() / a.abs())
        .fold(0f64, f64::max);
    println!("bf16 vs f32 loss curve: worst relative difference {worst:.2e}");
    assert!(worst <= 5e-2, "{f32_losses:?} vs {bf16_losses:?}");
    assert!(
        f32_losses != bf16_losses,
        "bf16 ran: the curves differ by rounding"
    );
}
