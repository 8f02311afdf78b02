//! Loading a model directory from damaged files: `config.json` and the `model.safetensors`
//! header (the tokenizer is the tiny BERT fixture's). `CrossEncoder::load` never panics or
//! aborts; a model that loads scores a pair or fails with an error.
//!
//! Input: `config length: u16 LE`, that many bytes of config.json, the rest model.safetensors.
#![no_main]

use crossdistill::model::{CrossEncoder, LoadOptions, ScoreActivation};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const TOKENIZER: &[u8] = include_bytes!("../../tests/fixtures/tiny-bert-ce/tokenizer.json");

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let config_len = u16::from_le_bytes([data[0], data[1]]) as usize;
    let rest = &data[2..];
    let (config, weights) = rest.split_at(config_len.min(rest.len()));
    let dir = common::scratch().join("model");
    std::fs::create_dir_all(&dir).expect("the scratch directory is writable");
    std::fs::write(dir.join("config.json"), config).expect("writable");
    std::fs::write(dir.join("model.safetensors"), weights).expect("writable");
    if !dir.join("tokenizer.json").exists() {
        std::fs::write(dir.join("tokenizer.json"), TOKENIZER).expect("writable");
    }
    let options = LoadOptions {
        max_length: Some(16),
        ..LoadOptions::default()
    };
    let Ok(model) = CrossEncoder::load(dir.to_str().expect("utf-8 path"), None, &options) else {
        return;
    };
    if let Ok(scores) = model.predict(&[("a query", "a passage")], 1, ScoreActivation::Identity) {
        assert_eq!(scores.len(), 1);
    }
});
