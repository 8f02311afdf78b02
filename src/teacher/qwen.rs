//! Qwen2 and Qwen3 decoders scoring left-padded batches at their last position.
//!
//! candle-transformers 0.11.1 has both models (`models::qwen2`, `models::qwen3`), built for
//! generation: one sequence, a KV cache, and a causal mask without padding (Qwen3 on the CPU uses a
//! fused causal kernel that takes no mask at all; Qwen2's optional mask is a padding mask *without*
//! the causal part). Their attention, MLP and rotary modules are private. Batched reranking needs a
//! mask that is causal *and* hides the left padding, so this file holds a small decoder of its own
//! that loads the same weight names and takes from candle-transformers what is public:
//!
//! - the config readers [`qwen2::Config`] and [`qwen3::Config`] (config.json is normalised first:
//!   transformers 5 writes `rope_parameters.rope_theta` instead of `rope_theta`, and
//!   `"sliding_window": null`, which Qwen2's reader does not accept);
//! - the layers `with_tracing::{Linear, RmsNorm}` (candle-nn's fused RMSNorm kernel), the grouped
//!   query helper `utils::repeat_kv`, and candle-nn's `rotary_emb::rope` (the `rotate_half` form).
//!
//! What transformers 5.24 computes for `model(input_ids, attention_mask)` (what
//! sentence-transformers calls), and what [`QwenDecoder::last_token_scores`] matches:
//!
//! - position ids are `arange(seq_len)` for every row, padding included (they are *not* derived
//!   from the attention mask; only `generate` does that). RoPE makes attention depend on position
//!   differences only, and padded keys are masked, so a left-padded row scores as it does alone.
//! - the mask is causal + padding, masked entries at the dtype's minimum (finite: a padding query
//!   row, whose keys are all masked, attends uniformly instead of producing NaN).
//! - Qwen3: RMSNorm over each head's q and k (`q_norm`, `k_norm`) before RoPE, biases on q/k/v/o per
//!   `attention_bias`, `head_dim` from config. Qwen2: biases on q/k/v, none on o, no q/k norm,
//!   `head_dim = hidden_size / num_attention_heads`.
//! - `lm_head` is `embed_tokens` when `tie_word_embeddings`, else its own matrix.
//!
//! Only the last position is scored, and only against the rows of `lm_head` that the score needs
//! (the true and false token ids): the vocabulary projection is never computed in full, and the
//! last layer computes attention and MLP for the last position only.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Activation, VarBuilder};
use candle_transformers::models::with_tracing::{linear_b, Linear, RmsNorm};
use candle_transformers::models::{qwen2, qwen3};
use candle_transformers::utils::repeat_kv;
use serde_json::Value;

use crate::error::{Error, Result};

/// Which decoder family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QwenVariant {
    /// `Qwen2ForCausalLM` (mxbai-rerank-v2).
    Qwen2,
    /// `Qwen3ForCausalLM` (Qwen3-Reranker).
    Qwen3,
}

impl QwenVariant {
    /// From config.json's `model_type`.
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "qwen2" => Some(QwenVariant::Qwen2),
            "qwen3" => Some(QwenVariant::Qwen3),
            _ => None,
        }
    }

    /// The model types this file runs, for messages.
    pub const SUPPORTED: &'static [&'static str] = &["qwen2", "qwen3"];
}

/// The shape of a Qwen decoder, read through candle-transformers' config types.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// Which family.
    pub variant: QwenVariant,
    /// Vocabulary rows of `embed_tokens` / `lm_head`.
    pub vocab_size: usize,
    /// Residual width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_key_value_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Length of the position table (the longest prompt).
    pub max_position_embeddings: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// MLP gate activation.
    pub hidden_act: Activation,
    /// `lm_head` is `embed_tokens`.
    pub tie_word_embeddings: bool,
    /// Biases on q, k, v.
    pub qkv_bias: bool,
    /// Bias on o.
    pub o_bias: bool,
}

fn config_error(path: &std::path::Path, message: impl Into<String>) -> Error {
    Error::input(path, None, message)
        .with_hint("config.json must be a Qwen2/Qwen3 config as transformers writes it")
}

