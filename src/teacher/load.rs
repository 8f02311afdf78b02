//! The one place that turns a model directory into a scoring model: config.json's `model_type`
//! picks the implementation. `predict`, `rank`, `eval`, `mine --teacher`, `score` and
//! `[teacher] kind = "candle"` all load through here.

use std::path::Path;

use serde_json::Value;

use super::candle::CandleTeacher;
use super::causal_lm::{is_causal_lm_reranker, CausalLmReranker};
use super::deberta::DebertaV2CrossEncoder;
use crate::error::{Error, Result};
use crate::model::{CrossEncoder, LoadOptions, ModelFiles, PairScorer, ScoreActivation};

/// The `model_type`s [`load_pair_scorer`] reads, as config.json spells them (`qwen2` and `qwen3`
/// as `*ForCausalLM` rerankers).
pub const CANDLE_MODEL_TYPES: &[&str] = &[
    "bert",
    "xlm-roberta",
    "roberta",
    "electra",
    "modernbert",
    "deberta-v2",
    "qwen2",
    "qwen3",
];

/// config.json's `model_type` (empty when missing).
fn model_type(files: &ModelFiles) -> Result<String> {
    let path = &files.config;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
    let raw: Value = serde_json::from_str(&text)
        .map_err(|e| Error::input(path, Some(e.line()), format!("invalid JSON: {e}")))?;
    Ok(raw
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string())
}

/// Load the cross-encoder `spec` (a directory, relative paths against `base_dir`, or a hub id)
/// for scoring, as config.json says: a `*ForCausalLM` architecture is a [`CausalLmReranker`]
/// (Qwen2, Qwen3); otherwise `model_type` picks crossdistill's own encoder (the trainable
/// student's, in eval mode) for `bert`, `xlm-roberta`, `roberta`, `electra` and `modernbert`,
/// candle-transformers for `deberta-v2`. Any other type is an error that lists
/// [`CANDLE_MODEL_TYPES`].
pub fn load_pair_scorer(
    spec: &str,
    base_dir: Option<&Path>,
    options: &LoadOptions,
) -> Result<Box<dyn PairScorer>> {
    let files = ModelFiles::locate(spec, base_dir)?;
    if is_causal_lm_reranker(&files.config) {
        check_f32_only(options, &files, "a causal-LM reranker")?;
        return Ok(Box::new(CausalLmReranker::load(
            files,
            options.max_length,
            &options.device,
        )?));
    }
    let found = model_type(&files)?;
    let model: Box<dyn PairScorer> = match found.as_str() {
        "bert" | "xlm-roberta" | "roberta" | "electra" | "modernbert" => {
            Box::new(CrossEncoder::from_files(files, options)?)
        }
        "deberta-v2" => {
            check_f32_only(options, &files, "a deberta-v2 model")?;
            Box::new(DebertaV2CrossEncoder::from_files(files, options)?)
        }
        other => {
            let found = if other.is_empty() {
                "no model_type".to_string()
            } else {
                format!("model_type \"{other}\"")
            };
            return Err(Error::input(
                &files.config,
                None,
                format!(
                    "{found} is not a cross-encoder crossdistill can score; supported model types: {}",
                    CANDLE_MODEL_TYPES.join(", ")
                ),
            )
            .with_hint("use a *ForSequenceClassification checkpoint of a supported architecture, or export it to ONNX and use the onnx backend"));
        }
    };
    Ok(model)
}

/// The models that run only in f32 refuse another precision (rather than score in f32 under a
/// bf16 name, which would also mislabel their cached scores).
fn check_f32_only(options: &LoadOptions, files: &ModelFiles, what: &str) -> Result<()> {
    if options.dtype.is_f32() {
        return Ok(());
    }
    Err(Error::model(
        &files.name,
        format!(
            "dtype {} asked for, but {what} runs in f32 only (bf16/f16 inference covers bert, xlm-roberta, roberta, electra and modernbert)",
            options.dtype
        ),
    )
    .with_hint("use dtype \"f32\" (--dtype f32, or drop `dtype` from [teacher]) for this model"))
}

/// [`load_pair_scorer`] wrapped as a teacher: scores are the first logit after `activation`
/// (`None`: the model's own, [`PairScorer::default_activation`]).
pub fn load_candle_teacher(
    spec: &str,
    base_dir: Option<&Path>,
    options: &LoadOptions,
    batch_size: usize,
    activation: Option<ScoreActivation>,
) -> Result<CandleTeacher> {
    let model = load_pair_scorer(spec, base_dir, options)?;
    let activation = activation.unwrap_or_else(|| model.default_activation());
    CandleTeacher::from_boxed(model, batch_size, activation)
}
