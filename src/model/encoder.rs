//! The trainable transformer encoder and its sequence-classification heads.
//!
//! Post-LN BERT/XLM-R/ELECTRA blocks written with differentiable candle ops plus the fused ops
//! of [`super::ops`], so every parameter receives a gradient; ModernBERT's pre-norm blocks are
//! [`super::modernbert_encoder`]. Dropout is active in training (masks from a seedable
//! [`super::ops::Dropout`] stream) and off in inference.

use candle_core::{DType, Tensor, D};

use super::batch_tensors::BatchTensors;
use super::config::{Architecture, EncoderConfig};
use super::embedding::embedding;
use super::hidden_act::HiddenAct;
use super::mode::Mode;
use super::modernbert_encoder::ModernBertEncoder;
use super::ops::{attention, dense, layer_norm, linear, DenseActivation};
use super::weights::Params;
use crate::error::{Error, Result};

struct Layer {
    qkv: [(Tensor, Tensor); 3],
    attn_out: (Tensor, Tensor),
    attn_norm: (Tensor, Tensor),
    inter: (Tensor, Tensor),
    out: (Tensor, Tensor),
    out_norm: (Tensor, Tensor),
}

enum Head {
    /// BERT: pooler (dense + tanh) then classifier.
    Bert {
        pooler: (Tensor, Tensor),
        classifier: (Tensor, Tensor),
    },
    /// XLM-R: dense + tanh then out_proj.
    Roberta {
        dense: (Tensor, Tensor),
        out_proj: (Tensor, Tensor),
    },
    /// ELECTRA (`ElectraClassificationHead`): dense + GELU (erf) then out_proj.
    Electra {
        dense: (Tensor, Tensor),
        out_proj: (Tensor, Tensor),
    },
}

/// Tensors of one model, bound by name once, sharing storage with the trainable [`Params`].
///
/// Bound with `record_graph`, the tensors are the parameters' `Var`s and every forward pass
/// records the backprop graph (keeping each intermediate activation alive until its output is
/// dropped). Bound without, they are detached views of the same storage: the same numbers
/// (optimizer steps included, since `Var::set` writes in place), no graph, and each
/// intermediate freed as soon as the next op has consumed it.
pub(crate) enum Encoder {
    /// BERT, XLM-RoBERTa, ELECTRA: post-LN blocks.
    Bert(BertEncoder),
    /// ModernBERT: pre-norm blocks with rotary embeddings and sliding-window layers.
    ModernBert(ModernBertEncoder),
}

impl Encoder {
    pub(crate) fn bind(
        config: &EncoderConfig,
        params: &Params,
        record_graph: bool,
    ) -> Result<Self> {
        Self::bind_as(config, params, record_graph, DType::F32)
    }

    /// [`Encoder::bind`] with every parameter cast to `dtype` (`to_dtype`: differentiable, so
    /// with `record_graph` the gradients reach the f32 parameters in f32). The forward then
    /// runs in `dtype` through the composed ops (LayerNorm and softmax inside in f32). A cast
    /// copy does not follow later in-place updates of the parameters: bind again.
    pub(crate) fn bind_as(
        config: &EncoderConfig,
        params: &Params,
        record_graph: bool,
        dtype: DType,
    ) -> Result<Self> {
        Ok(match config.architecture {
            Architecture::ModernBert => Encoder::ModernBert(ModernBertEncoder::bind(
                config,
                params,
                record_graph,
                dtype,
            )?),
            _ => Encoder::Bert(BertEncoder::bind(config, params, record_graph, dtype)?),
        })
    }

    /// The last hidden states `(B, L, H)` (ModernBERT: after the final norm); with `collect`,
    /// also the output of the embeddings and of every layer (ModernBERT: then the final norm's).
    pub(crate) fn hidden_states(
        &self,
        config: &EncoderConfig,
        batch: &BatchTensors,
        mode: &mut Mode,
        collect: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        match self {
            Encoder::Bert(encoder) => encoder.hidden_states(config, batch, mode, collect),
            Encoder::ModernBert(encoder) => encoder.hidden_states(config, batch, mode, collect),
        }
    }

