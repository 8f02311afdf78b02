//! [`ModernBertSettings`]: what a `modernbert` config.json says beyond the shared encoder
//! fields — attention pattern, rotary thetas, biases, pooling, dropouts — read from transformers
//! 5's layout (`layer_types`, `rope_parameters`) or the older one most hub checkpoints have
//! (`global_attn_every_n_layers`, `global_rope_theta`, `local_rope_theta`). The one reader of
//! ModernBERT configs: the trainable student and the teacher both use it.

use std::path::Path;

use serde_json::Value;

use super::config_value::{get_bool, get_f64, get_str, get_usize};
use super::hidden_act::HiddenAct;
use crate::error::{Error, Result};

/// How the head pools the last hidden states (`classifier_pooling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModernBertPooling {
    /// The first token (`[CLS]`).
    Cls,
    /// The mean over real (unpadded) tokens.
    Mean,
}

/// The ModernBERT-specific part of a config.json. Defaults are transformers'
/// `ModernBertConfig` defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ModernBertSettings {
    /// Per layer: `true` for global (`full_attention`), `false` for sliding-window attention.
    pub global_layers: Vec<bool>,
    /// Rotary theta of the global layers.
    pub global_rope_theta: f64,
    /// Rotary theta of the sliding-window layers.
    pub local_rope_theta: f64,
    /// `local_attention`: the whole window; a token attends to keys at most
    /// `local_attention / 2` positions away.
    pub local_attention: usize,
    /// `classifier_pooling`.
    pub pooling: ModernBertPooling,
    /// `attention_bias`: `Wqkv` and `Wo` of the attention have biases.
    pub attention_bias: bool,
    /// `mlp_bias`: `Wi` and `Wo` of the MLP have biases.
    pub mlp_bias: bool,
    /// `norm_bias`: every LayerNorm has a bias.
    pub norm_bias: bool,
    /// `classifier_bias`: the head's dense layer has a bias (the final classifier always has).
    pub classifier_bias: bool,
    /// `hidden_activation`: the GeGLU activation.
    pub hidden_activation: HiddenAct,
    /// `classifier_activation`: the head's activation.
    pub classifier_activation: HiddenAct,
    /// `embedding_dropout`: after the embedding norm.
    pub embedding_dropout: f64,
    /// `attention_dropout`: on attention probabilities and after the attention's `Wo`.
    pub attention_dropout: f64,
    /// `mlp_dropout`: between the GeGLU and the MLP's `Wo`.
    pub mlp_dropout: f64,
    /// `classifier_dropout`: after the head, before the classifier.
    pub classifier_dropout: f64,
    /// `initializer_cutoff_factor`: fresh weights are normal samples truncated at this many
    /// standard deviations.
    pub initializer_cutoff_factor: f64,
}

/// Defaults of transformers' `ModernBertConfig` for keys a config.json may leave out.
const DEFAULT_GLOBAL_ROPE_THETA: f64 = 160_000.0;
const DEFAULT_LOCAL_ROPE_THETA: f64 = 10_000.0;
const DEFAULT_GLOBAL_EVERY: usize = 3;
const DEFAULT_LOCAL_ATTENTION: usize = 128;

impl ModernBertSettings {
    /// Read the ModernBERT keys of `raw` (a config.json with `num_hidden_layers` layers and a
    /// position table of `max_position_embeddings`).
    pub fn from_value(
        raw: &Value,
        path: &Path,
        num_hidden_layers: usize,
        max_position_embeddings: usize,
    ) -> Result<Self> {
        let local_attention =
            get_usize(raw, "local_attention", path)?.unwrap_or(DEFAULT_LOCAL_ATTENTION);
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
        let activation = |key: &str| -> Result<HiddenAct> {
            let name = get_str(raw, key, path)?.unwrap_or("gelu");
            HiddenAct::from_name(name).ok_or_else(|| {
                Error::input(
                    path,
                    None,
                    format!(
                        "unsupported `{key}` \"{name}\"; expected {}",
                        HiddenAct::NAMES
                    ),
                )
            })
        };
        let flag = |key: &str| -> Result<bool> { Ok(get_bool(raw, key, path)?.unwrap_or(false)) };
        let dropout = |key: &str| -> Result<f64> {
            let p = get_f64(raw, key, path)?.unwrap_or(0.0);
            if !(0.0..1.0).contains(&p) {
                return Err(Error::input(
                    path,
                    None,
                    format!("`{key}` must be a probability in [0, 1), found {p}"),
                ));
            }
            Ok(p)
        };
        Ok(Self {
            global_layers: global_layers(raw, path, num_hidden_layers)?,
            global_rope_theta,
            local_rope_theta,
            local_attention,
            pooling,
            attention_bias: flag("attention_bias")?,
            mlp_bias: flag("mlp_bias")?,
            norm_bias: flag("norm_bias")?,
            classifier_bias: flag("classifier_bias")?,
            hidden_activation: activation("hidden_activation")?,
            classifier_activation: activation("classifier_activation")?,
            embedding_dropout: dropout("embedding_dropout")?,
            attention_dropout: dropout("attention_dropout")?,
            mlp_dropout: dropout("mlp_dropout")?,
            classifier_dropout: dropout("classifier_dropout")?,
            initializer_cutoff_factor: get_f64(raw, "initializer_cutoff_factor", path)?
                .filter(|f| *f > 0.0)
                .unwrap_or(2.0),
        })
    }

    /// Keys attended either side of a query in sliding-window layers
    /// (transformers' `config.sliding_window`).
    pub fn half_window(&self) -> usize {
        self.local_attention / 2
    }