impl DecoderConfig {
    /// Read config.json (already parsed as `raw`) for `variant`.
    pub fn from_value(
        mut raw: Value,
        variant: QwenVariant,
        path: &std::path::Path,
    ) -> Result<Self> {
        let Some(object) = raw.as_object_mut() else {
            return Err(config_error(path, "expected a JSON object"));
        };
        // transformers 5 moved rope_theta into rope_parameters; only plain RoPE is implemented.
        let rope = object
            .get("rope_parameters")
            .or_else(|| object.get("rope_scaling"))
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(kind) = rope
            .get("rope_type")
            .or_else(|| rope.get("type"))
            .and_then(Value::as_str)
        {
            if kind != "default" {
                return Err(config_error(
                    path,
                    format!("rope type `{kind}` is not supported; only the default RoPE is"),
                ));
            }
        }
        if !object.contains_key("rope_theta") {
            let theta = rope
                .get("rope_theta")
                .cloned()
                .unwrap_or(Value::from(10_000.0));
            object.insert("rope_theta".into(), theta);
        }
        if object.get("use_sliding_window").and_then(Value::as_bool) == Some(true) {
            return Err(config_error(
                path,
                "use_sliding_window is true; sliding-window attention is not supported for rerankers",
            ));
        }
        let defaults: [(&str, Value); 4] = [
            ("use_sliding_window", Value::from(false)),
            ("tie_word_embeddings", Value::from(false)),
            ("attention_bias", Value::from(false)),
            ("max_window_layers", Value::from(0)),
        ];
        for (key, value) in defaults {
            if object.get(key).is_none_or(Value::is_null) {
                object.insert(key.into(), value);
            }
        }
        // Unused without a sliding window, but Qwen2's reader wants a number.
        if object.get("sliding_window").is_none_or(Value::is_null) {
            let max = object
                .get("max_position_embeddings")
                .cloned()
                .unwrap_or(Value::from(0));
            object.insert("sliding_window".into(), max);
        }
        let parse_error =
            |e: serde_json::Error| config_error(path, format!("not a {variant:?} config: {e}"));
        let config = match variant {
            QwenVariant::Qwen2 => {
                let c: qwen2::Config = serde_json::from_value(raw).map_err(parse_error)?;
                if c.num_attention_heads == 0
                    || !c.hidden_size.is_multiple_of(c.num_attention_heads)
                {
                    return Err(config_error(
                        path,
                        format!(
                            "hidden_size {} is not a multiple of num_attention_heads {}",
                            c.hidden_size, c.num_attention_heads
                        ),
                    ));
                }
                Self {
                    variant,
                    vocab_size: c.vocab_size,
                    hidden_size: c.hidden_size,
                    intermediate_size: c.intermediate_size,
                    num_hidden_layers: c.num_hidden_layers,
                    num_attention_heads: c.num_attention_heads,
                    num_key_value_heads: c.num_key_value_heads,
                    head_dim: c.hidden_size / c.num_attention_heads,
                    max_position_embeddings: c.max_position_embeddings,
                    rope_theta: c.rope_theta,
                    rms_norm_eps: c.rms_norm_eps,
                    hidden_act: c.hidden_act,
                    tie_word_embeddings: c.tie_word_embeddings,
                    qkv_bias: true,
                    o_bias: false,
                }
            }
            QwenVariant::Qwen3 => {
                if let Some(object) = raw.as_object_mut() {
                    if object.get("head_dim").is_none_or(Value::is_null) {
                        let hidden = object.get("hidden_size").and_then(Value::as_u64);
                        let heads = object.get("num_attention_heads").and_then(Value::as_u64);
                        if let (Some(hidden), Some(heads)) = (hidden, heads.filter(|&h| h > 0)) {
                            object.insert("head_dim".into(), Value::from(hidden / heads));
                        }
                    }
                }
                let c: qwen3::Config = serde_json::from_value(raw).map_err(parse_error)?;
                Self {
                    variant,
                    vocab_size: c.vocab_size,
                    hidden_size: c.hidden_size,
                    intermediate_size: c.intermediate_size,
                    num_hidden_layers: c.num_hidden_layers,
                    num_attention_heads: c.num_attention_heads,
                    num_key_value_heads: c.num_key_value_heads,
                    head_dim: c.head_dim,
                    max_position_embeddings: c.max_position_embeddings,
                    rope_theta: c.rope_theta,
                    rms_norm_eps: c.rms_norm_eps,
                    hidden_act: c.hidden_act,
                    tie_word_embeddings: c.tie_word_embeddings,
                    qkv_bias: c.attention_bias,
                    o_bias: c.attention_bias,
                }
            }
        };
        if config.num_key_value_heads == 0
            || !config
                .num_attention_heads
                .is_multiple_of(config.num_key_value_heads)
        {
            return Err(config_error(
                path,
                format!(
                    "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                    config.num_attention_heads, config.num_key_value_heads
                ),
            ));
        }
        if !config.head_dim.is_multiple_of(2) || config.num_hidden_layers == 0 {
            return Err(config_error(
                path,
                format!(
                    "head_dim {} must be even and num_hidden_layers {} at least 1",
                    config.head_dim, config.num_hidden_layers
                ),
            ));
        }
        Ok(config)
    }
}

