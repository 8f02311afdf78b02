//! ModernBERT cross-encoders (`ModernBertForSequenceClassification`), scored with
//! candle-transformers.
//!
//! From candle-transformers (`models::modernbert::ModernBert`): the backbone — token
//! embeddings + LayerNorm, pre-LN layers with fused QKV, rotary embeddings, GeGLU MLP, the
//! final norm; global attention on every `global_attn_every_n_layers`-th layer (from layer 0)
//! and a sliding window of `local_attention / 2` tokens either side elsewhere, with each kind's
//! own rope theta; padded keys masked.
//!
//! Added here, because candle-transformers' `ModernBertForSequenceClassification` cannot give
//! transformers' logits: its classifier ends in a softmax (every one-label score would be 1.0),
//! its `Config` reads `layer_norm_eps` where transformers writes `norm_eps`, and it knows neither
//! transformers 5's `layer_types` / `rope_parameters` nor `classifier_bias`. So this file reads
//! config.json itself (both layouts) into candle-transformers' `Config`, and owns the head as
//! transformers has it: pooling (`classifier_pooling` "cls": the first token; "mean": the mean
//! over real tokens), `head.dense` (bias when `classifier_bias`), the `classifier_activation`,
//! `head.norm` (LayerNorm without bias), then `classifier` (with bias), raw logits.

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{layer_norm_no_bias, linear, linear_b, LayerNorm, Linear, Module};
use candle_transformers::models::modernbert::{self, ModernBert};
use serde_json::Value;

use super::inference::{
    check_options, default_activation, get_bool, get_f64, get_str, get_usize, num_labels,
    predict_in_batches, read_config, require_usize, resolve_max_length, var_builder, weights_error,
};
use crate::error::{Error, Result};
use crate::model::{LoadOptions, ModelFiles, PairScorer, ScoreActivation};
use crate::tokenize::PairTokenizer;

/// How the head pools the last hidden states (`classifier_pooling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModernBertPooling {
    /// The first token (`[CLS]`).
    Cls,
    /// The mean over real (unpadded) tokens.
    Mean,
}

/// The classification head's activation (`classifier_activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadActivation {
    GeluErf,
    GeluTanh,
    Relu,
    Silu,
}

impl HeadActivation {
    fn apply(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            HeadActivation::GeluErf => xs.gelu_erf(),
            HeadActivation::GeluTanh => xs.gelu(),
            HeadActivation::Relu => xs.relu(),
            HeadActivation::Silu => xs.silu(),
        }
    }
}

/// A ModernBERT config.json: the backbone as candle-transformers takes it, plus the head.
#[derive(Debug, Clone)]
pub struct ModernBertConfig {
    /// The backbone's settings, as candle-transformers' `ModernBert` takes them.
    pub backbone: modernbert::Config,
    /// `classifier_pooling`.
    pub pooling: ModernBertPooling,
    /// `classifier_bias`: whether `head.dense` has a bias.
    pub classifier_bias: bool,
    classifier_activation: HeadActivation,
    /// Outputs of the head.
    pub num_labels: usize,
}

/// Defaults of transformers' `ModernBertConfig` for keys a config.json may leave out.
const DEFAULT_GLOBAL_ROPE_THETA: f64 = 160_000.0;
const DEFAULT_LOCAL_ROPE_THETA: f64 = 10_000.0;
const DEFAULT_GLOBAL_EVERY: usize = 3;

