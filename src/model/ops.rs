//! Differentiable building blocks that candle lacks a backward for.
//!
//! `candle_nn::ops::layer_norm` and `softmax_last_dim` have no backward pass, so an encoder built
//! on them trains only its head. Here:
//! - [`layer_norm`]: on CPU a fused `CustomOp3` (one pass forward, one pass backward for x, gamma
//!   and beta); elsewhere composed from differentiable candle ops.
//! - [`masked_softmax`]: softmax over the last dimension with a key mask; on CPU a fused
//!   `CustomOp2` with the analytic backward `dx = y ⊙ (g − Σ g⊙y)`; elsewhere composed.
//! - [`linear`], [`Dropout`]: plain candle ops, with dropout masks from a seedable generator
//!   (candle's CPU RNG cannot be seeded), so a forward pass can be replayed with the same masks.
//!
//! Every hand-written backward is checked against central finite differences in the tests.

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use super::cpu_f32::{f32_slice, with_cpu_f32, PAR_ROWS};
pub use super::fused::DenseActivation;
use super::fused::{attention_fused, dropout_fused, linear_fused};
use super::gelu::{gelu_erf, gelu_erf_grad};

type CResult<T> = candle_core::Result<T>;

/// `acc += scale * t`, elementwise over `t` flattened (gradient accumulation). Reads a
/// contiguous f32 CPU tensor in place; other tensors go through a host copy.
pub fn add_scaled_into(t: &Tensor, acc: &mut [f32], scale: f32) -> CResult<()> {
    if t.elem_count() != acc.len() {
        bail!(
            "add_scaled_into: tensor of {} elements into a buffer of {}",
            t.elem_count(),
            acc.len()
        );
    }
    let add = |values: &[f32], acc: &mut [f32]| {
        for (a, g) in acc.iter_mut().zip(values) {
            *a += g * scale;
        }
    };
    if t.device().is_cpu() && t.dtype() == DType::F32 {
        with_cpu_f32(t, "add_scaled_into", |values| add(values, acc))
    } else {
        let values: Vec<f32> = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        add(&values, acc);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

struct LayerNormOp {
    eps: f32,
}

/// Normalise one row; returns (mean, 1/std).
#[inline]
fn row_stats(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "crossdistill-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let xs = f32_slice(s1, l1, self.name())?;
        let gamma = f32_slice(s2, l2, self.name())?;
        let beta = f32_slice(s3, l3, self.name())?;
        let hidden = gamma.len();
        if hidden == 0 || xs.len() % hidden != 0 || beta.len() != hidden {
            bail!(
                "layer_norm: input {:?} does not match gamma [{hidden}] / beta [{}]",
                l1.shape(),
                beta.len()
            );
        }
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(hidden * PAR_ROWS)
            .zip(xs.par_chunks(hidden * PAR_ROWS))
            .for_each(|(out_rows, x_rows)| {
                for (out_row, x_row) in out_rows.chunks_mut(hidden).zip(x_rows.chunks(hidden)) {
                    let (mean, rstd) = row_stats(x_row, self.eps);
                    for j in 0..hidden {
                        out_row[j] = (x_row[j] - mean) * rstd * gamma[j] + beta[j];
                    }
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let hidden = gamma.elem_count();
        let (dx, dgamma, dbeta) = with_cpu_f32(xs, self.name(), |x| {
            with_cpu_f32(gamma, self.name(), |g_w| {
                with_cpu_f32(grad, self.name(), |dy| {
                    layer_norm_backward(x, g_w, dy, hidden, self.eps)
                })
            })
        })????;
        let device = xs.device();
        Ok((
            Some(Tensor::from_vec(dx, xs.shape(), device)?),
            Some(Tensor::from_vec(dgamma, gamma.shape(), device)?),
            Some(Tensor::from_vec(dbeta, gamma.shape(), device)?),
        ))
    }
}

/// Gradients of LayerNorm: `dx = rstd (g⊙γ − mean(g⊙γ) − x̂ mean(g⊙γ⊙x̂))`, `dγ = Σ g⊙x̂`,
/// `dβ = Σ g`, summed over rows.
fn layer_norm_backward(
    xs: &[f32],
    gamma: &[f32],
    dy: &[f32],
    hidden: usize,
    eps: f32,
) -> CResult<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    if xs.len() != dy.len() || !xs.len().is_multiple_of(hidden) {
        bail!(
            "layer_norm backward: input has {} values, gradient {}",
            xs.len(),
            dy.len()
        );
    }
    let mut dx = vec![0f32; xs.len()];
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(hidden * PAR_ROWS)
        .zip(xs.par_chunks(hidden * PAR_ROWS))
        .zip(dy.par_chunks(hidden * PAR_ROWS))
        .map(|((dx_rows, x_rows), dy_rows)| {
            let mut dgamma = vec![0f32; hidden];
            let mut dbeta = vec![0f32; hidden];
            let mut xhat = vec![0f32; hidden];
            for ((dx_row, x_row), dy_row) in dx_rows
                .chunks_mut(hidden)
                .zip(x_rows.chunks(hidden))
                .zip(dy_rows.chunks(hidden))
            {
                let (mean, rstd) = row_stats(x_row, eps);
                let mut sum_gw = 0f32;
                let mut sum_gw_xhat = 0f32;
                for j in 0..hidden {
                    xhat[j] = (x_row[j] - mean) * rstd;
                    let gw = dy_row[j] * gamma[j];
                    sum_gw += gw;
                    sum_gw_xhat += gw * xhat[j];
                    dgamma[j] += dy_row[j] * xhat[j];
                    dbeta[j] += dy_row[j];
                }
                let n = hidden as f32;
                let mean_gw = sum_gw / n;
                let mean_gw_xhat = sum_gw_xhat / n;
                for j in 0..hidden {
                    dx_row[j] = rstd * (dy_row[j] * gamma[j] - mean_gw - xhat[j] * mean_gw_xhat);
                }
            }
            (dgamma, dbeta)
        })
        .collect();
    let mut dgamma = vec![0f32; hidden];
    let mut dbeta = vec![0f32; hidden];
    for (pg, pb) in partials {
        for j in 0..hidden {
            dgamma[j] += pg[j];
            dbeta[j] += pb[j];
        }
    }
    Ok((dx, dgamma, dbeta))
}

/// LayerNorm over the last dimension: `(x − mean) / sqrt(var + eps) ⊙ gamma + beta`.
pub fn layer_norm(xs: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> CResult<Tensor> {
    if xs.device().is_cpu() && xs.dtype() == DType::F32 {
        let xs = xs.contiguous()?;
        return xs.apply_op3(gamma, beta, LayerNormOp { eps: eps as f32 });
    }
    layer_norm_composed(xs, gamma, beta, eps)
}

/// LayerNorm from differentiable candle ops (any device). A bf16/f16 input is normalised in
/// f32 (mean and variance of a row lose too much in 8 or 11 bits of mantissa) and the result
/// cast back to the input's dtype, as PyTorch's reduced-precision `layer_norm` does.
pub fn layer_norm_composed(
    xs: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> CResult<Tensor> {
    if xs.dtype() != DType::F32 {
        let f32 = |t: &Tensor| t.to_dtype(DType::F32);
        return layer_norm_composed(&f32(xs)?, &f32(gamma)?, &f32(beta)?, eps)?
            .to_dtype(xs.dtype());
    }
    let mean = xs.mean_keepdim(D::Minus1)?;
    let centered = xs.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    normed.broadcast_mul(gamma)?.broadcast_add(beta)
}

// ---------------------------------------------------------------------------------------------
// Masked softmax

struct MaskedSoftmaxOp;

impl CustomOp2 for MaskedSoftmaxOp {
    fn name(&self) -> &'static str {
        "crossdistill-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let scores = f32_slice(s1, l1, self.name())?;
        let mask = f32_slice(s2, l2, self.name())?;
        let dims = l1.shape().dims();
        let (batch, keys) = l2.shape().dims2()?;
        let keys_in = *dims.last().unwrap_or(&0);
        if keys_in != keys || dims.first() != Some(&batch) {
            bail!("masked_softmax: scores {dims:?} do not match the key mask [{batch}, {keys}]");
        }
        let rows_per_batch = scores.len() / (batch * keys).max(1);
        let mut out = vec![0f32; scores.len()];
        out.par_chunks_mut(keys)
            .zip(scores.par_chunks(keys))
            .enumerate()
            .for_each(|(row, (out_row, score_row))| {
                let b = row / rows_per_batch.max(1);
                let mask_row = &mask[b * keys..(b + 1) * keys];
                let mut max = f32::NEG_INFINITY;
                for j in 0..keys {
                    if mask_row[j] > 0.0 && score_row[j] > max {
                        max = score_row[j];
                    }
                }
                let mut sum = 0f32;
                for j in 0..keys {
                    let e = if mask_row[j] > 0.0 {
                        (score_row[j] - max).exp()
                    } else {
                        0.0
                    };
                    out_row[j] = e;
                    sum += e;
                }
                if sum > 0.0 {
                    let inv = 1.0 / sum;
                    out_row.iter_mut().for_each(|v| *v *= inv);
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        _mask: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        let keys = res.dim(D::Minus1)?;
        let dx = with_cpu_f32(res, self.name(), |ys| {
            with_cpu_f32(grad, self.name(), |gs| softmax_backward(ys, gs, keys))
        })??;
        Ok((Some(Tensor::from_vec(dx, res.shape(), res.device())?), None))
    }
}

/// `dx = y ⊙ (g − Σ g⊙y)` per row of length `keys`.
fn softmax_backward(ys: &[f32], gs: &[f32], keys: usize) -> Vec<f32> {
    let mut dx = vec![0f32; ys.len()];
    dx.par_chunks_mut(keys)
        .zip(ys.par_chunks(keys).zip(gs.par_chunks(keys)))
        .for_each(|(dx_row, (y_row, g_row))| {
            let dot: f32 = y_row.iter().zip(g_row).map(|(y, g)| y * g).sum();
            for j in 0..keys {
                dx_row[j] = y_row[j] * (g_row[j] - dot);
            }
        });
    dx
}

/// Softmax over the last dimension of `scores` `(batch, ..., keys)`, where keys with
/// `key_mask[b, k] == 0` get probability 0. `key_mask` is f32 `(batch, keys)`.
pub fn masked_softmax(scores: &Tensor, key_mask: &Tensor) -> CResult<Tensor> {
    if scores.device().is_cpu() && scores.dtype() == DType::F32 {
        let scores = scores.contiguous()?;
        let key_mask = key_mask.contiguous()?;
        return scores.apply_op2(&key_mask, MaskedSoftmaxOp);
    }
    masked_softmax_composed(scores, key_mask)
}

/// Masked softmax from differentiable candle ops (any device). bf16/f16 scores are
/// exponentiated and normalised in f32 and the probabilities cast back to their dtype.
pub fn masked_softmax_composed(scores: &Tensor, key_mask: &Tensor) -> CResult<Tensor> {
    if scores.dtype() != DType::F32 {
        return masked_softmax_composed(&scores.to_dtype(DType::F32)?, key_mask)?
            .to_dtype(scores.dtype());
    }
    let (batch, keys) = key_mask.dims2()?;
    let mut bias_shape = vec![batch];
    bias_shape.extend(std::iter::repeat_n(1, scores.rank() - 2));
    bias_shape.push(keys);
    // 0 where attended, a large negative number where masked (as transformers does).
    let bias = ((key_mask.to_dtype(scores.dtype())? - 1.0)? * 1e30)?.reshape(bias_shape)?;
    let scores = scores.broadcast_add(&bias)?;
    let max = scores.max_keepdim(D::Minus1)?.detach();
    let exp = scores.broadcast_sub(&max)?.exp()?;
    exp.broadcast_div(&exp.sum_keepdim(D::Minus1)?)
}

// ---------------------------------------------------------------------------------------------
// Bias + exact GELU

struct BiasGeluOp;

impl CustomOp2 for BiasGeluOp {
    fn name(&self) -> &'static str {
        "crossdistill-bias-gelu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let xs = f32_slice(s1, l1, self.name())?;
        let bias = f32_slice(s2, l2, self.name())?;
        let width = bias.len();
        if width == 0 || xs.len() % width != 0 {
            bail!(
                "bias_gelu: input {:?} does not match bias [{width}]",
                l1.shape()
            );
        }
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(width * PAR_ROWS)
            .zip(xs.par_chunks(width * PAR_ROWS))
            .for_each(|(out_rows, x_rows)| {
                for (out_row, x_row) in out_rows.chunks_mut(width).zip(x_rows.chunks(width)) {
                    for j in 0..width {
                        out_row[j] = gelu_erf(x_row[j] + bias[j]);
                    }
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        let width = bias.elem_count();
        let (dx, dbias) = with_cpu_f32(xs, self.name(), |x| {
            with_cpu_f32(bias, self.name(), |b| {
                with_cpu_f32(grad, self.name(), |g| {
                    let mut dx = vec![0f32; x.len()];
                    let partials: Vec<Vec<f32>> = dx
                        .par_chunks_mut(width * PAR_ROWS)
                        .zip(x.par_chunks(width * PAR_ROWS))
                        .zip(g.par_chunks(width * PAR_ROWS))
                        .map(|((dx_rows, x_rows), g_rows)| {
                            let mut dbias = vec![0f32; width];
                            for ((dx_row, x_row), g_row) in dx_rows
                                .chunks_mut(width)
                                .zip(x_rows.chunks(width))
                                .zip(g_rows.chunks(width))
                            {
                                for j in 0..width {
                                    let d = g_row[j] * gelu_erf_grad(x_row[j] + b[j]);
                                    dx_row[j] = d;
                                    dbias[j] += d;
                                }
                            }
                            dbias
                        })
                        .collect();
                    let mut dbias = vec![0f32; width];
                    for partial in partials {
                        for j in 0..width {
                            dbias[j] += partial[j];
                        }
                    }
                    (dx, dbias)
                })
            })
        })???;
        Ok((
            Some(Tensor::from_vec(dx, xs.shape(), xs.device())?),
            Some(Tensor::from_vec(dbias, bias.shape(), bias.device())?),
        ))
    }
}

/// `gelu(xs + bias)` with the exact (erf) GELU, `bias` broadcast over the last dimension.
pub fn bias_gelu(xs: &Tensor, bias: &Tensor) -> CResult<Tensor> {
    if xs.device().is_cpu() && xs.dtype() == DType::F32 {
        let xs = xs.contiguous()?;
        return xs.apply_op2(bias, BiasGeluOp);
    }
    xs.broadcast_add(bias)?.gelu_erf()
}

// ---------------------------------------------------------------------------------------------
// Linear and dropout

/// `xs Wᵀ + b` for `xs` of shape `(..., in)` and `W` of shape `(out, in)`.
pub fn linear(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> CResult<Tensor> {
    if let Some(bias) = bias {
        if is_cpu_f32(xs) {
            return linear_fused(xs, weight, bias, DenseActivation::Identity, None);
        }
    }
    linear_composed(xs, weight, bias)
}

/// [`linear`] from plain candle ops (any device).
pub fn linear_composed(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> CResult<Tensor> {
    let dims = xs.dims();
    let in_dim = *dims.last().unwrap_or(&0);
    let rows = xs.elem_count() / in_dim.max(1);
    let flat = xs.reshape((rows, in_dim))?;
    let mut out = flat.matmul(&weight.t()?)?;
    if let Some(bias) = bias {
        out = out.broadcast_add(bias)?;
    }
    let mut out_dims = dims.to_vec();
    if let Some(last) = out_dims.last_mut() {
        *last = weight.dim(0)?;
    }
    out.reshape(out_dims)
}

fn is_cpu_f32(xs: &Tensor) -> bool {
    xs.device().is_cpu() && xs.dtype() == DType::F32
}

/// `activation(xs Wᵀ + b)`, then times `dropout` (per-element multipliers from
/// [`Dropout::mask`]) when given: a dense layer with its activation and dropout, one fused op
/// on CPU.
pub fn dense(
    xs: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    activation: DenseActivation,
    dropout: Option<Vec<f32>>,
) -> CResult<Tensor> {
    if is_cpu_f32(xs) {
        return linear_fused(xs, weight, bias, activation, dropout);
    }
    let zs = linear_composed(xs, weight, Some(bias))?;
    let ys = match activation {
        DenseActivation::Identity => zs,
        DenseActivation::GeluErf => zs.gelu_erf()?,
    };
    apply_mask(&ys, dropout)
}

fn apply_mask(xs: &Tensor, mask: Option<Vec<f32>>) -> CResult<Tensor> {
    match mask {
        Some(mask) => {
            let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
            xs.mul(&mask)
        }
        None => Ok(xs.clone()),
    }
}

/// Multi-head attention context `(B, L, H)` from the projections `query`, `key`, `value`
/// (each `(B, L, H)`; head `h` is columns `h·d..(h+1)·d` with `d = H / heads`): per head
/// `softmax(scale · Q Kᵀ)` over the keys with `key_mask[b, k] > 0` (`key_mask` f32 `(B, L)`),
/// times `dropout` (`(B, heads, L, L)` multipliers from [`Dropout::mask`]) when given, times
/// `V`. With `window`, query `i` attends only to keys `j` with `|i − j| <= window` (a banded
/// mask: ModernBERT's sliding-window layers). One fused op on CPU (heads in parallel, no
/// head-split copies).
#[allow(clippy::too_many_arguments)]
pub fn attention(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    key_mask: &Tensor,
    heads: usize,
    scale: f64,
    window: Option<usize>,
    dropout: Option<Vec<f32>>,
) -> CResult<Tensor> {
    if is_cpu_f32(query) {
        return attention_fused(query, key, value, key_mask, heads, scale, window, dropout);
    }
    let (b_sz, seq_len, hidden) = query.dims3()?;
    let head_dim = hidden / heads.max(1);
    let split = |t: &Tensor| -> CResult<Tensor> {
        t.reshape((b_sz, seq_len, heads, head_dim))?
            .transpose(1, 2)?
            .contiguous()
    };
    let mut scores = (split(query)?.matmul(&split(key)?.t()?)? * scale)?;
    if let Some(window) = window {
        let bias = band_bias(seq_len, window, query.device())?.to_dtype(scores.dtype())?;
        scores = scores.broadcast_add(&bias)?;
    }
    let probs = apply_mask(&masked_softmax(&scores, key_mask)?, dropout)?;
    probs
        .matmul(&split(value)?)?
        .transpose(1, 2)?
        .reshape((b_sz, seq_len, hidden))
}

/// `(L, L)` additive bias: 0 where `|i − j| <= window`, a large negative number elsewhere.
fn band_bias(seq_len: usize, window: usize, device: &candle_core::Device) -> CResult<Tensor> {
    let values: Vec<f32> = (0..seq_len)
        .flat_map(|i| (0..seq_len).map(move |j| if i.abs_diff(j) <= window { 0.0 } else { -1e30 }))
        .collect();
    Tensor::from_vec(values, (seq_len, seq_len), device)
}

/// A seedable stream of dropout masks.
///
/// Two streams created with the same seed produce the same masks for the same sequence of
/// calls, so a forward pass can be replayed exactly (GradCache, resume).
#[derive(Debug, Clone)]
pub struct Dropout {
    state: u64,
}

impl Dropout {
    /// A stream starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        // SplitMix64: fast, good enough for Bernoulli masks, and reproducible everywhere.
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next `n` dropout multipliers for probability `p`: 0 with probability `p`, else
    /// `1 / (1 − p)`; `None` when `p <= 0` (nothing dropped, nothing drawn).
    pub fn mask(&mut self, n: usize, p: f64) -> Option<Vec<f32>> {
        if p <= 0.0 {
            return None;
        }
        if p >= 1.0 {
            return Some(vec![0.0; n]);
        }
        let scale = (1.0 / (1.0 - p)) as f32;
        // Keep an element when its 32-bit draw is at or above p * 2^32.
        let threshold = (p * 4_294_967_296.0) as u64;
        let mut mask = vec![0f32; n];
        let mut pairs = mask.chunks_exact_mut(2);
        for pair in &mut pairs {
            let bits = self.next_u64();
            pair[0] = if bits & 0xFFFF_FFFF >= threshold {
                scale
            } else {
                0.0
            };
            pair[1] = if bits >> 32 >= threshold { scale } else { 0.0 };
        }
        if let [last] = pairs.into_remainder() {
            // The upper half of this draw is discarded, as every odd-length mask always did.
            let bits = self.next_u64();
            *last = if bits & 0xFFFF_FFFF >= threshold {
                scale
            } else {
                0.0
            };
        }
        Some(mask)
    }

    /// Zero each element with probability `p` and scale the rest by `1 / (1 − p)`.
    pub fn apply(&mut self, xs: &Tensor, p: f64) -> CResult<Tensor> {
        if p >= 1.0 {
            return xs.zeros_like();
        }
        match self.mask(xs.elem_count(), p) {
            Some(mask) if is_cpu_f32(xs) => dropout_fused(xs, mask),
            mask => apply_mask(xs, mask),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gradient_check::check_grad;
    use candle_core::Device;

    #[test]
    fn add_scaled_into_matches_a_host_copy_for_every_layout() {
        let dev = Device::Cpu;
        let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        let t = Tensor::from_vec(values.clone(), (3, 4), &dev).unwrap();
        let layouts = [
            t.clone(),
            t.t().unwrap(),                  // strided view
            t.narrow(1, 1, 2).unwrap(),      // offset view
            t.to_dtype(DType::F64).unwrap(), // other dtype
        ];
        for view in layouts {
            let host: Vec<f32> = view
                .flatten_all()
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec1()
                .unwrap();
            let mut acc: Vec<f32> = (0..host.len()).map(|i| i as f32).collect();
            let expected: Vec<f32> = acc.iter().zip(&host).map(|(a, g)| a + 0.25 * g).collect();
            add_scaled_into(&view, &mut acc, 0.25).unwrap();
            assert_eq!(acc, expected, "layout {:?}", view.layout());
        }
        let mut short = vec![0f32; 5];
        let error = add_scaled_into(&t, &mut short, 1.0)
            .unwrap_err()
            .to_string();
        assert!(error.contains("12 elements into a buffer of 5"), "{error}");
    }

    fn sample(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Dropout::new(seed);
        (0..n)
            .map(|_| (rng.next_u64() % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn layer_norm_matches_composed_forward() {
        let dev = Device::Cpu;
        let xs = Tensor::from_vec(sample(3 * 4 * 8, 1), (3, 4, 8), &dev).unwrap();
        let gamma = Tensor::from_vec(sample(8, 2), 8, &dev).unwrap();
        let beta = Tensor::from_vec(sample(8, 3), 8, &dev).unwrap();
        let fused = layer_norm(&xs, &gamma, &beta, 1e-5).unwrap();
        let composed = layer_norm_composed(&xs, &gamma, &beta, 1e-5).unwrap();
        let diff = (fused - composed)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "max diff {diff}");
    }

    #[test]
    fn layer_norm_gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let gamma_values = sample(6, 5);
        let beta_values = sample(6, 6);
        let x_values = sample(4 * 6, 7);
        // w.r.t. x
        let gamma = Tensor::from_vec(gamma_values.clone(), 6, &dev).unwrap();
        let beta = Tensor::from_vec(beta_values.clone(), 6, &dev).unwrap();
        check_grad(
            &x_values,
            &[4, 6],
            &|x| layer_norm(x, &gamma, &beta, 1e-5),
            2e-2,
        );
        // w.r.t. gamma and beta
        let xs = Tensor::from_vec(x_values.clone(), (4, 6), &dev).unwrap();
        check_grad(
            &gamma_values,
            &[6],
            &|g| layer_norm(&xs, g, &beta, 1e-5),
            2e-2,
        );
        check_grad(
            &beta_values,
            &[6],
            &|b| layer_norm(&xs, &gamma, b, 1e-5),
            2e-2,
        );
    }

    #[test]
    fn masked_softmax_matches_composed_and_zeroes_masked_keys() {
        let dev = Device::Cpu;
        let scores = Tensor::from_vec(sample(2 * 3 * 2 * 4, 9), (2, 3, 2, 4), &dev).unwrap();
        let mask = Tensor::from_vec(vec![1f32, 1., 1., 0., 1., 1., 0., 0.], (2, 4), &dev).unwrap();
        let fused = masked_softmax(&scores, &mask).unwrap();
        let composed = masked_softmax_composed(&scores, &mask).unwrap();
        let diff = (&fused - composed)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-6, "max diff {diff}");
        let values = fused.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // batch 0 masks key 3; batch 1 masks keys 2 and 3.
        for (row, chunk) in values.chunks(4).enumerate() {
            let sum: f32 = chunk.iter().sum();
            assert!((sum - 1.0).abs() < 1e-6);
            if row < 6 {
                assert_eq!(chunk[3], 0.0);
            } else {
                assert_eq!(chunk[2], 0.0);
                assert_eq!(chunk[3], 0.0);
            }
        }
    }

    #[test]
    fn masked_softmax_gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let mask = Tensor::from_vec(vec![1f32, 1., 0., 1., 1., 1.], (2, 3), &dev).unwrap();
        check_grad(
            &sample(2 * 2 * 3, 11),
            &[2, 2, 3],
            &|s| masked_softmax(s, &mask),
            2e-2,
        );
    }

    #[test]
    fn bias_gelu_matches_candle_and_finite_differences() {
        let dev = Device::Cpu;
        let xs = Tensor::from_vec(sample(3 * 5, 21), (3, 5), &dev).unwrap();
        let bias = Tensor::from_vec(sample(5, 22), 5, &dev).unwrap();
        let fused = bias_gelu(&xs, &bias).unwrap();
        let reference = xs.broadcast_add(&bias).unwrap().gelu_erf().unwrap();
        let diff = (fused - reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-6, "max diff {diff}");
        let bias_values = sample(5, 22);
        let x_values = sample(3 * 5, 21);
        check_grad(&x_values, &[3, 5], &|x| bias_gelu(x, &bias), 2e-2);
        check_grad(&bias_values, &[5], &|b| bias_gelu(&xs, b), 2e-2);
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn dense_matches_composed_ops_and_finite_differences() {
        let dev = Device::Cpu;
        let (rows, in_dim, out_dim) = (6, 5, 4);
        let x_values = sample(rows * in_dim, 31);
        let w_values = sample(out_dim * in_dim, 32);
        let b_values = sample(out_dim, 33);
        let xs = Tensor::from_vec(x_values.clone(), (2, 3, in_dim), &dev).unwrap();
        let weight = Tensor::from_vec(w_values.clone(), (out_dim, in_dim), &dev).unwrap();
        let bias = Tensor::from_vec(b_values.clone(), out_dim, &dev).unwrap();
        let mask = Dropout::new(1).mask(rows * out_dim, 0.3).unwrap();
        for activation in [DenseActivation::Identity, DenseActivation::GeluErf] {
            let fused = dense(&xs, &weight, &bias, activation, Some(mask.clone())).unwrap();
            let composed = linear_composed(&xs, &weight, Some(&bias)).unwrap();
            let composed = match activation {
                DenseActivation::Identity => composed,
                DenseActivation::GeluErf => composed.gelu_erf().unwrap(),
            };
            let composed = apply_mask(&composed, Some(mask.clone())).unwrap();
            assert_eq!(fused.dims(), &[2, 3, out_dim]);
            let diff = max_diff(&fused, &composed);
            assert!(diff < 1e-5, "{activation:?}: max diff {diff}");
            let run =
                |x: &Tensor, w: &Tensor, b: &Tensor| dense(x, w, b, activation, Some(mask.clone()));
            check_grad(
                &x_values,
                &[2, 3, in_dim],
                &|x| run(x, &weight, &bias),
                2e-2,
            );
            check_grad(&w_values, &[out_dim, in_dim], &|w| run(&xs, w, &bias), 2e-2);
            check_grad(&b_values, &[out_dim], &|b| run(&xs, &weight, b), 2e-2);
        }
    }

    #[test]
    fn attention_matches_composed_ops_and_finite_differences() {
        let dev = Device::Cpu;
        let (batch, seq_len, heads, head_dim) = (2, 4, 2, 3);
        let hidden = heads * head_dim;
        let n = batch * seq_len * hidden;
        let shape = (batch, seq_len, hidden);
        let values: Vec<Vec<f32>> = (0..3).map(|i| sample(n, 40 + i)).collect();
        let [q, k, v] =
            [0, 1, 2].map(|i| Tensor::from_vec(values[i].clone(), shape, &dev).unwrap());
        // Batch 0 attends to all keys, batch 1 only to the first three (so that with a window
        // of one key either side every query still sees a key).
        let key_mask = Tensor::from_vec(
            vec![1f32, 1., 1., 1., 1., 1., 1., 0.],
            (batch, seq_len),
            &dev,
        )
        .unwrap();
        let mask = Dropout::new(2).mask(batch * heads * seq_len * seq_len, 0.25);
        let scale = 1.0 / (head_dim as f64).sqrt();
        // Global attention and a band of one key either side (ModernBERT's sliding window).
        let cases = [
            (None, None),
            (None, mask.clone()),
            (Some(1), None),
            (Some(1), mask),
        ];
        for (window, dropout) in cases {
            let run = |q: &Tensor, k: &Tensor, v: &Tensor| {
                attention(q, k, v, &key_mask, heads, scale, window, dropout.clone())
            };
            let fused = run(&q, &k, &v).unwrap();
            // The composed path: head split, matmuls, masked softmax, dropout, merge.
            let split = |t: &Tensor| {
                t.reshape((batch, seq_len, heads, head_dim))
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .contiguous()
                    .unwrap()
            };
            let mut scores = (split(&q).matmul(&split(&k).t().unwrap()).unwrap() * scale).unwrap();
            if let Some(window) = window {
                scores = scores
                    .broadcast_add(&band_bias(seq_len, window, &dev).unwrap())
                    .unwrap();
            }
            let probs = masked_softmax_composed(&scores, &key_mask).unwrap();
            let probs = apply_mask(&probs, dropout.clone()).unwrap();
            let composed = probs
                .matmul(&split(&v))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .reshape(shape)
                .unwrap();
            let diff = max_diff(&fused, &composed);
            assert!(diff < 1e-6, "max diff {diff}");
            let dims = [batch, seq_len, hidden];
            check_grad(&values[0], &dims, &|x| run(x, &k, &v), 2e-2);
            check_grad(&values[1], &dims, &|x| run(&q, x, &v), 2e-2);
            check_grad(&values[2], &dims, &|x| run(&q, &k, x), 2e-2);
        }
    }

    #[test]
    fn dropout_gradient_is_the_mask() {
        let x_values = sample(10, 51);
        let mask = Dropout::new(5).mask(10, 0.5).unwrap();
        check_grad(&x_values, &[2, 5], &|x| Dropout::new(5).apply(x, 0.5), 2e-2);
        let xs = Tensor::from_vec(x_values.clone(), 10, &Device::Cpu).unwrap();
        let dropped = Dropout::new(5)
            .apply(&xs, 0.5)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for ((d, x), m) in dropped.iter().zip(&x_values).zip(&mask) {
            assert_eq!(*d, x * m);
        }
    }

    #[test]
    fn dropout_is_reproducible_and_scaled() {
        let dev = Device::Cpu;
        let xs = Tensor::ones((1000,), DType::F32, &dev).unwrap();
        let a = Dropout::new(3)
            .apply(&xs, 0.25)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = Dropout::new(3)
            .apply(&xs, 0.25)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b);
        let zeros = a.iter().filter(|v| **v == 0.0).count();
        assert!((200..300).contains(&zeros), "{zeros} zeros for p = 0.25");
        assert!(a
            .iter()
            .all(|v| *v == 0.0 || (*v - 1.0 / 0.75).abs() < 1e-6));
    }
}
