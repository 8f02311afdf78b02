//! The causal-LM reranker: a Qwen2/Qwen3 `*ForCausalLM` in sentence-transformers 6's CrossEncoder
//! layout, scored by `logit(true token) − logit(false token)` at the last position. It is a
//! [`PairScorer`] like every other architecture, so `predict`, `rank`, `eval`, `score`,
//! `mine --teacher` and `[teacher] kind = "candle"` load it through `load_pair_scorer`.
//!
//! The layout (what `CrossEncoder.save_pretrained` writes for such a model):
//!
//! - `config.json` with `architectures: ["Qwen3ForCausalLM"]` (or Qwen2), `model.safetensors`,
//!   `tokenizer.json`, `tokenizer_config.json`, the chat template in `chat_template.jinja` (or
//!   `tokenizer_config.json`'s `chat_template`);
//! - `modules.json`: a `Transformer` module (`sentence_bert_config.json`:
//!   `transformer_task: "text-generation"`, `modality_config.message.format`), then a `LogitScore`
//!   module whose `config.json` (e.g. `1_LogitScore/config.json`) holds `true_token_id` and
//!   `false_token_id` (null: the score is `logit(true)` alone);
//! - `config_sentence_transformers.json`: the default `activation_fn` (sigmoid when absent).
//!
//! A plain transformers directory without `modules.json` gets what sentence-transformers gives it:
//! the `yes` and `no` tokens as true and false tokens, or an error when the vocabulary lacks them.
//! Pairs become prompts as [`super::chat_template`] documents; the model runs as [`super::qwen`]
//! documents. The default `max_length` is the tokenizer's `model_max_length` capped at
//! `max_position_embeddings`, as sentence-transformers' `Transformer` module caps it.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde_json::Value;
use tokenizers::Tokenizer;

use super::chat_template::{read_template, special_tokens, MessageFormat, PairPrompter};
use super::qwen::{logit_scores, DecoderConfig, QwenDecoder, QwenVariant};
use crate::error::{Error, Result};
use crate::hub::{self, RepoKind};
use crate::model::{looks_like_hub_id, ModelFiles, PairScorer, ScoreActivation};
use crate::tokenize::length_sorted_order;

/// True when `config.json` at `config_path` names a `*ForCausalLM` architecture: the model is a
/// [`CausalLmReranker`], not a sequence-classification cross-encoder.
pub fn is_causal_lm_reranker(config_path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(config_path) else {
        return false;
    };
    let Ok(value) = serde_json::from_str::<Value>(&text) else {
        return false;
    };
    value
        .get("architectures")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .any(|name| name.ends_with("ForCausalLM"))
        })
}

/// The token ids the score reads (sentence-transformers' `LogitScore`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogitScoreConfig {
    /// The relevant token (`yes`).
    pub true_token_id: u32,
    /// The irrelevant token (`no`), if the score is a difference.
    pub false_token_id: Option<u32>,
}

/// A file of the model's directory, fetched from the hub for hub models; `None` when absent.
fn side_file(files: &ModelFiles, name: &str) -> Option<PathBuf> {
    let local = files.dir.join(name);
    if local.is_file() {
        return Some(local);
    }
    if looks_like_hub_id(&files.name) && !Path::new(&files.name).exists() {
        return hub::resolve_file(&files.name, RepoKind::Model, name).ok();
    }
    None
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::input(path, Some(e.line()), format!("invalid JSON: {e}")))
}

fn token_id(value: &Value, key: &str, path: &Path) -> Result<Option<u32>> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .map(Some)
            .ok_or_else(|| {
                Error::input(path, None, format!("`{key}` must be a token id, found {v}"))
            }),
    }
}

