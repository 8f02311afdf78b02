//! DeBERTa-v2 / DeBERTa-v3 cross-encoders (`DebertaV2ForSequenceClassification`): on the CPU
//! crossdistill's own inference encoder ([`crate::model::DebertaV2Encoder`]: fused kernels, the
//! disentangled attention in one kernel, the relative-position projections computed once at
//! load), on other devices candle-transformers' model.
//!
//! Why two: candle-transformers' model, run on the CPU, scored 8.5 pairs/s where
//! sentence-transformers scores 14.4 (DeBERTa-v3-base shape, 4 layers, batch 32, 128 tokens, two
//! cores): its c2p and p2c terms multiply every query with all `2 · position_buckets` position
//! rows of the batch-repeated projections and gather, its attention runs the `B × heads` products
//! one after another, and its linears, GELU and LayerNorm are separate passes. On CUDA or Metal
//! those composed ops are what candle has, so there it stays.
//!
//! From candle-transformers (`models::debertav2`): the config type, and on non-CPU devices the
//! whole model — embeddings (with `embed_proj` when `embedding_size` differs, without token types when
//! `type_vocab_size` is 0, without absolute positions when `position_biased_input` is false), the
//! disentangled attention (relative positions in log buckets, `pos_att_type` c2p / p2c, shared
//! or separate position projections, LayerNorm'd relative embeddings), the context pooler (first
//! token, dense, `pooler_hidden_act`) and the classifier.
//!
//! Added here: config.json is read once into candle-transformers' `Config`, with transformers'
//! defaults filled in for keys a checkpoint may leave out (candle-transformers requires
//! `pooler_hidden_size`, `pooler_dropout`, `pooler_hidden_act` and `id2label`), and settings it
//! cannot run (a convolution layer, `conv_kernel_size` > 0, where it would panic; unknown
//! `pos_att_type` entries) become errors; token type ids are passed only when the model has a
//! type vocabulary; the attention mask is the batch's padding mask.

use candle_core::{Device, Tensor};
use candle_transformers::models::debertav2::{self, DebertaV2SeqClassificationModel};
use serde_json::Value;

use super::inference::{
    check_options, default_activation, predict_in_batches, read_config, require_usize,
    resolve_max_length, var_builder, weights_error,
};
use crate::error::{Error, Result};
use crate::model::config_value::{get_usize, num_labels};
use crate::model::{DebertaV2Encoder, LoadOptions, ModelFiles, PairScorer, ScoreActivation};
use crate::tokenize::PairTokenizer;

