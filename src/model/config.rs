//! The parts of a Hugging Face `config.json` that define an encoder and its ranking head.

use std::path::Path;

use serde_json::Value;

use super::config_value::{get_f64, get_usize, num_labels, require, saved_activation_fn};
use super::hidden_act::HiddenAct;
use super::modernbert_config::ModernBertSettings;
use crate::error::{Error, Result};

/// Encoder families we can build and train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// BERT, MiniLM, and BERT with an XLM-R SentencePiece tokenizer (multilingual-e5).
    /// Position ids from 0; head = pooler (dense + tanh) + classifier.
    Bert,
    /// XLM-RoBERTa / RoBERTa: position ids from `pad_token_id + 1`; head = dense + tanh +
    /// out_proj on the first token; no pooler.
    XlmRoberta,
    /// ELECTRA (the discriminator): BERT's encoder with embeddings of width `embedding_size`
    /// (LayerNorm'd at that width) and an `embeddings_project` Linear up to `hidden_size` when
    /// the two differ; head = `ElectraClassificationHead` (dense + GELU + out_proj on the first
    /// token); no pooler.
    Electra,
    /// ModernBERT: token embeddings + LayerNorm, pre-norm layers with rotary position
    /// embeddings, alternating sliding-window and global attention, GeGLU MLPs, a final norm;
    /// head = pooling (`cls` or `mean`) + dense + activation + norm, then `classifier`. The
    /// settings beyond the shared fields are [`EncoderConfig::modernbert`].
    ModernBert,
}

impl Architecture {
    /// The weight-name prefix transformers uses for the encoder (`bert`, `roberta`).
    pub fn prefix(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::XlmRoberta => "roberta",
            Architecture::Electra => "electra",
            Architecture::ModernBert => "model",
        }
    }

    /// `architectures[0]` of a saved sequence-classification checkpoint.
    pub fn classification_class(self, model_type: &str) -> String {
        match (self, model_type) {
            (Architecture::Bert, _) => "BertForSequenceClassification".into(),
            (Architecture::XlmRoberta, "roberta") => "RobertaForSequenceClassification".into(),
            (Architecture::XlmRoberta, _) => "XLMRobertaForSequenceClassification".into(),
            (Architecture::Electra, _) => "ElectraForSequenceClassification".into(),
            (Architecture::ModernBert, _) => "ModernBertForSequenceClassification".into(),
        }
    }
}

/// An encoder configuration read from `config.json`.
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    /// Encoder family.
    pub architecture: Architecture,
    /// `model_type` as written (`bert`, `xlm-roberta`, `roberta`).
    pub model_type: String,
    /// Rows of the word-embedding table.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Width of the embedding tables (ELECTRA's `embedding_size`; `hidden_size` elsewhere).
    /// When it differs from `hidden_size`, an `embeddings_project` Linear maps the normalised
    /// embeddings up to `hidden_size`.
    pub embedding_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    pub hidden_act: HiddenAct,
    /// Dropout on hidden states.
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    pub attention_probs_dropout_prob: f64,
    /// Dropout in the classification head (`classifier_dropout`, else `hidden_dropout_prob`).
    pub classifier_dropout: f64,
    /// Rows of the position-embedding table.
    pub max_position_embeddings: usize,
    /// Rows of the token-type table (1 means no segment information).
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Padding token id.
    pub pad_token_id: u32,
    /// Standard deviation of the initialiser for fresh weights.
    pub initializer_range: f64,
    /// Outputs of the classification head.
    pub num_labels: usize,
    /// `sentence_transformers.activation_fn` (torch full name), when the config names one.
    pub activation_fn: Option<String>,
    /// ModernBERT's attention pattern, rotary thetas, biases, pooling and dropouts (`Some`
    /// exactly for [`Architecture::ModernBert`]).
    pub modernbert: Option<ModernBertSettings>,
    /// The whole config.json, kept so that saving preserves every key we do not interpret.
    pub raw: Value,
}