/// `cos` and `sin` of every position up to `positions`, `(positions, head_dim / 2)`, in f32 as
/// transformers computes them: `inv_freq = 1 / theta^(2i / head_dim)`, angle = position × inv_freq.
fn rope_tables(
    config: &DecoderConfig,
    positions: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = config.head_dim / 2;
    let theta = config.rope_theta as f32;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / theta.powf((2 * i) as f32 / config.head_dim as f32))
        .collect();
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for position in 0..positions {
        for &f in &inv_freq {
            let angle = position as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (positions, half), device)?,
        Tensor::from_vec(sin, (positions, half), device)?,
    ))
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    /// Qwen3's per-head norms.
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(config: &DecoderConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let (h, d) = (config.hidden_size, config.head_dim);
        let (heads, kv_heads) = (config.num_attention_heads, config.num_key_value_heads);
        let qk_norm = match config.variant {
            QwenVariant::Qwen3 => Some((
                RmsNorm::new(d, config.rms_norm_eps, vb.pp("q_norm"))?,
                RmsNorm::new(d, config.rms_norm_eps, vb.pp("k_norm"))?,
            )),
            QwenVariant::Qwen2 => None,
        };
        Ok(Self {
            q_proj: linear_b(h, heads * d, config.qkv_bias, vb.pp("q_proj"))?,
            k_proj: linear_b(h, kv_heads * d, config.qkv_bias, vb.pp("k_proj"))?,
            v_proj: linear_b(h, kv_heads * d, config.qkv_bias, vb.pp("v_proj"))?,
            o_proj: linear_b(heads * d, h, config.o_bias, vb.pp("o_proj"))?,
            qk_norm,
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim: d,
        })
    }

    /// `xs` (B, L, H) are the keys' and values' inputs; `queries` (B, Lq, H) the last `Lq`
    /// positions of `xs`; `mask` (B, 1, Lq, L) additive; `cos`/`sin` (L, D/2).
    fn forward(
        &self,
        xs: &Tensor,
        queries: &Tensor,
        mask: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (b, l, _) = xs.dims3()?;
        let lq = queries.dim(1)?;
        let d = self.head_dim;
        let q = self
            .q_proj
            .forward(queries)?
            .reshape((b, lq, self.num_heads, d))?;
        let k = self
            .k_proj
            .forward(xs)?
            .reshape((b, l, self.num_kv_heads, d))?;
        let v = self
            .v_proj
            .forward(xs)?
            .reshape((b, l, self.num_kv_heads, d))?;
        let (q, k) = match &self.qk_norm {
            Some((q_norm, k_norm)) => (q_norm.forward(&q)?, k_norm.forward(&k)?),
            None => (q, k),
        };
        let q = q.transpose(1, 2)?.contiguous()?;
        let k = k.transpose(1, 2)?.contiguous()?;
        let v = v.transpose(1, 2)?.contiguous()?;
        let q = candle_nn::rotary_emb::rope(
            &q,
            &cos.narrow(0, l - lq, lq)?,
            &sin.narrow(0, l - lq, lq)?,
        )?;
        let k = candle_nn::rotary_emb::rope(&k, cos, sin)?;
        let groups = self.num_heads / self.num_kv_heads;
        let k = repeat_kv(k, groups)?.contiguous()?;
        let v = repeat_kv(v, groups)?.contiguous()?;
        let scale = 1.0 / (d as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, lq, self.num_heads * d))?
            .apply(&self.o_proj)
    }
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    act: Activation,
}