/// transformers' `DebertaV2Config` defaults for keys a config.json may leave out.
/// A config key and its default, computed from the rest of the config.
type KeyDefault = (&'static str, fn(&Value) -> Value);

const DEFAULTS: &[KeyDefault] = &[
    ("hidden_act", |_| Value::from("gelu")),
    ("hidden_dropout_prob", |_| Value::from(0.1)),
    ("attention_probs_dropout_prob", |_| Value::from(0.1)),
    ("max_position_embeddings", |_| Value::from(512)),
    ("type_vocab_size", |_| Value::from(0)),
    ("initializer_range", |_| Value::from(0.02)),
    ("layer_norm_eps", |_| Value::from(1e-7)),
    ("relative_attention", |_| Value::from(false)),
    ("max_relative_positions", |_| Value::from(-1)),
    ("position_biased_input", |_| Value::from(true)),
    ("pos_att_type", |_| Value::Array(Vec::new())),
    ("pooler_hidden_size", |raw| {
        raw.get("hidden_size").cloned().unwrap_or(Value::Null)
    }),
    ("pooler_dropout", |_| Value::from(0.0)),
    ("pooler_hidden_act", |_| Value::from("gelu")),
];

/// A DeBERTa-v2 config.json as candle-transformers takes it.
#[derive(Debug, Clone)]
pub struct DebertaV2Config {
    /// candle-transformers' config.
    pub inner: debertav2::Config,
    /// Outputs of the head.
    pub num_labels: usize,
}

impl DebertaV2Config {
    /// Read a `deberta-v2` config.json (DeBERTa-v2 and v3 share it).
    pub fn from_value(raw: &Value, path: &std::path::Path) -> Result<Self> {
        require_usize(raw, "hidden_size", path)?;
        require_usize(raw, "num_attention_heads", path)?;
        require_usize(raw, "num_hidden_layers", path)?;
        require_usize(raw, "intermediate_size", path)?;
        require_usize(raw, "vocab_size", path)?;
        if let Some(kernel) = get_usize(raw, "conv_kernel_size", path)?.filter(|k| *k > 0) {
            return Err(Error::input(
                path,
                None,
                format!("`conv_kernel_size` is {kernel}; crossdistill's DeBERTa-v2 and candle-transformers' have no convolution layer (the v2 xlarge/xxlarge models use one)"),
            )
            .with_hint("DeBERTa-v3 checkpoints (mxbai-rerank-*-v1, deberta-v3-*) have none"));
        }
        let labels = num_labels(raw, path)?;
        let mut patched = raw.clone();
        let object = patched
            .as_object_mut()
            .ok_or_else(|| Error::input(path, None, "config.json must hold a JSON object"))?;
        for (key, default) in DEFAULTS {
            if object.get(*key).is_none_or(Value::is_null) {
                object.insert((*key).to_string(), default(raw));
            }
        }
        // candle-transformers sizes its classifier from id2label; transformers may write only
        // num_labels.
        if object
            .get("id2label")
            .and_then(Value::as_object)
            .is_none_or(|m| m.len() != labels)
        {
            let id2label: serde_json::Map<String, Value> = (0..labels)
                .map(|i| (i.to_string(), Value::from(format!("LABEL_{i}"))))
                .collect();
            object.insert("id2label".into(), Value::Object(id2label));
        }
        object.remove("label2id");
        let inner: debertav2::Config = serde_json::from_value(patched).map_err(|e| {
            Error::input(
                path,
                None,
                format!("not a DeBERTa-v2 config as candle-transformers reads it: {e}"),
            )
            .with_hint("hidden_act and pooler_hidden_act must be gelu, gelu_approximate or relu")
        })?;
        if let Some(bad) = inner
            .pos_att_type
            .iter()
            .find(|t| !matches!(t.as_str(), "c2p" | "p2c"))
        {
            return Err(Error::input(
                path,
                None,
                format!("`pos_att_type` holds \"{bad}\"; expected \"c2p\" and/or \"p2c\""),
            ));
        }
        match inner.norm_rel_ebd.as_deref().map(str::trim) {
            None | Some("none") | Some("layer_norm") => {}
            Some(other) => {
                return Err(Error::input(
                    path,
                    None,
                    format!("`norm_rel_ebd` is \"{other}\"; expected \"none\" or \"layer_norm\""),
                ))
            }
        }
        Ok(Self {
            inner,
            num_labels: labels,
        })
    }

    /// The longest input: DeBERTa-v3 has no absolute positions, but transformers still bounds
    /// inputs by `max_position_embeddings`.
    pub fn max_input_length(&self) -> usize {
        self.inner.max_position_embeddings
    }
}

/// The model that runs a DeBERTa-v2 checkpoint.
enum Backend {
    /// crossdistill's CPU encoder.
    Cpu(Box<DebertaV2Encoder>),
    /// candle-transformers' model (other devices).
    Candle(Box<DebertaV2SeqClassificationModel>),
}

/// A `DebertaV2ForSequenceClassification` checkpoint in inference.
pub struct DebertaV2CrossEncoder {
    config: DebertaV2Config,
    model: Backend,
    tokenizer: PairTokenizer,
    files: ModelFiles,
    device: Device,
    default_activation: ScoreActivation,
}

impl std::fmt::Debug for DebertaV2CrossEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebertaV2CrossEncoder")
            .field("model", &self.files.name)
            .field("layers", &self.config.inner.num_hidden_layers)
            .finish()
    }
}

impl DebertaV2CrossEncoder {
    /// Load a located `deberta-v2` checkpoint: crossdistill's encoder on the CPU,
    /// candle-transformers' model on other devices.
    pub fn from_files(files: ModelFiles, options: &LoadOptions) -> Result<Self> {
        Self::load(files, options, !options.device.is_cpu())
    }

