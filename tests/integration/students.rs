//! ELECTRA and ModernBERT students against torch: every hidden state and the logits of a padded
//! batch, three AdamW steps through the real trainer, the saved checkpoint's layout and reload,
//! fresh heads, gradients, layer pruning and the shipped recipe.
//!
//! References: tests/fixtures/students/*.json, made by tests/fixtures/make_students.py
//! (transformers 5.24, eager attention) from the teacher fixtures of make_modern_teachers.py.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use crossdistill::model::{CrossEncoder, LoadOptions, ScoreActivation};
use crossdistill::tokenize::PaddedBatch;
use serde_json::Value;

use crate::common::{crossdistill, expected_rows, fixture, max_abs_diff, stderr};

const STUDENTS: [&str; 3] = [
    "tiny-electra-ce",
    "tiny-modernbert-cls-ce",
    "tiny-modernbert-mean-ce",
];

fn load_dir(dir: &Path, options: &LoadOptions) -> CrossEncoder {
    CrossEncoder::load(dir.to_str().unwrap(), None, options).expect("student loads")
}

fn load(name: &str) -> CrossEncoder {
    load_dir(&fixture(name), &LoadOptions::default())
}

fn reference(name: &str) -> Value {
    let path = fixture("students").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ints(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter())
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn floats(value: &Value) -> Vec<f32> {
    match value {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        other => vec![other.as_f64().unwrap() as f32],
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn pairs_of(name: &str) -> Vec<(String, String)> {
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
fn hidden_states_and_logits_match_torch_on_a_padded_batch() {
    for name in STUDENTS {
        let model = load(name);
        let reference = reference(name);
        let input_ids = ints(&reference["input_ids"]);
        let batch_size = reference["input_ids"].as_array().unwrap().len();
        let seq_len = input_ids.len() / batch_size;
        let mask: Vec<f32> = ints(&reference["attention_mask"])
            .into_iter()
            .map(|m| m as f32)
            .collect();
        let type_ids = match reference.get("token_type_ids") {
            Some(types) => ints(types),
            None => vec![0; input_ids.len()],
        };
        assert!(mask.contains(&0.0), "{name}: the batch has no padding");
        let padded = PaddedBatch {
            batch_size,
            seq_len,
            input_ids,
            type_ids,
            attention_mask: mask.clone(),
        };
        let batch =
            crossdistill::model::BatchTensors::new(&padded, model.config(), &Device::Cpu).unwrap();
        let states = model.all_hidden_states(&batch).unwrap();
        let expected = reference["hidden_states"].as_array().unwrap();
        assert_eq!(states.len(), expected.len(), "{name}: number of states");
        let hidden = model.config().hidden_size;
        for (layer, (ours, theirs)) in states.iter().zip(expected).enumerate() {
            let (ours, theirs) = (values(ours), floats(theirs));
            assert_eq!(ours.len(), theirs.len());
            // Padded positions are not compared: nothing reads them.
            let real = |v: &[f32]| -> Vec<f32> {
                v.chunks(hidden)
                    .zip(&mask)
                    .filter(|(_, m)| **m > 0.0)
                    .flat_map(|(row, _)| row.to_vec())
                    .collect()
            };
            let diff = max_abs_diff(&real(&ours), &real(&theirs));
            assert!(diff <= 1e-5, "{name} hidden state {layer}: max diff {diff}");
        }
        let logits = values(&model.forward_no_graph(&batch).unwrap());
        let diff = max_abs_diff(&logits, &floats(&reference["logits"]));
        assert!(diff <= 1e-5, "{name}: logits differ by {diff}");
        // The 13 pairs of the teacher fixture, in length-sorted padded batches.
        let pairs = pairs_of(name);
        let want: Vec<f32> = expected_rows(name)
            .iter()
            .map(|r| r["logit"].as_f64().unwrap() as f32)
            .collect();
        let got = model.predict(&pairs, 4, ScoreActivation::Identity).unwrap();
        let diff = max_abs_diff(&got, &want);
        assert!(diff <= 1e-5, "{name}: predict differs by {diff}");
    }
}

/// Train `name` for three AdamW steps on tests/fixtures/students/train.jsonl as one batch with
/// the settings of make_students.py; returns the run directory.
fn train_three_steps(name: &str, dir: &Path, extra: &str) -> PathBuf {
    let recipe = format!(
        r#"version = 1
[run]
output_dir = "run"
seed = 3
[student]
model = "{student}"
max_length = 32
[data.train]
path = "{data}"
columns = ["query", "passage"]
label = "label"
[[loss]]
kind = "mse"
labels = "data"
[train]
epochs = 3
max_steps = 3
batch_size = 6
learning_rate = 2e-3
weight_decay = 0.01
warmup_ratio = 0.0
scheduler = "constant"
max_grad_norm = 0.0
shuffle = false
log_every = 1
save_every = 0
{extra}
"#,
        student = fixture(name).display(),
        data = fixture("students/train.jsonl").display(),
    );
    let path = dir.join("recipe.toml");
    std::fs::write(&path, recipe).unwrap();
    let run = crossdistill(&["train", path.to_str().unwrap()]);
    assert!(run.status.success(), "{name}: {}", stderr(&run));
    dir.join("run")
}

fn logged_losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|row| row.get("loss").and_then(Value::as_f64))
        .collect()
}

#[test]
fn three_adamw_steps_log_the_losses_torch_logs() {
    for name in STUDENTS {
        let dir = tempfile::tempdir().unwrap();
        let run = train_three_steps(name, dir.path(), "");
        let reference = reference(name);
        let want: Vec<f64> = reference["losses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got = logged_losses(&run);
        assert_eq!(got.len(), want.len(), "{name}: {got:?}");
        for (step, (g, w)) in got.iter().zip(&want).enumerate() {
            let relative = (g - w).abs() / w.abs();
            assert!(
                relative <= 1e-3,
                "{name} step {}: loss {g} vs torch {w} (relative {relative:.2e})",
                step + 1
            );
        }
        // The trained model scores as torch's trained model does (saved by transformers and
        // scored by sentence-transformers' CrossEncoder.predict).
        let trained = load_dir(&run.join("final"), &LoadOptions::default());
        let got = trained
            .predict(&pairs_of(name), 4, ScoreActivation::Identity)
            .unwrap();
        let want = floats(&reference["trained_logits"]);
        let diff = max_abs_diff(&got, &want);
        assert!(diff <= 1e-4, "{name}: trained logits differ by {diff}");
    }
}

fn tensor_names(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap()
        .into_keys()
        .filter(|k| !k.ends_with("position_ids"))
        .collect();
    names.sort();
    names
}

#[test]
fn saved_students_have_transformers_layout_and_reload_bit_identical() {
    let classes = [
        "ElectraForSequenceClassification",
        "ModernBertForSequenceClassification",
        "ModernBertForSequenceClassification",
    ];
    for (name, class) in STUDENTS.into_iter().zip(classes) {
        let model = load(name);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("saved");
        model.save(&out, ScoreActivation::Sigmoid).unwrap();
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["architectures"][0], class, "{name}");
        assert_eq!(config["id2label"]["0"], "LABEL_0");
        assert_eq!(
            config["sentence_transformers"]["activation_fn"],
            "torch.nn.modules.activation.Sigmoid"
        );
        let tokenizer_config: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(tokenizer_config["model_max_length"], 32, "{name}");
        if name.contains("modernbert") {
            // Both layouts of the attention pattern, as the fixture had them.
            assert_eq!(
                config["layer_types"],
                serde_json::json!(["full_attention", "sliding_attention", "full_attention"])
            );
            assert_eq!(config["global_attn_every_n_layers"], 2);
            assert_eq!(
                config["rope_parameters"]["sliding_attention"]["rope_theta"],
                10000.0
            );
            assert_eq!(config["local_rope_theta"], 10000.0);
            assert_eq!(config["global_rope_theta"], 160000.0);
        }
        assert_eq!(
            tensor_names(&out.join("model.safetensors")),
            tensor_names(&fixture(name).join("model.safetensors")),
            "{name}: tensor names"
        );
        let reloaded = load_dir(&out, &LoadOptions::default());
        let pairs = pairs_of(name);
        let a = model.predict(&pairs, 3, ScoreActivation::Identity).unwrap();
        let b = reloaded
            .predict(&pairs, 3, ScoreActivation::Identity)
            .unwrap();
        assert_eq!(a, b, "{name}: reloaded logits differ");
        for ((spec, var), (_, reloaded_var)) in model.params().iter().zip(reloaded.params().iter())
        {
            assert_eq!(
                values(var.as_tensor()),
                values(reloaded_var.as_tensor()),
                "{name}: {}",
                spec.name
            );
        }
    }
}

/// A copy of fixture `name` as a base checkpoint: tensors whose name `is_head` says are dropped
/// and `prefix` is stripped from the rest (how `ElectraModel` / `ModernBertModel` save).
fn base_checkpoint(name: &str, is_head: &dyn Fn(&str) -> bool, prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture(name);
    for file in ["tokenizer.json", "tokenizer_config.json", "config.json"] {
        std::fs::copy(src.join(file), dir.path().join(file)).unwrap();
    }
    let tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let kept: HashMap<String, Tensor> = tensors
        .into_iter()
        .filter(|(k, _)| !is_head(k))
        .map(|(k, v)| (k.strip_prefix(prefix).unwrap_or(&k).to_string(), v))
        .collect();
    candle_core::safetensors::save(&kept, dir.path().join("model.safetensors")).unwrap();
    dir
}

fn mean_and_std(values: &[f32]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

#[test]
fn fresh_heads_on_base_checkpoints_are_initialised_as_transformers_does() {
    // ELECTRA (ElectraPreTrainedModel._init_weights): Linear weights normal(0, initializer_range
    // = 0.2), biases zero.
    let electra = base_checkpoint(
        "tiny-electra-ce",
        &|k| k.starts_with("classifier."),
        "electra.",
    );
    let model = load_dir(electra.path(), &LoadOptions::default());
    let mut initialized = model.load_report().initialized.clone();
    initialized.sort();
    assert_eq!(
        initialized,
        [
            "classifier.dense.bias",
            "classifier.dense.weight",
            "classifier.out_proj.bias",
            "classifier.out_proj.weight"
        ]
    );
    let param = |model: &CrossEncoder, name: &str| values(&model.params().get(name).unwrap());
    let (mean, std) = mean_and_std(&param(&model, "classifier.dense.weight"));
    assert!(
        mean.abs() < 0.02 && (std - 0.2).abs() < 0.02,
        "{mean} {std}"
    );
    assert!(param(&model, "classifier.dense.bias")
        .iter()
        .all(|v| *v == 0.0));
    assert!(param(&model, "classifier.out_proj.bias")
        .iter()
        .all(|v| *v == 0.0));
    // The encoder is the checkpoint's.
    let full = load("tiny-electra-ce");
    assert_eq!(
        param(&model, "electra.encoder.layer.1.output.dense.weight"),
        param(&full, "electra.encoder.layer.1.output.dense.weight")
    );

    // ModernBERT (ModernBertPreTrainedModel._init_weights): truncated normals cut at
    // initializer_cutoff_factor (2) standard deviations: head.dense std 0.2 / √(2·3 layers),
    // classifier std hidden_size^-½; head.norm weight ones; classifier bias zero.
    let modern = base_checkpoint(
        "tiny-modernbert-cls-ce",
        &|k| k.starts_with("classifier.") || k.starts_with("head."),
        "model.",
    );
    let model = load_dir(modern.path(), &LoadOptions::default());
    let mut initialized = model.load_report().initialized.clone();
    initialized.sort();
    assert_eq!(
        initialized,
        [
            "classifier.bias",
            "classifier.weight",
            "head.dense.weight",
            "head.norm.weight"
        ]
    );
    let dense = param(&model, "head.dense.weight");
    let std_out = 0.2 / 6f64.sqrt();
    let (mean, std) = mean_and_std(&dense);
    // A normal truncated at ±2σ has standard deviation 0.880σ.
    assert!(
        mean.abs() < 0.1 * std_out && (std - 0.880 * std_out).abs() < 0.1 * std_out,
        "{mean} {std}"
    );
    assert!(dense.iter().all(|v| v.abs() as f64 <= 2.0 * std_out + 1e-7));
    let classifier = param(&model, "classifier.weight");
    assert!(classifier
        .iter()
        .all(|v| v.abs() as f64 <= 2.0 / 32f64.sqrt() + 1e-7));
    assert!(param(&model, "head.norm.weight").iter().all(|v| *v == 1.0));
    assert!(param(&model, "classifier.bias").iter().all(|v| *v == 0.0));
}

/// Mean squared error of the logits of four fixture pairs against fixed targets.
fn probe_loss(model: &CrossEncoder, pairs: &[(String, String)]) -> Tensor {
    let encoded = model.tokenizer().encode_pairs(pairs).unwrap();
    let refs: Vec<_> = encoded.iter().collect();
    let logits = model
        .forward_encoded(&refs, None)
        .unwrap()
        .squeeze(1)
        .unwrap();
    let targets = Tensor::new(&[0.9f32, -0.4, 0.3, 1.2][..pairs.len()], &Device::Cpu).unwrap();
    (logits - targets)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
}

#[test]
fn modernbert_gradients_reach_every_parameter_and_match_finite_differences() {
    for name in ["tiny-modernbert-cls-ce", "tiny-modernbert-mean-ce"] {
        let model = load(name);
        // Long pairs first: the sliding window (4 either side) is shorter than they are.
        let pairs: Vec<_> = pairs_of(name).into_iter().skip(1).take(4).collect();
        let grads = probe_loss(&model, &pairs).backward().unwrap();
        for (spec, var) in model.params().iter() {
            let grad = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient for {}", spec.name));
            let norm: f32 = grad.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{name}: {} {norm}",
                spec.name
            );
        }
        let probes = [
            "model.embeddings.norm.weight",
            "model.layers.0.attn.Wqkv.weight",
            "model.layers.1.attn_norm.weight",
            "model.layers.1.attn.Wo.weight",
            "model.layers.1.mlp.Wi.weight",
            "model.layers.2.mlp.Wo.weight",
            "model.final_norm.weight",
            "head.dense.weight",
            "head.norm.weight",
        ];
        for probe in probes {
            let (_, var) = model
                .params()
                .iter()
                .find(|(s, _)| s.name == probe)
                .unwrap();
            let original = values(var.as_tensor());
            let analytic = values(grads.get(var.as_tensor()).unwrap());
            let index = (0..analytic.len())
                .max_by(|&a, &b| analytic[a].abs().total_cmp(&analytic[b].abs()))
                .unwrap();
            let h = 1e-3f32;
            let eval_at = |delta: f32| -> f64 {
                let mut v = original.clone();
                v[index] += delta;
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                probe_loss(&model, &pairs).to_scalar::<f32>().unwrap() as f64
            };
            let numeric = ((eval_at(h) - eval_at(-h)) / (2.0 * h as f64)) as f32;
            eval_at(0.0);
            let tol = 2e-2 * analytic[index].abs().max(1e-3);
            assert!(
                (numeric - analytic[index]).abs() <= tol,
                "{name} {probe}[{index}]: numeric {numeric} vs analytic {}",
                analytic[index]
            );
        }
    }
}

#[test]
fn modernbert_layer_pruning_keeps_each_layers_attention_kind() {
    // Layers 1 (sliding) and 2 (global) of three become layers 0 and 1; layer 1's attn_norm
    // (renamed to layer 0's) is left unused, as transformers builds layer 0 without one.
    let options = LoadOptions {
        layers: Some(vec![1, 2]),
        ..LoadOptions::default()
    };
    let model = load_dir(&fixture("tiny-modernbert-cls-ce"), &options);
    assert_eq!(model.config().num_hidden_layers, 2);
    assert_eq!(
        model.config().modernbert.as_ref().unwrap().global_layers,
        [false, true]
    );
    assert!(model
        .load_report()
        .unused
        .contains(&"model.layers.0.attn_norm.weight".to_string()));
    let full = load("tiny-modernbert-cls-ce");
    assert_eq!(
        values(&model.params().get("model.layers.1.mlp.Wi.weight").unwrap()),
        values(&full.params().get("model.layers.2.mlp.Wi.weight").unwrap())
    );
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path(), ScoreActivation::Identity).unwrap();
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["num_hidden_layers"], 2);
    assert_eq!(
        config["layer_types"],
        serde_json::json!(["sliding_attention", "full_attention"])
    );
    // Not "every n-th layer from 0": the older key is left out rather than written wrong.
    assert!(
        config.get("global_attn_every_n_layers").is_none(),
        "{config}"
    );
    let reloaded = load_dir(dir.path(), &LoadOptions::default());
    let pairs = pairs_of("tiny-modernbert-cls-ce");
    assert_eq!(
        model.predict(&pairs, 4, ScoreActivation::Identity).unwrap(),
        reloaded
            .predict(&pairs, 4, ScoreActivation::Identity)
            .unwrap()
    );
}