impl Mlp {
    fn new(config: &DecoderConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        Ok(Self {
            gate_proj: linear_b(h, i, false, vb.pp("gate_proj"))?,
            up_proj: linear_b(h, i, false, vb.pp("up_proj"))?,
            down_proj: linear_b(i, h, false, vb.pp("down_proj"))?,
            act: config.hidden_act,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let gate = xs.apply(&self.gate_proj)?.apply(&self.act)?;
        (gate * xs.apply(&self.up_proj)?)?.apply(&self.down_proj)
    }
}

struct Layer {
    input_layernorm: RmsNorm,
    attention: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl Layer {
    /// With `last_only`, the output holds the last position only (B, 1, H).
    fn forward(
        &self,
        xs: &Tensor,
        mask: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        last_only: bool,
    ) -> candle_core::Result<Tensor> {
        let l = xs.dim(1)?;
        let normed = self.input_layernorm.forward(xs)?;
        let (residual, queries, mask) = if last_only {
            (
                xs.narrow(1, l - 1, 1)?,
                normed.narrow(1, l - 1, 1)?,
                mask.narrow(2, l - 1, 1)?,
            )
        } else {
            (xs.clone(), normed.clone(), mask.clone())
        };
        let attended = self.attention.forward(&normed, &queries, &mask, cos, sin)?;
        let xs = (residual + attended)?;
        let mlp = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&xs)?)?;
        xs + mlp
    }
}

/// A Qwen decoder that scores the last position against a few vocabulary rows.
pub struct QwenDecoder {
    config: DecoderConfig,
    embed_tokens: candle_nn::Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    /// The `lm_head` rows of the scored tokens, transposed: (H, K).
    score_rows: Tensor,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

impl QwenDecoder {
    /// Build from loaded weights (transformers' names: `model.embed_tokens.weight`,
    /// `model.layers.N.{self_attn,mlp,...}`, `model.norm.weight`, `lm_head.weight` when untied).
    /// `token_ids` are the vocabulary rows scored; `max_length` bounds the rotary tables.
    pub fn new(
        config: DecoderConfig,
        vb: VarBuilder,
        token_ids: &[u32],
        max_length: usize,
    ) -> candle_core::Result<Self> {
        let device = vb.device().clone();
        let embed_tokens = candle_nn::embedding(
            config.vocab_size,
            config.hidden_size,
            vb.pp("model.embed_tokens"),
        )?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let vb = vb.pp(format!("model.layers.{i}"));
            layers.push(Layer {
                input_layernorm: RmsNorm::new(
                    config.hidden_size,
                    config.rms_norm_eps,
                    vb.pp("input_layernorm"),
                )?,
                attention: Attention::new(&config, vb.pp("self_attn"))?,
                post_attention_layernorm: RmsNorm::new(
                    config.hidden_size,
                    config.rms_norm_eps,
                    vb.pp("post_attention_layernorm"),
                )?,
                mlp: Mlp::new(&config, vb.pp("mlp"))?,
            });
        }
        let norm = RmsNorm::new(config.hidden_size, config.rms_norm_eps, vb.pp("model.norm"))?;
        let head = if config.tie_word_embeddings {
            embed_tokens.embeddings().clone()
        } else {
            vb.get((config.vocab_size, config.hidden_size), "lm_head.weight")?
        };
        let ids = Tensor::new(token_ids, &device)?;
        let score_rows = head.index_select(&ids, 0)?.t()?.contiguous()?;
        let positions = max_length.min(config.max_position_embeddings).max(1);
        let (cos, sin) = rope_tables(&config, positions, &device)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok(Self {
            config,
            embed_tokens,
            layers,
            norm,
            score_rows,
            cos,
            sin,
            device,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Logits of the scored tokens at the last position of each left-padded row: `input_ids`
    /// and `attention_mask` are row-major (B, L), the mask 1 on real tokens, every row's last
    /// entry real. Returns (B, K), K = the number of scored token ids.
    pub fn last_token_scores(
        &self,
        input_ids: &[u32],
        attention_mask: &[u8],
        batch_size: usize,
        seq_len: usize,
    ) -> Result<Tensor> {
        if seq_len > self.cos.dim(0)? {
            return Err(Error::invalid(format!(
                "a prompt of {seq_len} tokens is longer than the position table ({} positions)",
                self.cos.dim(0)?
            ))
            .with_hint("lower max_length"));
        }
        let ids = Tensor::from_slice(input_ids, (batch_size, seq_len), &self.device)?;
        let mask = causal_padding_mask(attention_mask, batch_size, seq_len, &self.device)?;
        let cos = self.cos.narrow(0, 0, seq_len)?;
        let sin = self.sin.narrow(0, 0, seq_len)?;
        let mut xs = self.embed_tokens.forward(&ids)?;
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            xs = layer.forward(&xs, &mask, &cos, &sin, i == last)?;
        }
        let hidden = self.norm.forward(&xs)?.squeeze(1)?;
        Ok(hidden.matmul(&self.score_rows)?)
    }
}

/// The additive mask (B, 1, L, L) of a left-padded batch: 0 where query `i` may see key `j`
/// (`j <= i` and `j` real), `f32::MIN` elsewhere (as transformers, finite).
pub fn causal_padding_mask(
    attention_mask: &[u8],
    batch_size: usize,
    seq_len: usize,
    device: &Device,
) -> Result<Tensor> {
    if attention_mask.len() != batch_size * seq_len {
        return Err(Error::invalid(format!(
            "attention mask has {} entries for a batch of shape [{batch_size}, {seq_len}]",
            attention_mask.len()
        )));
    }
    let mut values = vec![f32::MIN; batch_size * seq_len * seq_len];
    for b in 0..batch_size {
        let row = &attention_mask[b * seq_len..(b + 1) * seq_len];
        for i in 0..seq_len {
            let out = &mut values[(b * seq_len + i) * seq_len..][..seq_len];
            for j in 0..=i {
                if row[j] != 0 {
                    out[j] = 0.0;
                }
            }
        }
    }
    Ok(
        Tensor::from_vec(values, (batch_size, 1, seq_len, seq_len), device)?
            .to_dtype(DType::F32)?,
    )
}

/// Score from the (B, K) logits of [`QwenDecoder::last_token_scores`]: column 0 minus column 1
/// when a false token is scored, else column 0 (sentence-transformers' `LogitScore`).
pub fn logit_scores(logits: &Tensor) -> Result<Vec<f32>> {
    let rows = logits.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
    Ok(rows
        .into_iter()
        .map(|row| match row.as_slice() {
            [t, f] => t - f,
            [t] => *t,
            _ => f32::NAN,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_is_causal_and_hides_left_padding() {
        let mask = causal_padding_mask(&[0, 1, 1, 1, 1, 1], 2, 3, &Device::Cpu).unwrap();
        let m = mask.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let open = |v: f32| v == 0.0;
        // Row 0 (one pad): query 1 sees key 1 only, query 2 sees keys 1 and 2, key 0 never.
        assert!(!open(m[3]) && open(m[4]) && !open(m[5]));
        assert!(!open(m[6]) && open(m[7]) && open(m[8]));
        // Row 1 (no pad): plain causal.
        assert!(open(m[9]) && !open(m[10]) && !open(m[11]));
        assert!(open(m[15]) && open(m[16]) && open(m[17]));
        // The pad query row is fully masked but finite (no NaN after softmax).
        assert!(m[0..3].iter().all(|v| v.is_finite()));
    }
}
