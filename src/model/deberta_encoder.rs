//! crossdistill's own DeBERTa-v2 / DeBERTa-v3 sequence classifier for CPU inference
//! (`DebertaV2ForSequenceClassification`), on f32 slices and the fused kernels:
//! - embeddings: word (+ absolute positions when `position_biased_input`, + token types when
//!   `type_vocab_size` > 0), `embed_proj` when `embedding_size` differs, LayerNorm, padding
//!   zeroed;
//! - per layer: one gemm for the query, key and value projections, the disentangled attention
//!   of [`super::disentangled_attention`] (c2p and p2c terms, exact or log-bucketed relative
//!   positions), the output projection with `LayerNorm(x + residual)` in one pass, the
//!   feed-forward with its activation applied in place;
//! - the head: `ContextPooler` (first token, dense, `pooler_hidden_act`) and the classifier.
//!
//! The relative embeddings (LayerNorm'd when `norm_rel_ebd` says so) projected by each layer's
//! position projections do not depend on the input: they are computed once, at load.
//! The config is candle-transformers' `debertav2::Config` (the teacher reads config.json into it;
//! candle-transformers' model runs on other devices).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::debertav2::{Config, HiddenAct as DebertaAct};

use super::dense_inference::{activate, add_layer_norm, dense, dense_into};
use super::disentangled_attention::{disentangled_attention, AttentionShape, RelativeTermInput};
use super::hidden_act::HiddenAct;
use super::relative_position::{RelativeIndex, RelativeTerm};

type CResult<T> = candle_core::Result<T>;

/// A dense layer's row-major `(out, in)` weight and its bias.
struct Dense {
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
}

impl Dense {
    fn load(vb: &VarBuilder, out_dim: usize, in_dim: usize, bias: bool) -> CResult<Self> {
        Ok(Self {
            weight: flat(&vb.get((out_dim, in_dim), "weight")?)?,
            bias: if bias {
                Some(flat(&vb.get(out_dim, "bias")?)?)
            } else {
                None
            },
        })
    }

    fn forward(&self, xs: &[f32], rows: usize, act: Option<HiddenAct>) -> Vec<f32> {
        dense(xs, rows, &self.weight, self.bias.as_deref(), act)
    }

    fn forward_into(&self, xs: &[f32], rows: usize, act: Option<HiddenAct>, ys: &mut Vec<f32>) {
        dense_into(xs, rows, &self.weight, self.bias.as_deref(), act, ys)
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Norm {
    fn load(vb: &VarBuilder, hidden: usize) -> CResult<Self> {
        Ok(Self {
            gamma: flat(&vb.get(hidden, "weight")?)?,
            beta: flat(&vb.get(hidden, "bias")?)?,
        })
    }
}

fn flat(t: &Tensor) -> CResult<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
}

struct Layer {
    /// Query, key and value projections stacked: `(3 · width, hidden)`.
    qkv: Dense,
    /// `(2 · span, width)` relative embeddings through the key projection (c2p) and the query
    /// projection (p2c), when the layer has the term.
    pos_key: Option<Vec<f32>>,
    pos_query: Option<Vec<f32>>,
    attn_out: Dense,
    attn_norm: Norm,
    inter: Dense,
    out: Dense,
    out_norm: Norm,
}

/// Relative-attention settings shared by all layers.
struct Relative {
    /// Rows on each side of the relative-embedding table (`pos_ebd_size`).
    span: usize,
    bucket_size: isize,
    max_position: isize,
}

/// A `DebertaV2ForSequenceClassification` checkpoint for CPU inference.
pub struct DebertaV2Encoder {
    hidden: usize,
    embedding_size: usize,
    heads: usize,
    head_dim: usize,
    layer_norm_eps: f32,
    hidden_act: HiddenAct,
    word: Vec<f32>,
    position: Option<Vec<f32>>,
    token_type: Option<Vec<f32>>,
    type_vocab_size: usize,
    max_positions: usize,
    embed_proj: Option<Dense>,
    emb_norm: Norm,
    relative: Option<Relative>,
    c2p: bool,
    p2c: bool,
    /// `1 / sqrt(head_dim · scale_factor)`.
    scale: f32,
    layers: Vec<Layer>,
    pooler: Dense,
    pooler_act: HiddenAct,
    classifier: Dense,
    num_labels: usize,
}

impl std::fmt::Debug for DebertaV2Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebertaV2Encoder")
            .field("hidden", &self.hidden)
            .field("layers", &self.layers.len())
            .finish()
    }
}