impl ModernBertConfig {
    /// Read a `modernbert` config.json, in transformers 5's layout (`layer_types`,
    /// `rope_parameters`) or the older one (`global_attn_every_n_layers`, `global_rope_theta`,
    /// `local_rope_theta`). Settings candle-transformers' backbone cannot run (biases in the
    /// attention, MLP or norms; another activation than GELU; a layer pattern other than "every
    /// n-th layer global") are errors that name the key.
    pub fn from_value(raw: &Value, path: &std::path::Path) -> Result<Self> {
        let unsupported = |message: String| {
            Error::input(path, None, message)
                .with_hint("crossdistill runs ModernBERT checkpoints as transformers configures them by default (answerdotai/ModernBERT-base, gte-reranker-modernbert-base)")
        };
        for key in ["attention_bias", "mlp_bias", "norm_bias"] {
            if get_bool(raw, key, path)? == Some(true) {
                return Err(unsupported(format!(
                    "`{key}` is true; candle-transformers' ModernBERT has no biases there"
                )));
            }
        }
        match get_str(raw, "hidden_activation", path)?.unwrap_or("gelu") {
            "gelu" => {}
            other => {
                return Err(unsupported(format!(
                    "`hidden_activation` is \"{other}\"; candle-transformers' ModernBERT runs \"gelu\" (GeGLU)"
                )))
            }
        }
        let hidden_size = require_usize(raw, "hidden_size", path)?;
        let num_attention_heads = require_usize(raw, "num_attention_heads", path)?;
        if hidden_size % num_attention_heads != 0 {
            return Err(Error::input(
                path,
                None,
                format!("hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}"),
            ));
        }
        let num_hidden_layers = require_usize(raw, "num_hidden_layers", path)?;
        let max_position_embeddings =
            get_usize(raw, "max_position_embeddings", path)?.unwrap_or(8192);
        let local_attention = get_usize(raw, "local_attention", path)?.unwrap_or(128);
        if local_attention > max_position_embeddings {
            return Err(Error::input(
                path,
                None,
                format!(
                    "the sliding window `local_attention` = {local_attention} is larger than the position table \
                     `max_position_embeddings` = {max_position_embeddings}"
                ),
            )
            .with_hint("local_attention is the whole window (local_attention / 2 tokens either side); it must fit the position table"));
        }
        let global_every = global_every(raw, path, num_hidden_layers)?;
        let (global_rope_theta, local_rope_theta) = rope_thetas(raw, path)?;
        let pooling = match get_str(raw, "classifier_pooling", path)?.unwrap_or("cls") {
            "cls" => ModernBertPooling::Cls,
            "mean" => ModernBertPooling::Mean,
            other => {
                return Err(Error::input(
                    path,
                    None,
                    format!("`classifier_pooling` is \"{other}\"; expected \"cls\" or \"mean\""),
                ))
            }
        };
        let classifier_activation = match get_str(raw, "classifier_activation", path)?.unwrap_or("gelu") {
            "gelu" => HeadActivation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => HeadActivation::GeluTanh,
            "relu" => HeadActivation::Relu,
            "silu" | "swish" => HeadActivation::Silu,
            other => {
                return Err(Error::input(
                    path,
                    None,
                    format!("unsupported `classifier_activation` \"{other}\"; expected gelu, gelu_new, gelu_pytorch_tanh, relu or silu"),
                ))
            }
        };
        let pad_token_id = get_usize(raw, "pad_token_id", path)?.unwrap_or(50283);
        let backbone = modernbert::Config {
            vocab_size: require_usize(raw, "vocab_size", path)?,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size: require_usize(raw, "intermediate_size", path)?,
            max_position_embeddings,
            // transformers names it `norm_eps`; candle-transformers' serde name is `layer_norm_eps`.
            layer_norm_eps: get_f64(raw, "norm_eps", path)?
                .or(get_f64(raw, "layer_norm_eps", path)?)
                .unwrap_or(1e-5),
            pad_token_id: u32::try_from(pad_token_id).map_err(|_| {
                Error::input(
                    path,
                    None,
                    format!("`pad_token_id` {pad_token_id} is too large"),
                )
            })?,
            global_attn_every_n_layers: global_every,
            global_rope_theta,
            local_attention,
            local_rope_theta,
            classifier_config: None,
        };
        Ok(Self {
            backbone,
            pooling,
            classifier_bias: get_bool(raw, "classifier_bias", path)?.unwrap_or(false),
            classifier_activation,
            num_labels: num_labels(raw, path)?,
        })
    }
}

/// Every how many layers attention is global (layer 0 always is): from `layer_types` when
/// present, else `global_attn_every_n_layers`.
fn global_every(raw: &Value, path: &std::path::Path, layers: usize) -> Result<usize> {
    let Some(types) = raw.get("layer_types").filter(|v| !v.is_null()) else {
        let every =
            get_usize(raw, "global_attn_every_n_layers", path)?.unwrap_or(DEFAULT_GLOBAL_EVERY);
        if every == 0 {
            return Err(Error::input(
                path,
                None,
                "`global_attn_every_n_layers` is 0; it must be at least 1",
            ));
        }
        return Ok(every);
    };
    let types: Vec<&str> = types
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .filter(|t: &Vec<&str>| t.len() == layers)
        .ok_or_else(|| {
            Error::input(
                path,
                None,
                format!("`layer_types` must list \"full_attention\" or \"sliding_attention\" for each of the {layers} layers, found {types}"),
            )
        })?;
    let global: Vec<bool> = types
        .iter()
        .map(|t| match *t {
            "full_attention" => Ok(true),
            "sliding_attention" => Ok(false),
            other => Err(Error::input(
                path,
                None,
                format!("`layer_types` holds \"{other}\"; expected \"full_attention\" or \"sliding_attention\""),
            )),
        })
        .collect::<Result<_>>()?;
    // candle-transformers makes layer i global exactly when i % n == 0.
    let every = global
        .iter()
        .skip(1)
        .position(|g| *g)
        .map_or(layers.max(1), |i| i + 1);
    if global
        .iter()
        .enumerate()
        .any(|(i, g)| *g != (i % every == 0))
    {
        return Err(Error::input(
            path,
            None,
            format!("`layer_types` {types:?} is not \"every n-th layer global, from layer 0\", the only pattern candle-transformers' ModernBERT runs"),
        ));
    }
    Ok(every)
}