    /// `every` when layer `i` is global exactly when `i % every == 0` (the pattern
    /// `global_attn_every_n_layers` describes), else `None`.
    pub fn global_every(&self) -> Option<usize> {
        let layers = self.global_layers.len();
        let every = self
            .global_layers
            .iter()
            .skip(1)
            .position(|g| *g)
            .map_or(layers.max(1), |i| i + 1);
        self.global_layers
            .iter()
            .enumerate()
            .all(|(i, g)| *g == (i % every == 0))
            .then_some(every)
    }

    /// transformers 5's `layer_types` for these layers.
    pub fn layer_types(&self) -> Vec<&'static str> {
        self.global_layers
            .iter()
            .map(|&g| {
                if g {
                    "full_attention"
                } else {
                    "sliding_attention"
                }
            })
            .collect()
    }

    /// Write the attention pattern and thetas into a config.json object in both layouts
    /// (transformers 5 reads `layer_types` and `rope_parameters`; older versions
    /// `global_attn_every_n_layers` and the `*_rope_theta` keys).
    pub fn write_into(&self, object: &mut serde_json::Map<String, Value>) {
        object.insert("layer_types".into(), Value::from(self.layer_types()));
        // A pattern that is not "every n-th layer from 0" (a layer-pruned student) has no
        // older spelling: the key is dropped rather than left saying something else.
        match self.global_every() {
            Some(every) => {
                object.insert("global_attn_every_n_layers".into(), Value::from(every));
            }
            None => {
                object.remove("global_attn_every_n_layers");
            }
        }
        let rope = |theta: f64| serde_json::json!({"rope_theta": theta, "rope_type": "default"});
        object.insert(
            "rope_parameters".into(),
            serde_json::json!({
                "full_attention": rope(self.global_rope_theta),
                "sliding_attention": rope(self.local_rope_theta),
            }),
        );
        object.insert(
            "global_rope_theta".into(),
            Value::from(self.global_rope_theta),
        );
        object.insert(
            "local_rope_theta".into(),
            Value::from(self.local_rope_theta),
        );
    }
}

/// Per layer, whether attention is global: from `layer_types` when present, else every
/// `global_attn_every_n_layers`-th layer from layer 0.
fn global_layers(raw: &Value, path: &Path, layers: usize) -> Result<Vec<bool>> {
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
        return Ok((0..layers).map(|i| i % every == 0).collect());
    };
    let names: Vec<&str> = types
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
    names
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
        .collect()
}

/// (global, local) rope thetas: `rope_parameters.{full,sliding}_attention.rope_theta` when
/// present (rope_type "default" only), else `global_rope_theta` / `local_rope_theta`.
fn rope_thetas(raw: &Value, path: &Path) -> Result<(f64, f64)> {
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
                    format!("`rope_parameters.{kind}.rope_type` is \"{other}\"; crossdistill runs ModernBERT with \"default\" rope only"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: Value) -> Result<ModernBertSettings> {
        ModernBertSettings::from_value(&raw, Path::new("config.json"), 4, 256)
    }

    #[test]
    fn both_layouts_give_the_same_pattern_and_thetas() {
        let new = read(serde_json::json!({
            "layer_types": ["full_attention", "sliding_attention", "full_attention", "sliding_attention"],
            "rope_parameters": {
                "full_attention": {"rope_theta": 1000.0, "rope_type": "default"},
                "sliding_attention": {"rope_theta": 10.0, "rope_type": "default"}
            }
        }))
        .unwrap();
        let old = read(serde_json::json!({
            "global_attn_every_n_layers": 2, "global_rope_theta": 1000.0, "local_rope_theta": 10.0
        }))
        .unwrap();
        assert_eq!(new, old);
        assert_eq!(new.global_layers, [true, false, true, false]);
        assert_eq!(new.global_every(), Some(2));
        // Defaults: every third layer global, the window of transformers' config.
        let defaults = read(serde_json::json!({})).unwrap();
        assert_eq!(defaults.global_layers, [true, false, false, true]);
        assert_eq!(defaults.half_window(), 64);
    }

    #[test]
    fn an_irregular_pattern_has_no_every_n_and_round_trips() {
        let settings = read(serde_json::json!({
            "layer_types": ["sliding_attention", "full_attention", "full_attention", "sliding_attention"]
        }))
        .unwrap();
        assert_eq!(settings.global_every(), None);
        let mut object = serde_json::Map::new();
        settings.write_into(&mut object);
        assert!(!object.contains_key("global_attn_every_n_layers"));
        assert_eq!(read(Value::Object(object)).unwrap(), settings);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                serde_json::json!({"layer_types": ["full_attention"]}),
                "`layer_types` must list",
            ),
            (
                serde_json::json!({"layer_types": ["full_attention", "x", "full_attention", "full_attention"]}),
                "holds \"x\"",
            ),
            (serde_json::json!({"global_attn_every_n_layers": 0}), "is 0"),
            (
                serde_json::json!({"classifier_pooling": "max"}),
                "`classifier_pooling` is \"max\"",
            ),
            (
                serde_json::json!({"hidden_activation": "mish"}),
                "unsupported `hidden_activation`",
            ),
            (
                serde_json::json!({"local_attention": 512}),
                "larger than the position table",
            ),
            (
                serde_json::json!({"rope_parameters": {"full_attention": {"rope_type": "yarn"}}}),
                "rope_type` is \"yarn\"",
            ),
            (
                serde_json::json!({"mlp_dropout": 1.5}),
                "`mlp_dropout` must be a probability",
            ),
            (
                serde_json::json!({"norm_bias": "yes"}),
                "`norm_bias` must be true or false",
            ),
        ];
        for (raw, expected) in cases {
            let error = read(raw).unwrap_err().to_string();
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }
}
