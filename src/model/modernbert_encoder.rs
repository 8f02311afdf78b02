//! The trainable ModernBERT encoder and its sequence-classification head, as transformers'
//! `ModernBertForSequenceClassification` computes them (eager attention):
//!
//! - embeddings: token table → LayerNorm → dropout (`embedding_dropout`);
//! - each layer (pre-norm): `x + Wo(attention(rotary(Wqkv(attn_norm(x)))))` (no `attn_norm` on
//!   layer 0), then `x + Wo_mlp(act(input) ⊙ gate)` with `input, gate = Wi(mlp_norm(x))`
//!   (GeGLU); global layers attend everywhere with the global rope theta, sliding-window layers
//!   to keys at most `local_attention / 2` positions away with the local theta; padded keys
//!   never; attention dropout on the probabilities and after `Wo`, `mlp_dropout` before the
//!   MLP's `Wo`;
//! - `final_norm`;
//! - head: pooling (`cls`: first token; `mean`: mean over real tokens) → `head.dense` →
//!   `classifier_activation` → `head.norm` → dropout (`classifier_dropout`) → `classifier`.
//!
//! Every op is differentiable: the fused LayerNorm and linear of [`super::ops`], the rotary
//! attention over the packed `Wqkv` output (banded mask included) of
//! [`super::rotary_attention`], GeGLU of [`super::geglu`], and candle ops for the pooling. Biases and norm biases exist where the config says so.

use candle_core::{DType, Tensor, D};

use super::batch_tensors::BatchTensors;
use super::config::EncoderConfig;
use super::embedding::embedding;
use super::geglu::geglu;
use super::mode::Mode;
use super::modernbert_config::{ModernBertPooling, ModernBertSettings};
use super::ops::{layer_norm, linear};
use super::rotary::RotaryTable;
use super::rotary_attention::rotary_attention;
use super::weights::Params;
use crate::error::{Error, Result};

/// A LayerNorm's weight and bias (zeros, not a parameter, without `norm_bias`).
struct Norm {
    weight: Tensor,
    bias: Tensor,
}

/// A linear layer's weight and bias. Without a bias parameter the bias is a constant zero
/// vector, so that the layer runs on the fused linear kernel (whose bias gradient is then
/// discarded) rather than on candle's unfused matmul.
struct Proj {
    weight: Tensor,
    bias: Tensor,
}

impl Proj {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(linear(xs, &self.weight, Some(&self.bias))?)
    }
}

struct Layer {
    /// `None` on layer 0 (transformers uses an identity there).
    attn_norm: Option<Norm>,
    /// `Wqkv`: one product whose `(B, L, 3H)` output [`rotary_attention`] reads as the query,
    /// key and value (and whose gradient it writes as one buffer).
    qkv: Proj,
    wo: Proj,
    mlp_norm: Norm,
    wi: Proj,
    mlp_wo: Proj,
    /// Global attention (else sliding window).
    global: bool,
}

/// ModernBERT's tensors, bound by name (see [`super::encoder::Encoder`] for `record_graph`).
pub(crate) struct ModernBertEncoder {
    tok_embeddings: Tensor,
    emb_norm: Norm,
    layers: Vec<Layer>,
    final_norm: Norm,
    head_dense: Proj,
    head_norm: Norm,
    classifier: Proj,
}

fn settings(config: &EncoderConfig) -> Result<&ModernBertSettings> {
    config.modernbert.as_ref().ok_or_else(|| {
        Error::invalid(format!(
            "a `{}` config reached the ModernBERT encoder without ModernBERT settings",
            config.model_type
        ))
    })
}

