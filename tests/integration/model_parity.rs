//! Our encoder and tokenisation against the torch reference (tests/fixtures/*/expected.jsonl,
//! produced by transformers in f32; tolerance 1e-5 on logits, ids exact).

use candle_core::Device;
use crossdistill::model::{CrossEncoder, LoadOptions, ScoreActivation};

use crate::common::{expected_rows, fixture, max_abs_diff};

fn load(name: &str) -> CrossEncoder {
    CrossEncoder::load(
        fixture(name).to_str().unwrap(),
        None,
        &LoadOptions::default(),
    )
    .expect("fixture loads")
}

fn check_token_ids(name: &str) {
    let model = load(name);
    for row in expected_rows(name) {
        let pair = [(
            row["query"].as_str().unwrap(),
            row["passage"].as_str().unwrap(),
        )];
        let encoded = model.tokenizer().encode_pairs(&pair).unwrap();
        let expected: Vec<u32> = row["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(encoded[0].input_ids, expected, "{name} {}", row["id"]);
        if let Some(types) = row.get("token_type_ids") {
            let expected: Vec<u32> = types
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(
                encoded[0].type_ids, expected,
                "{name} {} type ids",
                row["id"]
            );
        }
    }
}

fn check_logits(name: &str, batch_size: usize) {
    let model = load(name);
    let rows = expected_rows(name);
    let pairs: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["query"].as_str().unwrap(), r["passage"].as_str().unwrap()))
        .collect();
    let logits = model
        .predict(&pairs, batch_size, ScoreActivation::Identity)
        .unwrap();
    let expected: Vec<f32> = rows
        .iter()
        .map(|r| r["logit"].as_f64().unwrap() as f32)
        .collect();
    let diff = max_abs_diff(&logits, &expected);
    assert!(
        diff <= 1e-5,
        "{name} batch {batch_size}: max |Δlogit| = {diff}"
    );
    let scores = model
        .predict(&pairs, batch_size, model.default_activation())
        .unwrap();
    let expected: Vec<f32> = rows
        .iter()
        .map(|r| r["score"].as_f64().unwrap() as f32)
        .collect();
    assert!(max_abs_diff(&scores, &expected) <= 1e-5);
}

#[test]
fn bert_token_ids_match_transformers() {
    check_token_ids("tiny-bert-ce");
}

#[test]
fn xlmr_token_ids_match_transformers() {
    check_token_ids("tiny-xlmr-ce");
}

#[test]
fn bert_logits_match_torch_single_and_padded_batches() {
    check_logits("tiny-bert-ce", 1);
    check_logits("tiny-bert-ce", 5);
}

#[test]
fn xlmr_logits_match_torch_single_and_padded_batches() {
    check_logits("tiny-xlmr-ce", 1);
    check_logits("tiny-xlmr-ce", 4);
}

#[test]
fn hidden_states_match_torch_layer_by_layer() {
    for name in ["tiny-bert-ce", "tiny-xlmr-ce"] {
        let model = load(name);
        let text = std::fs::read_to_string(fixture(name).join("debug_hidden_states.json")).unwrap();
        let debug: serde_json::Value = serde_json::from_str(&text).unwrap();
        let ids: Vec<u32> = debug["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let types: Vec<u32> = match debug.get("token_type_ids") {
            Some(t) => t
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect(),
            None => {
                // BERT's pair segments come from the tokenizer; recompute them from [SEP].
                let first_sep = ids.iter().position(|&i| i == 102).unwrap_or(ids.len());
                (0..ids.len())
                    .map(|i| u32::from(model.config().type_vocab_size > 1 && i > first_sep))
                    .collect()
            }
        };
        let pair = crossdistill::tokenize::EncodedPair {
            input_ids: ids,
            type_ids: types,
        };
        let batch = model.batch_tensors(&[&pair]).unwrap();
        let states = model.all_hidden_states(&batch).unwrap();
        let expected = debug["hidden_states"].as_array().unwrap();
        assert_eq!(states.len(), expected.len());
        for (layer, (ours, theirs)) in states.iter().zip(expected).enumerate() {
            let ours: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
            let theirs: Vec<f32> = theirs
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| {
                    row.as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap() as f32)
                })
                .collect();
            let diff = max_abs_diff(&ours, &theirs);
            assert!(diff < 2e-5, "{name} hidden state {layer}: max diff {diff}");
        }
    }
}

#[test]
fn saved_model_reloads_with_identical_logits_and_transformers_layout() {
    for name in ["tiny-bert-ce", "tiny-xlmr-ce"] {
        let model = load(name);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("saved");
        model.save(&out, ScoreActivation::Sigmoid).unwrap();
        for file in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ] {
            assert!(out.join(file).is_file(), "{name}: saved dir lacks {file}");
        }
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        let class = if name.contains("bert") {
            "BertForSequenceClassification"
        } else {
            "XLMRobertaForSequenceClassification"
        };
        assert_eq!(config["architectures"][0], class);
        assert_eq!(
            config["sentence_transformers"]["activation_fn"],
            "torch.nn.modules.activation.Sigmoid"
        );
        assert_eq!(config["id2label"]["0"], "LABEL_0");
        // Weight names as transformers names them: identical key set to the torch checkpoint.
        let ours =
            candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
        let theirs =
            candle_core::safetensors::load(fixture(name).join("model.safetensors"), &Device::Cpu)
                .unwrap();
        let mut ours_keys: Vec<_> = ours.keys().collect();
        let mut theirs_keys: Vec<_> = theirs
            .keys()
            .filter(|k| !k.ends_with("position_ids"))
            .collect();
        ours_keys.sort();
        theirs_keys.sort();
        assert_eq!(ours_keys, theirs_keys, "{name}");
        let reloaded =
            CrossEncoder::load(out.to_str().unwrap(), None, &LoadOptions::default()).unwrap();
        let rows = expected_rows(name);
        let pairs: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r["query"].as_str().unwrap(), r["passage"].as_str().unwrap()))
            .collect();
        let a = model.predict(&pairs, 3, ScoreActivation::Identity).unwrap();
        let b = reloaded
            .predict(&pairs, 3, ScoreActivation::Identity)
            .unwrap();
        assert_eq!(a, b, "{name}: reloaded logits differ");
    }
}

#[test]
fn fixed_padding_in_tokenizer_json_does_not_change_results() {
    // all-MiniLM-L6-v2's tokenizer.json pads to 128 and truncates; ours must override both.
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("tiny-bert-ce");
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let mut tokenizer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("tokenizer.json")).unwrap())
            .unwrap();
    tokenizer["padding"] = serde_json::json!({"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"});
    tokenizer["truncation"] = serde_json::json!({"direction": "Right", "max_length": 16, "strategy": "OnlySecond", "stride": 0});
    std::fs::write(dir.path().join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let model =
        CrossEncoder::load(dir.path().to_str().unwrap(), None, &LoadOptions::default()).unwrap();
    let rows = expected_rows("tiny-bert-ce");
    let pairs: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["query"].as_str().unwrap(), r["passage"].as_str().unwrap()))
        .collect();
    let logits = model.predict(&pairs, 4, ScoreActivation::Identity).unwrap();
    let expected: Vec<f32> = rows
        .iter()
        .map(|r| r["logit"].as_f64().unwrap() as f32)
        .collect();
    assert!(max_abs_diff(&logits, &expected) <= 1e-5);
}