    /// Logits `(B, num_labels)` from the last hidden states through the head.
    pub(crate) fn head(
        &self,
        config: &EncoderConfig,
        hidden: &Tensor,
        batch: &BatchTensors,
        mode: &mut Mode,
    ) -> Result<Tensor> {
        match self {
            Encoder::Bert(encoder) => encoder.head(config, hidden, mode),
            Encoder::ModernBert(encoder) => encoder.head(config, hidden, batch, mode),
        }
    }

    /// Mean of hidden states over real tokens `(B, H)` (bi-encoder pooling), in f32 whatever
    /// the hidden states' dtype.
    pub(crate) fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let hidden = hidden.to_dtype(DType::F32)?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        Ok(summed.broadcast_div(&counts)?)
    }
}

/// The BERT-family encoder and head.
pub(crate) struct BertEncoder {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_norm: (Tensor, Tensor),
    /// ELECTRA's `embeddings_project` (embedding_size → hidden_size), when the widths differ.
    emb_project: Option<(Tensor, Tensor)>,
    layers: Vec<Layer>,
    head: Head,
}

impl BertEncoder {
    fn bind(
        config: &EncoderConfig,
        params: &Params,
        record_graph: bool,
        dtype: DType,
    ) -> Result<Self> {
        let p = config.architecture.prefix();
        let get = |name: &str| -> Result<Tensor> {
            let tensor = params.get(name)?;
            let tensor = if record_graph {
                tensor
            } else {
                tensor.detach()
            };
            Ok(tensor.to_dtype(dtype)?)
        };
        let pair = |name: &str| -> Result<(Tensor, Tensor)> {
            Ok((
                get(&format!("{name}.weight"))?,
                get(&format!("{name}.bias"))?,
            ))
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = format!("{p}.encoder.layer.{i}");
            layers.push(Layer {
                qkv: [
                    pair(&format!("{l}.attention.self.query"))?,
                    pair(&format!("{l}.attention.self.key"))?,
                    pair(&format!("{l}.attention.self.value"))?,
                ],
                attn_out: pair(&format!("{l}.attention.output.dense"))?,
                attn_norm: pair(&format!("{l}.attention.output.LayerNorm"))?,
                inter: pair(&format!("{l}.intermediate.dense"))?,
                out: pair(&format!("{l}.output.dense"))?,
                out_norm: pair(&format!("{l}.output.LayerNorm"))?,
            });
        }
        let head = match config.architecture {
            Architecture::Bert => Head::Bert {
                pooler: pair(&format!("{p}.pooler.dense"))?,
                classifier: pair("classifier")?,
            },
            Architecture::XlmRoberta => Head::Roberta {
                dense: pair("classifier.dense")?,
                out_proj: pair("classifier.out_proj")?,
            },
            Architecture::Electra => Head::Electra {
                dense: pair("classifier.dense")?,
                out_proj: pair("classifier.out_proj")?,
            },
            Architecture::ModernBert => {
                return Err(Error::invalid(
                    "a ModernBERT config reached the BERT-family encoder; it binds as Encoder::ModernBert",
                ))
            }
        };
        let emb_project = if config.embedding_size != config.hidden_size {
            Some(pair(&format!("{p}.embeddings_project"))?)
        } else {
            None
        };
        Ok(Self {
            word: get(&format!("{p}.embeddings.word_embeddings.weight"))?,
            position: get(&format!("{p}.embeddings.position_embeddings.weight"))?,
            token_type: get(&format!("{p}.embeddings.token_type_embeddings.weight"))?,
            emb_norm: pair(&format!("{p}.embeddings.LayerNorm"))?,
            emb_project,
            layers,
            head,
        })
    }

