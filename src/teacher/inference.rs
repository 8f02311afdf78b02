//! What the inference-only teacher models (candle-transformers' ModernBERT and DeBERTa-v2)
//! share: config.json as JSON, the saved activation, the weights as a `VarBuilder`, the truncation
//! length, and sentence-transformers' batch loop (pair template, `longest_first` truncation,
//! length-sorted batches padded to their longest pair, input order restored).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::config_value::{get_usize, saved_activation_fn};
use crate::model::{LoadOptions, ModelFiles, ScoreActivation};
use crate::tokenize::{in_length_sorted_batches, model_max_length, PaddedBatch, PairTokenizer};

/// config.json, parsed.
pub(crate) fn read_config(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
    let raw: Value = serde_json::from_str(&text)
        .map_err(|e| Error::input(path, Some(e.line()), format!("invalid JSON: {e}")))?;
    if !raw.is_object() {
        return Err(Error::input(
            path,
            None,
            "config.json must hold a JSON object",
        ));
    }
    Ok(raw)
}

/// `key` as a positive integer; missing or 0 is an error.
pub(crate) fn require_usize(raw: &Value, key: &str, path: &Path) -> Result<usize> {
    get_usize(raw, key, path)?
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            Error::input(
                path,
                None,
                format!("`{key}` is missing or 0; the model config needs it"),
            )
        })
}

/// The activation sentence-transformers' `predict` applies: config.json's
/// `sentence_transformers.activation_fn` (v4/v5), else config_sentence_transformers.json's
/// `activation_fn` (v6), else sigmoid for one label and identity for several.
pub(crate) fn default_activation(
    raw: &Value,
    files: &ModelFiles,
    labels: usize,
) -> ScoreActivation {
    let saved = saved_activation_fn(raw).map(str::to_string).or_else(|| {
        let path = files.dir.join("config_sentence_transformers.json");
        let value: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        value.get("activation_fn")?.as_str().map(str::to_string)
    });
    saved
        .as_deref()
        .and_then(ScoreActivation::parse)
        .unwrap_or(if labels == 1 {
            ScoreActivation::Sigmoid
        } else {
            ScoreActivation::Identity
        })
}

/// Check the load options an inference-only model can honour: no layer selection, the
/// checkpoint's own head.
pub(crate) fn check_options(
    options: &LoadOptions,
    files: &ModelFiles,
    labels: usize,
    model_type: &str,
) -> Result<()> {
    if options.layers.is_some() {
        return Err(Error::model(
            &files.name,
            format!("layer selection (`layers`) is for trainable students; a {model_type} model is scored whole"),
        )
        .with_hint("drop `layers` / --layers for this model"));
    }
    match options.num_labels {
        Some(n) if n != labels => Err(Error::model(
            &files.name,
            format!(
                "num_labels {n} asked for, but the {model_type} checkpoint's head has {labels}"
            ),
        )
        .with_hint("a teacher keeps its own head; leave num_labels unset")),
        _ => Ok(()),
    }
}

/// Truncation length: the one asked for (at most `limit`, the position table), else
/// min(tokenizer_config `model_max_length`, `limit`).
pub(crate) fn resolve_max_length(
    files: &ModelFiles,
    asked: Option<usize>,
    limit: usize,
) -> Result<usize> {
    let tokenizer_max = files
        .tokenizer_config
        .as_ref()
        .and_then(|p| p.parent())
        .and_then(model_max_length);
    match asked {
        Some(n) if n > limit => Err(Error::invalid(format!(
            "max_length {n} is longer than the model's position table allows ({limit})"
        ))
        .with_hint(format!("use max_length <= {limit}"))),
        Some(n) => Ok(n),
        None => Ok(tokenizer_max.map_or(limit, |t| t.min(limit))),
    }
}

/// Every tensor of the checkpoint's safetensors files, as f32 on `device`, behind a
/// `VarBuilder` (what candle-transformers' `load` functions take).
pub(crate) fn var_builder(files: &ModelFiles, device: &Device) -> Result<VarBuilder<'static>> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for file in &files.weights {
        let loaded = candle_core::safetensors::load(file, device).map_err(|e| {
            Error::model(&files.name, format!("cannot read {}: {e}", file.display())).with_hint(
                "the file must be a safetensors file written by transformers or sentence-transformers",
            )
        })?;
        tensors.extend(loaded);
    }
    Ok(VarBuilder::from_tensors(tensors, DType::F32, device))
}

/// A candle-transformers loading error (a missing tensor, a shape that does not fit
/// config.json) as a model error.
pub(crate) fn weights_error(
    files: &ModelFiles,
    model_type: &str,
    error: candle_core::Error,
) -> Error {
    Error::model(
        &files.name,
        format!("the weights do not fit a {model_type} model as config.json describes it: {error}"),
    )
    .with_hint("model.safetensors and config.json must come from the same *ForSequenceClassification checkpoint")
}

/// Raw logits per pair in input order: tokenise with `tokenizer`, check ids against
/// `vocab_size`, run length-sorted batches of `batch_size` through `forward` (which gets the
/// padded batch and returns `(B, num_labels)` logits).
pub(crate) fn predict_in_batches(
    tokenizer: &PairTokenizer,
    model_name: &str,
    vocab_size: usize,
    pairs: &[(&str, &str)],
    batch_size: usize,
    on_batch: &mut dyn FnMut(usize),
    forward: &dyn Fn(&PaddedBatch) -> Result<Tensor>,
) -> Result<Vec<Vec<f32>>> {
    if batch_size == 0 {
        return Err(Error::invalid("batch size must be at least 1, found 0"));
    }
    let encoded = tokenizer.encode_pairs(pairs)?;
    let vocab = vocab_size as u32;
    for pair in &encoded {
        if let Some(bad) = pair.input_ids.iter().find(|&&id| id >= vocab) {
            return Err(Error::model(
                model_name,
                format!("the tokenizer produced token id {bad}, but the embedding table has {vocab} rows"),
            )
            .with_hint("use the tokenizer that belongs to these weights"));
        }
    }
    in_length_sorted_batches(&encoded, batch_size, on_batch, |batch| {
        let padded = tokenizer.pad(batch);
        Ok(forward(&padded)?
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .to_vec2::<f32>()?)
    })
}