/// A layer's relative term, when the model has it.
fn term<'a>(
    positions: &'a Option<Vec<f32>>,
    index: Option<&'a RelativeIndex>,
) -> Option<RelativeTermInput<'a>> {
    match (positions, index) {
        (Some(positions), Some(index)) => Some(RelativeTermInput { positions, index }),
        _ => None,
    }
}

fn act(act: DebertaAct) -> HiddenAct {
    match act {
        DebertaAct::Gelu => HiddenAct::GeluErf,
        DebertaAct::GeluApproximate => HiddenAct::GeluTanh,
        DebertaAct::Relu => HiddenAct::Relu,
    }
}

impl DebertaV2Encoder {
    /// Load from the checkpoint's tensors (`vb` at the root: `deberta.*`, `pooler.*`,
    /// `classifier.*`), as transformers names them; `num_labels` outputs. A tensor missing or of
    /// another shape than `config` implies is an error.
    pub fn load(vb: VarBuilder, config: &Config, num_labels: usize) -> CResult<Self> {
        let hidden = config.hidden_size;
        let heads = config.num_attention_heads;
        if heads == 0 || (config.attention_head_size.is_none() && !hidden.is_multiple_of(heads)) {
            candle_core::bail!(
                "hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
            );
        }
        let head_dim = config.attention_head_size.unwrap_or(hidden / heads);
        let width = heads * head_dim;
        let embedding_size = config.embedding_size.unwrap_or(hidden);
        let base = vb.pp("deberta");
        let emb = base.pp("embeddings");
        let word = flat(
            &emb.pp("word_embeddings")
                .get((config.vocab_size, embedding_size), "weight")?,
        )?;
        let position = if config.position_biased_input {
            Some(flat(&emb.pp("position_embeddings").get(
                (config.max_position_embeddings, embedding_size),
                "weight",
            )?)?)
        } else {
            None
        };
        let token_type = if config.type_vocab_size > 0 {
            Some(flat(
                &emb.pp("token_type_embeddings")
                    .get((config.type_vocab_size, embedding_size), "weight")?,
            )?)
        } else {
            None
        };
        let embed_proj = if embedding_size != hidden {
            Some(Dense::load(
                &emb.pp("embed_proj"),
                hidden,
                embedding_size,
                false,
            )?)
        } else {
            None
        };
        let emb_norm = Norm::load(&emb.pp("LayerNorm"), hidden)?;

        let c2p = config.pos_att_type.iter().any(|t| t == "c2p");
        let p2c = config.pos_att_type.iter().any(|t| t == "p2c");
        let scale_factor = 1 + usize::from(c2p) + usize::from(p2c);
        let scale = 1.0 / ((head_dim * scale_factor) as f32).sqrt();
        let encoder = base.pp("encoder");
        let relative = if config.relative_attention {
            let max_position = if config.max_relative_positions < 1 {
                config.max_position_embeddings as isize
            } else {
                config.max_relative_positions
            };
            let bucket_size = config.position_buckets.unwrap_or(-1);
            let span = if bucket_size > 0 {
                bucket_size
            } else {
                max_position
            } as usize;
            Some(Relative {
                span,
                bucket_size,
                max_position,
            })
        } else {
            None
        };
        let rel_embeddings = match &relative {
            Some(relative) => {
                let mut table = flat(
                    &encoder
                        .pp("rel_embeddings")
                        .get((2 * relative.span, hidden), "weight")?,
                )?;
                let norm_rel = config.norm_rel_ebd.as_deref().unwrap_or("none");
                if norm_rel.split('|').any(|n| n.trim() == "layer_norm") {
                    let norm = Norm::load(&encoder.pp("LayerNorm"), hidden)?;
                    add_layer_norm(
                        &mut table,
                        None,
                        &norm.gamma,
                        &norm.beta,
                        config.layer_norm_eps as f32,
                    );
                }
                Some(table)
            }
            None => None,
        };

        let share_att_key = config.share_att_key.unwrap_or(false);
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let layer = encoder.pp(format!("layer.{i}"));
            let attn = layer.pp("attention.self");
            let query = Dense::load(&attn.pp("query_proj"), width, hidden, true)?;
            let key = Dense::load(&attn.pp("key_proj"), width, hidden, true)?;
            let value = Dense::load(&attn.pp("value_proj"), width, hidden, true)?;
            let (mut pos_key, mut pos_query) = (None, None);
            if let Some(table) = &rel_embeddings {
                let rows = table.len() / hidden;
                let project = |proj: &Dense| proj.forward(table, rows, None);
                if c2p {
                    pos_key = Some(if share_att_key {
                        project(&key)
                    } else {
                        project(&Dense::load(&attn.pp("pos_key_proj"), width, hidden, true)?)
                    });
                }
                if p2c {
                    pos_query = Some(if share_att_key {
                        project(&query)
                    } else {
                        project(&Dense::load(
                            &attn.pp("pos_query_proj"),
                            width,
                            hidden,
                            true,
                        )?)
                    });
                }
            }
            let stacked = |parts: [&Dense; 3], get: fn(&Dense) -> &[f32]| -> Vec<f32> {
                parts.iter().flat_map(|d| get(d).iter().copied()).collect()
            };
            let qkv = Dense {
                weight: stacked([&query, &key, &value], |d| &d.weight),
                bias: Some(stacked([&query, &key, &value], |d| {
                    d.bias.as_deref().unwrap_or_default()
                })),
            };
            layers.push(Layer {
                qkv,
                pos_key,
                pos_query,
                attn_out: Dense::load(&layer.pp("attention.output.dense"), hidden, width, true)?,
                attn_norm: Norm::load(&layer.pp("attention.output.LayerNorm"), hidden)?,
                inter: Dense::load(
                    &layer.pp("intermediate.dense"),
                    config.intermediate_size,
                    hidden,
                    true,
                )?,
                out: Dense::load(
                    &layer.pp("output.dense"),
                    hidden,
                    config.intermediate_size,
                    true,
                )?,
                out_norm: Norm::load(&layer.pp("output.LayerNorm"), hidden)?,
            });
        }
        let pooler_size = config.pooler_hidden_size.unwrap_or(hidden);
        let pooler = Dense::load(&vb.pp("pooler.dense"), pooler_size, hidden, true)?;
        let classifier = Dense::load(&vb.pp("classifier"), num_labels, pooler_size, true)?;
        Ok(Self {
            hidden,
            embedding_size,
            heads,
            head_dim,
            layer_norm_eps: config.layer_norm_eps as f32,
            hidden_act: act(config.hidden_act),
            word,
            position,
            token_type,
            type_vocab_size: config.type_vocab_size,
            max_positions: config.max_position_embeddings,
            embed_proj,
            emb_norm,
            relative,
            c2p,
            p2c,
            scale,
            layers,
            pooler,
            pooler_act: act(config.pooler_hidden_act.unwrap_or(DebertaAct::Gelu)),
            classifier,
            num_labels,
        })
    }

    /// Logits `(B, num_labels)` for a padded batch: `input_ids`, `type_ids` and
    /// `attention_mask` (1 on real tokens, 0 on padding) are `(B, L)` row-major. Token types
    /// are read only when the model has a type vocabulary. An id outside its table, or a batch
    /// longer than the absolute position table, is an error.
    pub fn forward(
        &self,
        input_ids: &[u32],
        type_ids: &[u32],
        attention_mask: &[f32],
        batch: usize,
        seq_len: usize,
    ) -> CResult<Tensor> {
        let tokens = batch * seq_len;
        if input_ids.len() != tokens || attention_mask.len() != tokens {
            candle_core::bail!(
                "deberta: {} ids and {} mask values for a batch of {batch} × {seq_len}",
                input_ids.len(),
                attention_mask.len()
            );
        }
        let mut xs = self.embeddings(input_ids, type_ids, attention_mask, seq_len)?;
        let indices = self.relative.as_ref().map(|r| {
            let index =
                |term| RelativeIndex::new(term, seq_len, r.span, r.bucket_size, r.max_position);
            (
                self.c2p.then(|| index(RelativeTerm::C2p)),
                self.p2c.then(|| index(RelativeTerm::P2c)),
            )
        });
        let shape = AttentionShape {
            batch,
            seq_len,
            heads: self.heads,
            head_dim: self.head_dim,
        };
        // Buffers reused from layer to layer: (B · L) rows of 3 · width, hidden and intermediate
        // values are tens of megabytes at base shape, and fresh ones cost a page fault per 4 KiB.
        let (mut qkv, mut attn, mut inter) = (Vec::new(), Vec::new(), Vec::new());
        for layer in &self.layers {
            layer.qkv.forward_into(&xs, tokens, None, &mut qkv);
            let (c2p, p2c) = match &indices {
                Some((c2p, p2c)) => (
                    term(&layer.pos_key, c2p.as_ref()),
                    term(&layer.pos_query, p2c.as_ref()),
                ),
                None => (None, None),
            };
            let context = disentangled_attention(&qkv, attention_mask, shape, self.scale, c2p, p2c);
            layer
                .attn_out
                .forward_into(&context, tokens, None, &mut attn);
            add_layer_norm(
                &mut attn,
                Some(&xs),
                &layer.attn_norm.gamma,
                &layer.attn_norm.beta,
                self.layer_norm_eps,
            );
            layer
                .inter
                .forward_into(&attn, tokens, Some(self.hidden_act), &mut inter);
            layer.out.forward_into(&inter, tokens, None, &mut xs);
            add_layer_norm(
                &mut xs,
                Some(&attn),
                &layer.out_norm.gamma,
                &layer.out_norm.beta,
                self.layer_norm_eps,
            );
        }
        let first: Vec<f32> = xs
            .chunks(seq_len * self.hidden)
            .flat_map(|sequence| sequence[..self.hidden].iter().copied())
            .collect();
        let mut pooled = self.pooler.forward(&first, batch, None);
        activate(&mut pooled, self.pooler_act);
        let logits = self.classifier.forward(&pooled, batch, None);
        Tensor::from_vec(logits, (batch, self.num_labels), &Device::Cpu)
    }

    /// `(B · L, hidden)` embeddings: LayerNorm of the summed (and projected) tables, padding
    /// rows zeroed.
    fn embeddings(
        &self,
        input_ids: &[u32],
        type_ids: &[u32],
        attention_mask: &[f32],
        seq_len: usize,
    ) -> CResult<Vec<f32>> {
        let e = self.embedding_size;
        let vocab = self.word.len() / e;
        if self.position.is_some() && seq_len > self.max_positions {
            candle_core::bail!(
                "deberta: {seq_len} tokens, but the position table has {} rows",
                self.max_positions
            );
        }
        if self.token_type.is_some() && type_ids.len() != input_ids.len() {
            candle_core::bail!(
                "deberta: {} token type ids for {} tokens",
                type_ids.len(),
                input_ids.len()
            );
        }
        let mut xs = vec![0f32; input_ids.len() * e];
        for (t, (row, &id)) in xs.chunks_mut(e).zip(input_ids).enumerate() {
            let id = id as usize;
            if id >= vocab {
                candle_core::bail!("deberta: token id {id}, but the vocabulary has {vocab} rows");
            }
            row.copy_from_slice(&self.word[id * e..(id + 1) * e]);
            if let Some(position) = &self.position {
                let p = t % seq_len;
                row.iter_mut()
                    .zip(&position[p * e..(p + 1) * e])
                    .for_each(|(x, v)| *x += v);
            }
            if let Some(token_type) = &self.token_type {
                let kind = type_ids[t] as usize;
                if kind >= self.type_vocab_size {
                    candle_core::bail!(
                        "deberta: token type id {kind}, but type_vocab_size is {}",
                        self.type_vocab_size
                    );
                }
                row.iter_mut()
                    .zip(&token_type[kind * e..(kind + 1) * e])
                    .for_each(|(x, v)| *x += v);
            }
        }
        if let Some(proj) = &self.embed_proj {
            xs = proj.forward(&xs, input_ids.len(), None);
        }
        add_layer_norm(
            &mut xs,
            None,
            &self.emb_norm.gamma,
            &self.emb_norm.beta,
            self.layer_norm_eps,
        );
        for (row, &m) in xs.chunks_mut(self.hidden).zip(attention_mask) {
            row.iter_mut().for_each(|x| *x *= m);
        }
        Ok(xs)
    }
}