    fn load(files: ModelFiles, options: &LoadOptions, candle_transformers: bool) -> Result<Self> {
        let raw = read_config(&files.config)?;
        let config = DebertaV2Config::from_value(&raw, &files.config)?;
        check_options(options, &files, config.num_labels, "deberta-v2")?;
        let vb = var_builder(&files, &options.device)?;
        let model = if candle_transformers {
            DebertaV2SeqClassificationModel::load(vb.pp("deberta"), &config.inner, None)
                .map(|model| Backend::Candle(Box::new(model)))
        } else {
            DebertaV2Encoder::load(vb, &config.inner, config.num_labels)
                .map(|encoder| Backend::Cpu(Box::new(encoder)))
        }
        .map_err(|e| weights_error(&files, "deberta-v2", e))?;
        let max_length = resolve_max_length(&files, options.max_length, config.max_input_length())?;
        let pad = config.inner.pad_token_id.unwrap_or(0);
        let pad = u32::try_from(pad).map_err(|_| {
            Error::input(
                &files.config,
                None,
                format!("`pad_token_id` {pad} is too large"),
            )
        })?;
        let tokenizer = PairTokenizer::from_file(&files.tokenizer, max_length, pad)?;
        let default_activation = default_activation(&raw, &files, config.num_labels);
        Ok(Self {
            config,
            model,
            tokenizer,
            files,
            device: options.device.clone(),
            default_activation,
        })
    }

    /// The configuration read from config.json.
    pub fn config(&self) -> &DebertaV2Config {
        &self.config
    }
}

impl PairScorer for DebertaV2CrossEncoder {
    fn files(&self) -> &ModelFiles {
        &self.files
    }

    fn model_type(&self) -> &str {
        "deberta-v2"
    }

    fn num_labels(&self) -> usize {
        self.config.num_labels
    }

    fn max_length(&self) -> usize {
        self.tokenizer.max_length()
    }

    fn default_activation(&self) -> ScoreActivation {
        self.default_activation
    }

    fn predict_logits(
        &self,
        pairs: &[(&str, &str)],
        batch_size: usize,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        predict_in_batches(
            &self.tokenizer,
            &self.files.name,
            self.config.inner.vocab_size,
            pairs,
            batch_size,
            on_batch,
            &|batch| {
                let type_vocab = self.config.inner.type_vocab_size;
                if let Some(bad) = batch
                    .type_ids
                    .iter()
                    .find(|&&t| type_vocab > 0 && t as usize >= type_vocab)
                {
                    return Err(Error::model(
                        &self.files.name,
                        format!("the tokenizer produced token type id {bad}, but type_vocab_size is {type_vocab}"),
                    )
                    .with_hint("use the tokenizer that belongs to these weights"));
                }
                let model = match &self.model {
                    Backend::Cpu(encoder) => {
                        return Ok(encoder.forward(
                            &batch.input_ids,
                            &batch.type_ids,
                            &batch.attention_mask,
                            batch.batch_size,
                            batch.seq_len,
                        )?)
                    }
                    Backend::Candle(model) => model,
                };
                let shape = (batch.batch_size, batch.seq_len);
                let ids = Tensor::from_vec(batch.input_ids.clone(), shape, &self.device)?;
                let mask: Vec<u32> = batch
                    .attention_mask
                    .iter()
                    .map(|&m| u32::from(m > 0.5))
                    .collect();
                let mask = Tensor::from_vec(mask, shape, &self.device)?;
                let type_ids = if self.config.inner.type_vocab_size > 0 {
                    Some(Tensor::from_vec(
                        batch.type_ids.clone(),
                        shape,
                        &self.device,
                    )?)
                } else {
                    None
                };
                Ok(model.forward(&ids, type_ids, Some(mask))?)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// crossdistill's CPU encoder and candle-transformers' model (what other devices run) on the
    /// committed fixture: both within 1e-4 of sentence-transformers' logits
    /// (tests/fixtures/tiny-deberta-v3-ce/expected.jsonl), in padded batches.
    #[test]
    fn the_cpu_encoder_and_candle_transformers_agree_with_sentence_transformers() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tiny-deberta-v3-ce");
        let rows: Vec<Value> = std::fs::read_to_string(dir.join("expected.jsonl"))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let pairs: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r["query"].as_str().unwrap(), r["passage"].as_str().unwrap()))
            .collect();
        let want: Vec<f32> = rows
            .iter()
            .map(|r| r["logit"].as_f64().unwrap() as f32)
            .collect();
        for candle_transformers in [false, true] {
            let files = ModelFiles::from_dir("tiny-deberta-v3-ce", &dir).unwrap();
            let model =
                DebertaV2CrossEncoder::load(files, &LoadOptions::default(), candle_transformers)
                    .unwrap();
            assert_eq!(
                matches!(model.model, Backend::Candle(_)),
                candle_transformers
            );
            let got = model.predict_logits(&pairs, 4, &mut |_| {}).unwrap();
            let diff = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g[0] - w).abs())
                .fold(0f32, f32::max);
            assert!(
                diff <= 1e-4,
                "candle-transformers {candle_transformers}: {diff}"
            );
        }
    }
}