    /// Hidden states `(B, L, H)`; with `collect`, also the output of the embeddings and of
    /// every layer.
    fn hidden_states(
        &self,
        config: &EncoderConfig,
        batch: &BatchTensors,
        mode: &mut Mode,
        mut collect: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        let (b_sz, seq_len) = batch.input_ids.dims2()?;
        let h = config.hidden_size;
        let e = config.embedding_size;
        let gather = |table: &Tensor, ids: &Tensor| -> Result<Tensor> {
            Ok(embedding(table, ids)?.reshape((b_sz, seq_len, e))?)
        };
        let embeddings = gather(&self.word, &batch.input_ids)?
            .add(&gather(&self.position, &batch.position_ids)?)?
            .add(&gather(&self.token_type, &batch.type_ids)?)?;
        let mut xs = layer_norm(
            &embeddings,
            &self.emb_norm.0,
            &self.emb_norm.1,
            config.layer_norm_eps,
        )?;
        xs = mode.dropout(&xs, config.hidden_dropout_prob)?;
        if let Some((weight, bias)) = &self.emb_project {
            xs = linear(&xs, weight, Some(bias))?;
        }
        if let Some(out) = collect.as_deref_mut() {
            out.push(xs.clone());
        }
        let heads = config.num_attention_heads;
        let head_dim = config.head_dim();
        let scale = 1.0 / (head_dim as f64).sqrt();
        let tokens = b_sz * seq_len;
        for layer in &self.layers {
            let [q, k, v] = &layer.qkv;
            let query = linear(&xs, &q.0, Some(&q.1))?;
            let key = linear(&xs, &k.0, Some(&k.1))?;
            let value = linear(&xs, &v.0, Some(&v.1))?;
            let probs_dropout = mode.mask(
                b_sz * heads * seq_len * seq_len,
                config.attention_probs_dropout_prob,
            );
            let context = attention(
                &query,
                &key,
                &value,
                &batch.attention_mask,
                heads,
                scale,
                None,
                probs_dropout,
            )?;
            let attn = dense(
                &context,
                &layer.attn_out.0,
                &layer.attn_out.1,
                DenseActivation::Identity,
                mode.mask(tokens * h, config.hidden_dropout_prob),
            )?;
            let xs_attn = layer_norm(
                &attn.add(&xs)?,
                &layer.attn_norm.0,
                &layer.attn_norm.1,
                config.layer_norm_eps,
            )?;
            let inter = match config.hidden_act {
                HiddenAct::GeluErf => dense(
                    &xs_attn,
                    &layer.inter.0,
                    &layer.inter.1,
                    DenseActivation::GeluErf,
                    None,
                )?,
                HiddenAct::GeluTanh => {
                    linear(&xs_attn, &layer.inter.0, Some(&layer.inter.1))?.gelu()?
                }
                act @ (HiddenAct::Relu | HiddenAct::Silu) => {
                    act.apply(&linear(&xs_attn, &layer.inter.0, Some(&layer.inter.1))?)?
                }
            };
            let out = dense(
                &inter,
                &layer.out.0,
                &layer.out.1,
                DenseActivation::Identity,
                mode.mask(tokens * h, config.hidden_dropout_prob),
            )?;
            xs = layer_norm(
                &out.add(&xs_attn)?,
                &layer.out_norm.0,
                &layer.out_norm.1,
                config.layer_norm_eps,
            )?;
            if let Some(out) = collect.as_deref_mut() {
                out.push(xs.clone());
            }
        }
        Ok(xs)
    }

    /// Logits `(B, num_labels)` from hidden states, through the head on the first token.
    fn head(&self, config: &EncoderConfig, hidden: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        match &self.head {
            Head::Bert { pooler, classifier } => {
                let pooled = linear(&first, &pooler.0, Some(&pooler.1))?.tanh()?;
                let pooled = mode.dropout(&pooled, config.classifier_dropout)?;
                Ok(linear(&pooled, &classifier.0, Some(&classifier.1))?)
            }
            Head::Roberta { dense, out_proj } => {
                let xs = mode.dropout(&first, config.classifier_dropout)?;
                let xs = linear(&xs, &dense.0, Some(&dense.1))?.tanh()?;
                let xs = mode.dropout(&xs, config.classifier_dropout)?;
                Ok(linear(&xs, &out_proj.0, Some(&out_proj.1))?)
            }
            Head::Electra { dense, out_proj } => {
                let xs = mode.dropout(&first, config.classifier_dropout)?;
                let xs = linear(&xs, &dense.0, Some(&dense.1))?.gelu_erf()?;
                let xs = mode.dropout(&xs, config.classifier_dropout)?;
                Ok(linear(&xs, &out_proj.0, Some(&out_proj.1))?)
            }
        }
    }
}