/// `layer_norm_eps` (default 1e-12): LayerNorm divides by `sqrt(variance + eps)`, so a
/// negative or zero eps gives NaN or infinity on any constant input — reported here, against the
/// config field, rather than later as a diverging loss.
fn positive_eps(value: Option<f64>, path: &Path) -> Result<f64> {
    match value {
        None => Ok(1e-12),
        Some(eps) if eps > 0.0 && eps.is_finite() => Ok(eps),
        Some(eps) => Err(Error::input(
            path,
            None,
            format!("`layer_norm_eps` must be a small positive number, found {eps}"),
        )
        .with_hint("use the value of the model this config came from (BERT: 1e-12, XLM-R: 1e-5)")),
    }
}

impl EncoderConfig {
    /// Parse a config.json file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
        let raw: Value = serde_json::from_str(&text)
            .map_err(|e| Error::input(path, Some(e.line()), format!("invalid JSON: {e}")))?;
        Self::from_value(raw, path)
    }

    /// Interpret a parsed config.json (`path` is used in error messages).
    pub fn from_value(raw: Value, path: &Path) -> Result<Self> {
        let model_type = raw
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let architecture = match model_type.as_str() {
            "bert" => Architecture::Bert,
            "xlm-roberta" | "roberta" => Architecture::XlmRoberta,
            "electra" => Architecture::Electra,
            "modernbert" => Architecture::ModernBert,
            other => {
                let found = if other.is_empty() {
                    "none".to_string()
                } else {
                    format!("`{other}`")
                };
                return Err(Error::input(
                    path,
                    None,
                    format!("unsupported model_type {found}; crossdistill trains bert (incl. MiniLM, multilingual-e5), xlm-roberta, roberta, electra and modernbert encoders"),
                )
                .with_hint("pick a BERT, XLM-RoBERTa, ELECTRA or ModernBERT checkpoint"));
            }
        };
        let modern = architecture == Architecture::ModernBert;
        // ModernBERT names the MLP activation `hidden_activation`.
        let act_key = if modern {
            "hidden_activation"
        } else {
            "hidden_act"
        };
        let act_name = raw.get(act_key).and_then(Value::as_str).unwrap_or("gelu");
        let hidden_act = HiddenAct::from_name(act_name).ok_or_else(|| {
            Error::input(
                path,
                None,
                format!(
                    "unsupported {act_key} `{act_name}`; expected {}",
                    HiddenAct::NAMES
                ),
            )
        })?;
        let hidden_size = require(get_usize(&raw, "hidden_size", path)?, "hidden_size", path)?;
        let num_attention_heads = require(
            get_usize(&raw, "num_attention_heads", path)?,
            "num_attention_heads",
            path,
        )?;
        if hidden_size % num_attention_heads != 0 {
            return Err(Error::input(
                path,
                None,
                format!("hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}"),
            ));
        }
        let hidden_dropout_prob = get_f64(&raw, "hidden_dropout_prob", path)?.unwrap_or(0.1);
        let num_labels = num_labels(&raw, path)?;
        let activation_fn = saved_activation_fn(&raw).map(str::to_string);
        let default_pad = match architecture {
            Architecture::Bert | Architecture::Electra => 0,
            Architecture::XlmRoberta => 1,
            // transformers' ModernBertConfig default (answerdotai/ModernBERT-base's [PAD]).
            Architecture::ModernBert => 50283,
        };
        let embedding_size = match architecture {
            Architecture::Electra => get_usize(&raw, "embedding_size", path)?
                .map(|n| require(Some(n), "embedding_size", path))
                .transpose()?
                .unwrap_or(hidden_size),
            Architecture::Bert | Architecture::XlmRoberta | Architecture::ModernBert => hidden_size,
        };
        let num_hidden_layers = require(
            get_usize(&raw, "num_hidden_layers", path)?,
            "num_hidden_layers",
            path,
        )?;
        // ModernBERT's config defaults the position table to 8192 and has no token types.
        let max_position_embeddings = match get_usize(&raw, "max_position_embeddings", path)? {
            None if modern => 8192,
            found => require(found, "max_position_embeddings", path)?,
        };
        let modernbert = if modern {
            Some(ModernBertSettings::from_value(
                &raw,
                path,
                num_hidden_layers,
                max_position_embeddings,
            )?)
        } else {
            None
        };
        let (hidden_dropout_prob, attention_probs_dropout_prob, classifier_dropout) =
            match &modernbert {
                Some(m) => (m.mlp_dropout, m.attention_dropout, m.classifier_dropout),
                None => (
                    hidden_dropout_prob,
                    get_f64(&raw, "attention_probs_dropout_prob", path)?.unwrap_or(0.1),
                    get_f64(&raw, "classifier_dropout", path)?.unwrap_or(hidden_dropout_prob),
                ),
            };
        let layer_norm_eps = if modern {
            let eps = get_f64(&raw, "norm_eps", path)?.or(get_f64(&raw, "layer_norm_eps", path)?);
            positive_eps(Some(eps.unwrap_or(1e-5)), path)?
        } else {
            positive_eps(get_f64(&raw, "layer_norm_eps", path)?, path)?
        };
        Ok(Self {
            architecture,
            model_type,
            vocab_size: require(get_usize(&raw, "vocab_size", path)?, "vocab_size", path)?,
            hidden_size,
            embedding_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size: require(
                get_usize(&raw, "intermediate_size", path)?,
                "intermediate_size",
                path,
            )?,
            hidden_act,
            hidden_dropout_prob,
            attention_probs_dropout_prob,
            classifier_dropout,
            max_position_embeddings,
            type_vocab_size: if modern {
                1
            } else {
                get_usize(&raw, "type_vocab_size", path)?
                    .unwrap_or(2)
                    .max(1)
            },
            layer_norm_eps,
            pad_token_id: get_usize(&raw, "pad_token_id", path)?.unwrap_or(default_pad) as u32,
            initializer_range: get_f64(&raw, "initializer_range", path)?.unwrap_or(0.02),
            num_labels,
            activation_fn,
            modernbert,
            raw,
        })
    }

    /// Keep only encoder layers `layers`, in this order (a layer-pruned student); the caller
    /// has checked that each exists.
    pub fn keep_layers(&mut self, layers: &[usize]) {
        self.num_hidden_layers = layers.len();
        if let Some(settings) = &mut self.modernbert {
            settings.global_layers = layers
                .iter()
                .map(|&l| settings.global_layers.get(l).copied().unwrap_or(true))
                .collect();
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The longest input the position table allows (XLM-R reserves `pad_token_id + 1` rows).
    pub fn max_input_length(&self) -> usize {
        match self.architecture {
            Architecture::Bert | Architecture::Electra | Architecture::ModernBert => {
                self.max_position_embeddings
            }
            Architecture::XlmRoberta => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id as usize + 1),
        }
    }

    /// The config.json of a saved `*ForSequenceClassification` checkpoint, with
    /// `sentence_transformers.activation_fn` set to `activation_fn` (a torch full name).
    pub fn to_classification_json(&self, activation_fn: &str) -> Value {
        let mut raw = self.raw.clone();
        if !raw.is_object() {
            raw = Value::Object(Default::default());
        }
        let object = raw
            .as_object_mut()
            .expect("replaced by an object above when it was not one");
        object.insert(
            "architectures".into(),
            Value::from(vec![self
                .architecture
                .classification_class(&self.model_type)]),
        );
        let id2label: serde_json::Map<String, Value> = (0..self.num_labels)
            .map(|i| (i.to_string(), Value::from(format!("LABEL_{i}"))))
            .collect();
        let label2id: serde_json::Map<String, Value> = (0..self.num_labels)
            .map(|i| (format!("LABEL_{i}"), Value::from(i)))
            .collect();
        object.insert("id2label".into(), Value::Object(id2label));
        object.insert("label2id".into(), Value::Object(label2id));
        object.remove("num_labels");
        object.remove("_name_or_path");
        object.remove("_note");
        object.insert("vocab_size".into(), Value::from(self.vocab_size));
        object.insert(
            "num_hidden_layers".into(),
            Value::from(self.num_hidden_layers),
        );
        object.insert("pad_token_id".into(), Value::from(self.pad_token_id));
        if let Some(settings) = &self.modernbert {
            settings.write_into(object);
        }
        object.insert("dtype".into(), Value::from("float32"));
        object.remove("torch_dtype");
        let mut st = serde_json::Map::new();
        st.insert("activation_fn".into(), Value::from(activation_fn));
        object.insert("sentence_transformers".into(), Value::Object(st));
        raw
    }
}