/// (global, local) rope thetas: `rope_parameters.{full,sliding}_attention.rope_theta` when
/// present (rope_type "default" only), else `global_rope_theta` / `local_rope_theta`.
fn rope_thetas(raw: &Value, path: &std::path::Path) -> Result<(f64, f64)> {
    let old_global = get_f64(raw, "global_rope_theta", path)?.unwrap_or(DEFAULT_GLOBAL_ROPE_THETA);
    let old_local = get_f64(raw, "local_rope_theta", path)?.unwrap_or(DEFAULT_LOCAL_ROPE_THETA);
    let Some(parameters) = raw.get("rope_parameters").filter(|v| !v.is_null()) else {
        return Ok((old_global, old_local));
    };
    let theta = |kind: &str, fallback: f64| -> Result<f64> {
        let Some(entry) = parameters.get(kind).filter(|v| !v.is_null()) else {
            return Ok(fallback);
        };
        match entry.get("rope_type").and_then(Value::as_str).unwrap_or("default") {
            "default" => {}
            other => {
                return Err(Error::input(
                    path,
                    None,
                    format!("`rope_parameters.{kind}.rope_type` is \"{other}\"; candle-transformers' ModernBERT runs \"default\" rope only"),
                ))
            }
        }
        Ok(entry
            .get("rope_theta")
            .and_then(Value::as_f64)
            .unwrap_or(fallback))
    };
    Ok((
        theta("full_attention", old_global)?,
        theta("sliding_attention", old_local)?,
    ))
}

/// A `ModernBertForSequenceClassification` checkpoint in inference.
pub struct ModernBertCrossEncoder {
    config: ModernBertConfig,
    backbone: ModernBert,
    dense: Linear,
    norm: LayerNorm,
    classifier: Linear,
    tokenizer: PairTokenizer,
    files: ModelFiles,
    device: Device,
    default_activation: ScoreActivation,
}

impl std::fmt::Debug for ModernBertCrossEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModernBertCrossEncoder")
            .field("model", &self.files.name)
            .field("layers", &self.config.backbone.num_hidden_layers)
            .field("pooling", &self.config.pooling)
            .finish()
    }
}

impl ModernBertCrossEncoder {
    /// Load a located `modernbert` checkpoint.
    pub fn from_files(files: ModelFiles, options: &LoadOptions) -> Result<Self> {
        let raw = read_config(&files.config)?;
        let config = ModernBertConfig::from_value(&raw, &files.config)?;
        check_options(options, &files, config.num_labels, "modernbert")?;
        let vb = var_builder(&files, &options.device)?;
        let hidden = config.backbone.hidden_size;
        let eps = config.backbone.layer_norm_eps;
        let load = || -> candle_core::Result<_> {
            let backbone = ModernBert::load(vb.clone(), &config.backbone)?;
            let dense = linear_b(hidden, hidden, config.classifier_bias, vb.pp("head.dense"))?;
            let norm = layer_norm_no_bias(hidden, eps, vb.pp("head.norm"))?;
            let classifier = linear(hidden, config.num_labels, vb.pp("classifier"))?;
            Ok((backbone, dense, norm, classifier))
        };
        let (backbone, dense, norm, classifier) =
            load().map_err(|e| weights_error(&files, "modernbert", e))?;
        let max_length = resolve_max_length(
            &files,
            options.max_length,
            config.backbone.max_position_embeddings,
        )?;
        let tokenizer =
            PairTokenizer::from_file(&files.tokenizer, max_length, config.backbone.pad_token_id)?;
        let default_activation = default_activation(&raw, &files, config.num_labels);
        Ok(Self {
            config,
            backbone,
            dense,
            norm,
            classifier,
            tokenizer,
            files,
            device: options.device.clone(),
            default_activation,
        })
    }

    /// The configuration read from config.json.
    pub fn config(&self) -> &ModernBertConfig {
        &self.config
    }

    /// Logits `(B, num_labels)` of token ids `(B, L)` with attention mask `(B, L)` (1 on real
    /// tokens).
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let hidden = self.backbone.forward(input_ids, attention_mask)?;
        let pooled = match self.config.pooling {
            ModernBertPooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            ModernBertPooling::Mean => {
                let mask = attention_mask.to_dtype(DType::F32)?;
                let summed = hidden.broadcast_mul(&mask.unsqueeze(D::Minus1)?)?.sum(1)?;
                summed.broadcast_div(&mask.sum_keepdim(1)?)?
            }
        };
        let xs = self.dense.forward(&pooled)?;
        let xs = self.config.classifier_activation.apply(&xs)?;
        let xs = self.norm.forward(&xs)?;
        Ok(self.classifier.forward(&xs)?)
    }
}

impl PairScorer for ModernBertCrossEncoder {
    fn files(&self) -> &ModelFiles {
        &self.files
    }

    fn model_type(&self) -> &str {
        "modernbert"
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
            self.config.backbone.vocab_size,
            pairs,
            batch_size,
            on_batch,
            &|batch| {
                let shape = (batch.batch_size, batch.seq_len);
                let ids = Tensor::from_vec(batch.input_ids.clone(), shape, &self.device)?;
                let mask = Tensor::from_vec(batch.attention_mask.clone(), shape, &self.device)?;
                self.forward(&ids, &mask)
            },
        )
    }
}