/// Read the `LogitScore` module of `modules.json`, or fall back to the `yes`/`no` tokens when the
/// directory has no `modules.json` (sentence-transformers' default for a bare causal LM).
fn logit_score_config(files: &ModelFiles, tokenizer: &Tokenizer) -> Result<LogitScoreConfig> {
    let Some(modules_path) = side_file(files, "modules.json") else {
        let yes = tokenizer.token_to_id("yes");
        let no = tokenizer.token_to_id("no");
        return match (yes, no) {
            (Some(true_token_id), Some(no)) => Ok(LogitScoreConfig {
                true_token_id,
                false_token_id: Some(no),
            }),
            _ => Err(Error::model(
                &files.name,
                "a causal LM without a LogitScore module (no modules.json) and without `yes` and `no` tokens in its vocabulary: nothing says which logits make the score",
            )
            .with_hint("save it as a sentence-transformers CrossEncoder with a LogitScore module (1_LogitScore/config.json with true_token_id and false_token_id)")),
        };
    };
    let modules = read_json(&modules_path)?;
    let entry = modules.as_array().and_then(|list| {
        list.iter().find(|m| {
            m.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("LogitScore"))
        })
    });
    let Some(entry) = entry else {
        return Err(Error::input(
            &modules_path,
            None,
            "a causal LM's modules.json has no LogitScore module: nothing says which logits make the score",
        )
        .with_hint("add a LogitScore module (sentence_transformers.cross_encoder.modules.LogitScore) with true_token_id and false_token_id"));
    };
    let folder = entry.get("path").and_then(Value::as_str).unwrap_or("");
    let config_name = if folder.is_empty() {
        "config.json".to_string()
    } else {
        format!("{folder}/config.json")
    };
    let Some(config_path) = side_file(files, &config_name) else {
        return Err(Error::model(
            &files.name,
            format!("the LogitScore module has no {config_name}"),
        )
        .with_hint(
            "save the model again with sentence-transformers' CrossEncoder.save_pretrained",
        ));
    };
    let config = read_json(&config_path)?;
    let Some(true_token_id) = token_id(&config, "true_token_id", &config_path)? else {
        return Err(Error::input(
            &config_path,
            None,
            "the LogitScore config has no `true_token_id`",
        )
        .with_hint("set true_token_id (and false_token_id) to the vocabulary ids of the answer tokens, e.g. `yes` and `no`"));
    };
    Ok(LogitScoreConfig {
        true_token_id,
        false_token_id: token_id(&config, "false_token_id", &config_path)?,
    })
}

/// The message format: `sentence_bert_config.json`'s `modality_config.message.format`, else
/// inferred from the template. A saved modality config without `message` would tokenise pairs
/// as plain text pairs, which this teacher does not do.
fn message_format(files: &ModelFiles, template: &str) -> Result<MessageFormat> {
    let Some(path) = side_file(files, "sentence_bert_config.json") else {
        return Ok(MessageFormat::infer(template));
    };
    let config = read_json(&path)?;
    let Some(modalities) = config.get("modality_config") else {
        return Ok(MessageFormat::infer(template));
    };
    let Some(message) = modalities.get("message") else {
        return Err(Error::input(
            &path,
            None,
            "modality_config has no `message` modality: sentence-transformers would not render pairs through the chat template",
        )
        .with_hint("add \"message\": {\"method\": \"forward\", \"method_output_name\": \"logits\"} to modality_config"));
    };
    match message.get("format").and_then(Value::as_str) {
        Some("flat") => Ok(MessageFormat::Flat),
        Some("structured") => Ok(MessageFormat::Structured),
        _ => Ok(MessageFormat::infer(template)),
    }
}

/// The activation sentence-transformers applies by default: `config_sentence_transformers.json`'s
/// `activation_fn`, else config.json's `sentence_transformers.activation_fn`, else sigmoid (a
/// `LogitScore` model has one label).
fn default_activation(files: &ModelFiles, config: &Value) -> Result<ScoreActivation> {
    let from_st = match side_file(files, "config_sentence_transformers.json") {
        Some(path) => read_json(&path)?
            .get("activation_fn")
            .and_then(Value::as_str)
            .and_then(ScoreActivation::parse),
        None => None,
    };
    Ok(from_st
        .or_else(|| {
            config
                .pointer("/sentence_transformers/activation_fn")
                .and_then(Value::as_str)
                .and_then(ScoreActivation::parse)
        })
        .unwrap_or(ScoreActivation::Sigmoid))
}