impl ModernBertEncoder {
    pub(crate) fn bind(
        config: &EncoderConfig,
        params: &Params,
        record_graph: bool,
        dtype: DType,
    ) -> Result<Self> {
        let settings = settings(config)?;
        let get = |name: &str| -> Result<Tensor> {
            let tensor = params.get(name)?;
            let tensor = if record_graph {
                tensor
            } else {
                tensor.detach()
            };
            Ok(tensor.to_dtype(dtype)?)
        };
        let zeros = Tensor::zeros(
            config.hidden_size,
            dtype,
            params.get("model.final_norm.weight")?.device(),
        )?;
        let norm = |name: &str| -> Result<Norm> {
            Ok(Norm {
                weight: get(&format!("{name}.weight"))?,
                bias: if settings.norm_bias {
                    get(&format!("{name}.bias"))?
                } else {
                    zeros.clone()
                },
            })
        };
        let proj = |name: &str, bias: bool| -> Result<Proj> {
            let weight = get(&format!("{name}.weight"))?;
            let bias = if bias {
                get(&format!("{name}.bias"))?
            } else {
                Tensor::zeros(weight.dim(0)?, dtype, weight.device())?
            };
            Ok(Proj { weight, bias })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for (i, &global) in settings.global_layers.iter().enumerate() {
            let l = format!("model.layers.{i}");
            layers.push(Layer {
                attn_norm: if i == 0 {
                    None
                } else {
                    Some(norm(&format!("{l}.attn_norm"))?)
                },
                qkv: proj(&format!("{l}.attn.Wqkv"), settings.attention_bias)?,
                wo: proj(&format!("{l}.attn.Wo"), settings.attention_bias)?,
                mlp_norm: norm(&format!("{l}.mlp_norm"))?,
                wi: proj(&format!("{l}.mlp.Wi"), settings.mlp_bias)?,
                mlp_wo: proj(&format!("{l}.mlp.Wo"), settings.mlp_bias)?,
                global,
            });
        }
        Ok(Self {
            tok_embeddings: get("model.embeddings.tok_embeddings.weight")?,
            emb_norm: norm("model.embeddings.norm")?,
            layers,
            final_norm: norm("model.final_norm")?,
            head_dense: proj("head.dense", settings.classifier_bias)?,
            head_norm: norm("head.norm")?,
            classifier: proj("classifier", true)?,
        })
    }

    /// The final-normed hidden states `(B, L, H)`; with `collect`, also the output of the
    /// embeddings, of every layer, and of the final norm.
    pub(crate) fn hidden_states(
        &self,
        config: &EncoderConfig,
        batch: &BatchTensors,
        mode: &mut Mode,
        mut collect: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        let settings = settings(config)?;
        let (b_sz, seq_len) = batch.input_ids.dims2()?;
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let norm = |xs: &Tensor, norm: &Norm| -> Result<Tensor> {
            Ok(layer_norm(xs, &norm.weight, &norm.bias, eps)?)
        };
        let embeddings =
            embedding(&self.tok_embeddings, &batch.input_ids)?.reshape((b_sz, seq_len, h))?;
        let mut xs = norm(&embeddings, &self.emb_norm)?;
        xs = mode.dropout(&xs, settings.embedding_dropout)?;
        if let Some(out) = collect.as_deref_mut() {
            out.push(xs.clone());
        }
        let heads = config.num_attention_heads;
        let head_dim = config.head_dim();
        let scale = 1.0 / (head_dim as f64).sqrt();
        let global_table = RotaryTable::new(seq_len, head_dim, settings.global_rope_theta);
        let local_table = RotaryTable::new(seq_len, head_dim, settings.local_rope_theta);
        for layer in &self.layers {
            let normed = match &layer.attn_norm {
                Some(n) => norm(&xs, n)?,
                None => xs.clone(),
            };
            let (table, window) = if layer.global {
                (&global_table, None)
            } else {
                (&local_table, Some(settings.half_window()))
            };
            let probs_dropout =
                mode.mask(b_sz * heads * seq_len * seq_len, settings.attention_dropout);
            let context = rotary_attention(
                &layer.qkv.forward(&normed)?,
                table,
                &batch.attention_mask,
                heads,
                scale,
                window,
                probs_dropout,
            )?;
            let attn = mode.dropout(&layer.wo.forward(&context)?, settings.attention_dropout)?;
            xs = (xs + attn)?;
            let wi = layer.wi.forward(&norm(&xs, &layer.mlp_norm)?)?;
            let glu = geglu(&wi, settings.hidden_activation)?;
            let glu = mode.dropout(&glu, settings.mlp_dropout)?;
            xs = (xs + layer.mlp_wo.forward(&glu)?)?;
            if let Some(out) = collect.as_deref_mut() {
                out.push(xs.clone());
            }
        }
        let xs = norm(&xs, &self.final_norm)?;
        if let Some(out) = collect {
            out.push(xs.clone());
        }
        Ok(xs)
    }

    /// Logits `(B, num_labels)` from the final-normed hidden states.
    pub(crate) fn head(
        &self,
        config: &EncoderConfig,
        hidden: &Tensor,
        batch: &BatchTensors,
        mode: &mut Mode,
    ) -> Result<Tensor> {
        let settings = settings(config)?;
        let pooled = match settings.pooling {
            ModernBertPooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            ModernBertPooling::Mean => {
                // transformers: (hidden · mask).sum(1) / mask.sum(1).
                let mask = batch.attention_mask.to_dtype(hidden.dtype())?;
                let summed = hidden.broadcast_mul(&mask.unsqueeze(D::Minus1)?)?.sum(1)?;
                summed.broadcast_div(&mask.sum_keepdim(1)?)?
            }
        };
        let xs = self.head_dense.forward(&pooled)?;
        let xs = settings.classifier_activation.apply(&xs)?;
        let xs = layer_norm(
            &xs,
            &self.head_norm.weight,
            &self.head_norm.bias,
            config.layer_norm_eps,
        )?;
        let xs = mode.dropout(&xs, settings.classifier_dropout)?;
        self.classifier.forward(&xs)
    }
}