#[test]
fn trim_vocab_refuses_modernbert_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, "python is a language\n").unwrap();
    let out = dir.path().join("trimmed");
    let run = crossdistill(&[
        "trim-vocab",
        "--model",
        fixture("tiny-modernbert-cls-ce").to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    let message = stderr(&run);
    assert!(message.contains("BPE"), "{message}");
    assert!(!out.exists());
}

#[test]
fn the_modernbert_recipe_trains_two_steps_on_the_tiny_fixtures() {
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/modernbert-student.toml");
    let out = tempfile::tempdir().unwrap();
    let sets = [
        format!("run.output_dir={}", out.path().join("run").display()),
        format!("teacher.model={}", fixture("tiny-bert-ce").display()),
        format!(
            "student.model={}",
            fixture("tiny-modernbert-mean-ce").display()
        ),
        "student.max_length=32".to_string(),
        "teacher.max_length=32".to_string(),
        "train.max_steps=2".to_string(),
        "train.save_every=0".to_string(),
        "train.eval_every=0".to_string(),
    ];
    let mut args = vec!["train".to_string(), recipe.display().to_string()];
    for set in &sets {
        args.push("--set".to_string());
        args.push(set.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = crossdistill(&args);
    assert!(run.status.success(), "{}", stderr(&run));
    let final_dir = out.path().join("run/final");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(final_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        config["architectures"][0],
        "ModernBertForSequenceClassification"
    );
    assert_eq!(config["classifier_pooling"], "mean");
    let losses = logged_losses(&out.path().join("run"));
    assert!(
        !losses.is_empty() && losses.iter().all(|l| l.is_finite()),
        "{losses:?}"
    );
    assert!(final_dir.join("README.md").is_file());
    // predict on the trained student through the CLI.
    let input = out.path().join("pairs.jsonl");
    std::fs::write(
        &input,
        "{\"query\": \"python\", \"passage\": \"Python is a programming language.\"}\n",
    )
    .unwrap();
    let output = out.path().join("scored.jsonl");
    let predict = crossdistill(&[
        "predict",
        "--model",
        final_dir.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(predict.status.success(), "{}", stderr(&predict));
    let scored = std::fs::read_to_string(&output).unwrap();
    assert!(scored.contains("\"score\""), "{scored}");
}

#[test]
fn a_modernbert_run_resumed_from_a_checkpoint_equals_the_uninterrupted_one() {
    // With every ModernBERT dropout on, shuffled data and two epochs: the checkpoint must carry
    // the weights, AdamW moments, schedule, dropout stream and data position.
    let dir = tempfile::tempdir().unwrap();
    let student = dir.path().join("student");
    std::fs::create_dir(&student).unwrap();
    for entry in std::fs::read_dir(fixture("tiny-modernbert-mean-ce")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, student.join(path.file_name().unwrap())).unwrap();
    }
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(student.join("config.json")).unwrap())
            .unwrap();
    for key in [
        "embedding_dropout",
        "attention_dropout",
        "mlp_dropout",
        "classifier_dropout",
    ] {
        config[key] = 0.1.into();
    }
    std::fs::write(student.join("config.json"), config.to_string()).unwrap();
    let recipe = format!(
        r#"version = 1
[run]
output_dir = "run"
seed = 11
[student]
model = "{student}"
max_length = 32
[data.train]
path = "{data}"
columns = ["query", "passage"]
label = "label"
[[loss]]
kind = "mse"
labels = "data"
[train]
epochs = 2
batch_size = 2
learning_rate = 1e-3
log_every = 1
save_every = 3
"#,
        student = student.display(),
        data = fixture("students/train.jsonl").display(),
    );
    let recipe_path = dir.path().join("recipe.toml");
    std::fs::write(&recipe_path, recipe).unwrap();
    let recipe_path = recipe_path.to_str().unwrap();
    let full = crossdistill(&["train", recipe_path]);
    assert!(full.status.success(), "{}", stderr(&full));
    let run = dir.path().join("run");
    let reference =
        candle_core::safetensors::load(run.join("final/model.safetensors"), &Device::Cpu).unwrap();
    let losses = logged_losses(&run);
    assert_eq!(losses.len(), 6);
    for entry in std::fs::read_dir(&run).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name != "checkpoint-3" && path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        }
    }
    let resumed = crossdistill(&["train", recipe_path, "--resume"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let after =
        candle_core::safetensors::load(run.join("final/model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(reference.len(), after.len());
    for (name, tensor) in &reference {
        assert_eq!(values(tensor), values(&after[name]), "{name} after resume");
    }
    assert_eq!(
        logged_losses(&run),
        losses,
        "the resumed run logs the same losses"
    );
}
