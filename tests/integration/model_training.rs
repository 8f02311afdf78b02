//! Gradients reach every parameter, match finite differences through the whole encoder, and a
//! step of gradient descent lowers the loss; loading edge cases and bad model inputs.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use crossdistill::model::{CrossEncoder, Dropout, LoadOptions, ScoreActivation};

use crate::common::{expected_rows, fixture};

fn load(name: &str) -> CrossEncoder {
    CrossEncoder::load(
        fixture(name).to_str().unwrap(),
        None,
        &LoadOptions::default(),
    )
    .unwrap()
}

fn pairs(name: &str) -> Vec<(String, String)> {
    expected_rows(name)
        .iter()
        .take(4)
        .map(|r| {
            (
                r["query"].as_str().unwrap().to_string(),
                r["passage"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Mean squared error of the logits against fixed targets.
fn loss(model: &CrossEncoder, pairs: &[(String, String)], dropout_seed: Option<u64>) -> Tensor {
    let encoded = model.tokenizer().encode_pairs(pairs).unwrap();
    let refs: Vec<_> = encoded.iter().collect();
    let mut stream = dropout_seed.map(Dropout::new);
    let logits = model
        .forward_encoded(&refs, stream.as_mut())
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
fn every_parameter_gets_a_nonzero_gradient() {
    for name in ["tiny-bert-ce", "tiny-xlmr-ce"] {
        let model = load(name);
        let grads = loss(&model, &pairs(name), Some(7)).backward().unwrap();
        let mut zero = Vec::new();
        for (spec, var) in model.params().iter() {
            let grad = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient for {}", spec.name));
            let norm = grad
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            if norm == 0.0 || !norm.is_finite() {
                zero.push(spec.name.clone());
            }
        }
        assert!(
            zero.is_empty(),
            "{name}: zero/non-finite gradients for {zero:?}"
        );
        assert!(
            model.params().iter().count() >= 37,
            "{name}: too few parameters"
        );
    }
}

#[test]
fn whole_model_gradients_match_finite_differences() {
    // Perturb one element of several parameters (LayerNorm, attention, FFN, head, embeddings)
    // and compare the change of the eval-mode loss with the analytic gradient.
    for name in ["tiny-bert-ce", "tiny-xlmr-ce"] {
        let model = load(name);
        let batch = pairs(name);
        let grads = loss(&model, &batch, None).backward().unwrap();
        let prefix = if name.contains("bert") {
            "bert"
        } else {
            "roberta"
        };
        let probes = [
            format!("{prefix}.embeddings.LayerNorm.weight"),
            format!("{prefix}.encoder.layer.0.attention.self.query.weight"),
            // (key biases get no gradient in exact arithmetic: softmax ignores a per-row constant)
            format!("{prefix}.encoder.layer.0.attention.self.value.bias"),
            format!("{prefix}.encoder.layer.1.attention.output.LayerNorm.bias"),
            format!("{prefix}.encoder.layer.1.intermediate.dense.weight"),
            format!("{prefix}.encoder.layer.1.output.LayerNorm.weight"),
        ];
        for probe in probes {
            let (_, var) = model
                .params()
                .iter()
                .find(|(s, _)| s.name == probe)
                .unwrap();
            let original: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let analytic: Vec<f32> = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            // The element with the largest gradient, so the check is not about noise.
            let index = (0..analytic.len())
                .max_by(|&a, &b| analytic[a].abs().total_cmp(&analytic[b].abs()))
                .unwrap();
            let h = 1e-3f32;
            let eval_at = |delta: f32| -> f64 {
                let mut values = original.clone();
                values[index] += delta;
                var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss(&model, &batch, None).to_scalar::<f32>().unwrap() as f64
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
fn one_gradient_step_lowers_the_loss() {
    for name in ["tiny-bert-ce", "tiny-xlmr-ce"] {
        let model = load(name);
        let batch = pairs(name);
        let before = loss(&model, &batch, None);
        let grads = before.backward().unwrap();
        for var in model.vars() {
            let grad = grads.get(var.as_tensor()).unwrap();
            var.set(&(var.as_tensor() - (grad * 1e-2).unwrap()).unwrap())
                .unwrap();
        }
        let after = loss(&model, &batch, None).to_scalar::<f32>().unwrap();
        let before = before.to_scalar::<f32>().unwrap();
        assert!(after < before, "{name}: loss {before} -> {after}");
    }
}

#[test]
fn dropout_is_active_in_training_and_reproducible() {
    let model = load("tiny-bert-ce");
    let batch = pairs("tiny-bert-ce");
    let eval = loss(&model, &batch, None).to_scalar::<f32>().unwrap();
    let train_a = loss(&model, &batch, Some(1)).to_scalar::<f32>().unwrap();
    let train_b = loss(&model, &batch, Some(1)).to_scalar::<f32>().unwrap();
    let train_c = loss(&model, &batch, Some(2)).to_scalar::<f32>().unwrap();
    assert_eq!(train_a, train_b, "same seed, same masks");
    assert_ne!(train_a, eval);
    assert_ne!(train_a, train_c);
}

/// Copy a fixture, dropping tensors whose name matches `drop`, and editing config.json.
fn variant(
    name: &str,
    drop: &dyn Fn(&str) -> bool,
    edit: &dyn Fn(&mut serde_json::Value),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture(name);
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(file), dir.path().join(file)).unwrap();
    }
    let tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let kept: HashMap<String, Tensor> = tensors.into_iter().filter(|(k, _)| !drop(k)).collect();
    candle_core::safetensors::save(&kept, dir.path().join("model.safetensors")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

fn load_dir(dir: &Path, options: &LoadOptions) -> crossdistill::error::Result<CrossEncoder> {
    CrossEncoder::load(dir.to_str().unwrap(), None, options)
}

#[test]
fn base_encoder_gets_a_seeded_fresh_head() {
    // A BertModel checkpoint: no pooler, no classifier, names without the `bert.` prefix.
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("tiny-bert-ce");
    for file in ["tokenizer.json", "config.json"] {
        std::fs::copy(src.join(file), dir.path().join(file)).unwrap();
    }
    let tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let base: HashMap<String, Tensor> = tensors
        .into_iter()
        .filter(|(k, _)| !k.starts_with("classifier") && !k.contains("pooler"))
        .map(|(k, v)| (k.trim_start_matches("bert.").to_string(), v))
        .collect();
    candle_core::safetensors::save(&base, dir.path().join("model.safetensors")).unwrap();
    let options = LoadOptions {
        seed: 5,
        ..LoadOptions::default()
    };
    let a = load_dir(dir.path(), &options).unwrap();
    let b = load_dir(dir.path(), &options).unwrap();
    let c = load_dir(
        dir.path(),
        &LoadOptions {
            seed: 6,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        a.load_report().initialized.len(),
        4,
        "{:?}",
        a.load_report().initialized
    );
    let batch = pairs("tiny-bert-ce");
    let sa = a.predict(&batch, 4, ScoreActivation::Identity).unwrap();
    assert_eq!(
        sa,
        b.predict(&batch, 4, ScoreActivation::Identity).unwrap(),
        "same seed, same head"
    );
    assert_ne!(sa, c.predict(&batch, 4, ScoreActivation::Identity).unwrap());
    // Encoder weights were loaded, not re-initialised.
    let word = a
        .params()
        .get("bert.embeddings.word_embeddings.weight")
        .unwrap();
    let original = load("tiny-bert-ce")
        .params()
        .get("bert.embeddings.word_embeddings.weight")
        .unwrap();
    assert_eq!(
        word.to_vec2::<f32>().unwrap(),
        original.to_vec2::<f32>().unwrap()
    );
}

#[test]
fn any_num_labels_and_layer_pruning() {
    let options = LoadOptions {
        num_labels: Some(3),
        ..LoadOptions::default()
    };
    let model =
        CrossEncoder::load(fixture("tiny-xlmr-ce").to_str().unwrap(), None, &options).unwrap();
    let logits = model
        .predict_logits(&pairs("tiny-xlmr-ce"), 2, &mut |_| {})
        .unwrap();
    assert!(logits.iter().all(|row| row.len() == 3));
    assert_eq!(model.num_labels(), 3);

    let options = LoadOptions {
        layers: Some(vec![1]),
        ..LoadOptions::default()
    };
    let pruned =
        CrossEncoder::load(fixture("tiny-bert-ce").to_str().unwrap(), None, &options).unwrap();
    assert_eq!(pruned.config().num_hidden_layers, 1);
    let full = load("tiny-bert-ce");
    let layer1 = full
        .params()
        .get("bert.encoder.layer.1.output.dense.weight")
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let kept = pruned
        .params()
        .get("bert.encoder.layer.0.output.dense.weight")
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(layer1, kept, "layer 1 of the checkpoint becomes layer 0");
    let err = CrossEncoder::load(
        fixture("tiny-bert-ce").to_str().unwrap(),
        None,
        &LoadOptions {
            layers: Some(vec![0, 5]),
            ..LoadOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("layer 5 asked for, but the model has layers 0..1"),
        "{err}"
    );
}

#[test]
fn bad_models_give_clear_errors() {
    let unknown = variant("tiny-bert-ce", &|_| false, &|c| {
        c["model_type"] = "gpt2".into()
    });
    let err = load_dir(unknown.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unsupported model_type `gpt2`") && err.contains("config.json"),
        "{err}"
    );

    let missing = variant(
        "tiny-bert-ce",
        &|k| k.contains("layer.1.output.dense.weight"),
        &|_| {},
    );
    let err = load_dir(missing.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no tensor `bert.encoder.layer.1.output.dense.weight`"),
        "{err}"
    );

    let small_vocab = variant("tiny-bert-ce", &|k| k.contains("word_embeddings"), &|c| {
        c["vocab_size"] = 1000.into()
    });
    // Re-add a small embedding table so only the tokenizer mismatch is left.
    let mut tensors =
        candle_core::safetensors::load(small_vocab.path().join("model.safetensors"), &Device::Cpu)
            .unwrap();
    tensors.insert(
        "bert.embeddings.word_embeddings.weight".into(),
        Tensor::zeros((1000, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, small_vocab.path().join("model.safetensors")).unwrap();
    let err = load_dir(small_vocab.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "the tokenizer has 30522 tokens but the model's embedding table has 1000 rows"
        ),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let err = load_dir(empty.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no config.json"), "{err}");

    let err = CrossEncoder::load("./no/such/model", None, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no such directory") && err.contains("./no/such/model"),
        "{err}"
    );

    std::env::set_var("HF_HUB_OFFLINE", "1");
    let cache = tempfile::tempdir().unwrap();
    std::env::set_var("HF_HUB_CACHE", cache.path());
    let err = CrossEncoder::load("someone/missing-model", None, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not in the Hugging Face cache")
            && err.contains(cache.path().to_str().unwrap()),
        "{err}"
    );
    std::env::remove_var("HF_HUB_CACHE");
}

#[test]
fn hub_id_loads_from_a_prefilled_cache_offline() {
    // The layout huggingface_hub writes: models--OWNER--NAME/{refs/main, snapshots/HASH/...}.
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--tiny--bert-ce");
    let snapshot = repo.join("snapshots/0123456789abcdef");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123456789abcdef").unwrap();
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture("tiny-bert-ce").join(file), snapshot.join(file)).unwrap();
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_crossdistill"))
        .args([
            "rank",
            "--model",
            "tiny/bert-ce",
            "--query",
            "python",
            "--json",
            "--documents",
        ])
        .arg(
            fixture("tiny-bert-ce")
                .join("vocab.txt")
                .parent()
                .unwrap()
                .join("README.md"),
        )
        .env("HF_HUB_CACHE", cache.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ranked: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(ranked.as_array().unwrap().len() > 3);
}

#[test]
fn half_precision_checkpoints_load_as_f32() {
    let reference = load("tiny-bert-ce");
    let batch = pairs("tiny-bert-ce");
    let expected = reference
        .predict(&batch, 4, ScoreActivation::Identity)
        .unwrap();
    for dtype in [candle_core::DType::F16, candle_core::DType::BF16] {
        let dir = tempfile::tempdir().unwrap();
        let src = fixture("tiny-bert-ce");
        for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(src.join(file), dir.path().join(file)).unwrap();
        }
        let tensors =
            candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
        let half: HashMap<String, Tensor> = tensors
            .into_iter()
            .map(|(k, v)| (k, v.to_dtype(dtype).unwrap()))
            .collect();
        candle_core::safetensors::save(&half, dir.path().join("model.safetensors")).unwrap();
        let model = load_dir(dir.path(), &LoadOptions::default()).unwrap();
        assert!(
            model
                .vars()
                .iter()
                .all(|v| v.dtype() == candle_core::DType::F32),
            "{dtype:?}: trained in f32"
        );
        let got = model.predict(&batch, 4, ScoreActivation::Identity).unwrap();
        let diff = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // Only the rounding of the weights to 16 bits separates the two.
        assert!(diff < 0.05, "{dtype:?}: logits differ by {diff}");
        assert!(diff > 0.0, "{dtype:?}: the weights really were rounded");
    }
}