/// A causal-LM reranker (see the module docs).
pub struct CausalLmReranker {
    files: ModelFiles,
    model_type: String,
    decoder: QwenDecoder,
    prompter: PairPrompter,
    score: LogitScoreConfig,
    pad_id: u32,
    max_length: usize,
    default_activation: ScoreActivation,
    /// What besides the files and `max_length` decides the scores: template, format, tokens.
    scoring: String,
}

impl CausalLmReranker {
    /// Locate `spec` (a directory, relative to `base_dir` first, or a hub id) and load it.
    pub fn locate_and_load(
        spec: &str,
        base_dir: Option<&Path>,
        max_length: Option<usize>,
        device: &Device,
    ) -> Result<Self> {
        let files = ModelFiles::locate(spec, base_dir)?;
        Self::load(files, max_length, device)
    }

    /// Load a causal-LM reranker. `max_length` defaults to the tokenizer's `model_max_length`
    /// capped at `max_position_embeddings`.
    pub fn load(files: ModelFiles, max_length: Option<usize>, device: &Device) -> Result<Self> {
        let files = &files;
        let raw = read_json(&files.config)?;
        let architecture = raw
            .get("architectures")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let model_type = raw.get("model_type").and_then(Value::as_str).unwrap_or("");
        let Some(variant) = QwenVariant::from_model_type(model_type) else {
            return Err(Error::input(
                &files.config,
                None,
                format!(
                    "causal-LM reranker of model_type `{model_type}` ({architecture}) is not supported; supported: {}",
                    QwenVariant::SUPPORTED.join(", ")
                ),
            )
            .with_hint("use a Qwen2 or Qwen3 reranker (Qwen3-Reranker, mxbai-rerank-v2), or export the teacher to ONNX"));
        };
        let config = DecoderConfig::from_value(raw.clone(), variant, &files.config)?;
        let default_activation = default_activation(files, &raw)?;

        let tokenizer = Tokenizer::from_file(&files.tokenizer).map_err(|e| {
            Error::input(
                &files.tokenizer,
                None,
                format!("cannot load the tokenizer: {e}"),
            )
            .with_hint(
                "the model directory needs a tokenizer.json written by Hugging Face tokenizers",
            )
        })?;
        let score = logit_score_config(files, &tokenizer)?;
        for id in std::iter::once(score.true_token_id).chain(score.false_token_id) {
            if id as usize >= config.vocab_size {
                return Err(Error::model(
                    &files.name,
                    format!(
                        "LogitScore token id {id} is outside the vocabulary ({} rows)",
                        config.vocab_size
                    ),
                )
                .with_hint(
                    "true_token_id and false_token_id must be ids of this model's tokenizer",
                ));
            }
        }
        let tokenizer_config = files
            .tokenizer_config
            .clone()
            .or_else(|| side_file(files, "tokenizer_config.json"));
        let template = read_template(
            side_file(files, "chat_template.jinja").as_deref(),
            tokenizer_config.as_deref(),
        )?
        .ok_or_else(|| {
            Error::model(&files.name, "a causal-LM reranker without a chat template (no chat_template.jinja, no `chat_template` in tokenizer_config.json): pairs cannot be turned into prompts")
                .with_hint("add a chat_template.jinja that renders the `query` and `document` messages")
        })?;
        let format = message_format(files, &template.text)?;
        let specials = special_tokens(tokenizer_config.as_deref())?;
        let model_max = crate::tokenize::model_max_length(&files.dir).unwrap_or(usize::MAX);
        let max_length = max_length.unwrap_or(model_max.min(config.max_position_embeddings));
        if max_length > config.max_position_embeddings {
            return Err(Error::invalid(format!(
                "max_length {max_length} is longer than the model's position table ({} positions)",
                config.max_position_embeddings
            ))
            .with_hint("lower max_length"));
        }
        let pad_id = specials
            .get("pad_token")
            .or_else(|| specials.get("eos_token"))
            .and_then(|t| tokenizer.token_to_id(t))
            .unwrap_or(0);
        let prompter = PairPrompter::new(template, format, specials, tokenizer, max_length)?;

        let mut tensors = std::collections::HashMap::new();
        for path in &files.weights {
            let loaded = candle_core::safetensors::load(path, device).map_err(|e| {
                Error::input(path, None, format!("cannot read the weights: {e}"))
                    .with_hint("the file must be a safetensors file written by transformers")
            })?;
            tensors.extend(loaded);
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let mut token_ids = vec![score.true_token_id];
        token_ids.extend(score.false_token_id);
        let decoder = QwenDecoder::new(config, vb, &token_ids, max_length).map_err(|e| {
            Error::model(
                &files.name,
                format!("the weights do not fit config.json: {e}"),
            )
            .with_hint("config.json and model.safetensors must come from the same model")
        })?;
        let scoring = format!(
            "template={:032x}|format={format:?}|tokens={}/{:?}",
            crate::fingerprint::stable_hash(prompter.template_text().as_bytes()),
            score.true_token_id,
            score.false_token_id,
        );
        Ok(Self {
            files: files.clone(),
            model_type: model_type.to_string(),
            decoder,
            prompter,
            score,
            pad_id,
            max_length,
            default_activation,
            scoring,
        })
    }

    /// The token ids the score reads.
    pub fn logit_score(&self) -> LogitScoreConfig {
        self.score
    }

    /// The prompt builder (template, tokenizer, truncation).
    pub fn prompter(&self) -> &PairPrompter {
        &self.prompter
    }

    /// The token ids of one pair's prompt, truncated, the template suffix restored.
    pub fn encode(&self, query: &str, document: &str) -> Result<Vec<u32>> {
        let ids = self.prompter.encode(query, document)?;
        let vocab = self.decoder.config().vocab_size;
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::model(
                &self.files.name,
                format!("the tokenizer produced id {bad}, outside the model's vocabulary ({vocab} rows)"),
            )
            .with_hint("tokenizer.json and config.json must come from the same model"));
        }
        Ok(ids)
    }

    /// Raw scores (before the activation) for `pairs`, in input order, in length-sorted,
    /// left-padded batches of `batch_size` (at least 1). `on_batch` is told how many pairs each
    /// finished batch held.
    pub fn predict_scores(
        &self,
        pairs: &[(&str, &str)],
        batch_size: usize,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Vec<f32>> {
        let encoded: Vec<Vec<u32>> = pairs
            .iter()
            .map(|(q, d)| self.encode(q, d))
            .collect::<Result<_>>()?;
        let lengths: Vec<usize> = encoded.iter().map(Vec::len).collect();
        let order = length_sorted_order(&lengths);
        let mut out = vec![0f32; pairs.len()];
        for chunk in order.chunks(batch_size.max(1)) {
            let seq_len = chunk.iter().map(|&i| lengths[i]).max().unwrap_or(0);
            if seq_len == 0 {
                return Err(Error::invalid("the chat template rendered an empty prompt"));
            }
            let mut ids = Vec::with_capacity(chunk.len() * seq_len);
            let mut mask = Vec::with_capacity(chunk.len() * seq_len);
            for &i in chunk {
                let pad = seq_len - lengths[i];
                ids.extend(std::iter::repeat_n(self.pad_id, pad));
                ids.extend_from_slice(&encoded[i]);
                mask.extend(std::iter::repeat_n(0u8, pad));
                mask.extend(std::iter::repeat_n(1u8, lengths[i]));
            }
            let logits = self
                .decoder
                .last_token_scores(&ids, &mask, chunk.len(), seq_len)?;
            for (&i, score) in chunk.iter().zip(logit_scores(&logits)?) {
                out[i] = score;
            }
            on_batch(chunk.len());
        }
        Ok(out)
    }
}

impl PairScorer for CausalLmReranker {
    fn files(&self) -> &ModelFiles {
        &self.files
    }

    fn model_type(&self) -> &str {
        &self.model_type
    }

    fn num_labels(&self) -> usize {
        1
    }

    fn max_length(&self) -> usize {
        self.max_length
    }

    fn default_activation(&self) -> ScoreActivation {
        self.default_activation
    }

    fn scoring_fingerprint(&self) -> String {
        self.scoring.clone()
    }

    fn predict_logits(
        &self,
        pairs: &[(&str, &str)],
        batch_size: usize,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .predict_scores(pairs, batch_size, on_batch)?
            .into_iter()
            .map(|score| vec![score])
            .collect())
    }
}
