//! ModernBERT's attention from its packed `Wqkv` projection: the `(B, L, 3H)` output of one
//! linear layer (query, key and value side by side) → rotary embedding of the query and key →
//! multi-head attention (banded for sliding-window layers) → the `(B, L, H)` context.
//!
//! On CPU f32 this is one op over the packed tensor. The backward pass writes the query, key and
//! value gradients straight into one `(B, L, 3H)` buffer (un-rotating the first two in place),
//! so the projection's backward is one product with `Wqkv` and the graph holds no per-projection
//! nodes: splitting the packed output with `narrow` would give each third a zero-padded
//! `(B, L, 3H)` gradient to add, and three separate projections would need three products and
//! two adds for the input's gradient. The rotated query and key are recomputed in the backward
//! pass (a cheap pass over the input), not kept; the probabilities are kept, as in
//! [`super::fused::attention_fused`].

use std::sync::Mutex;

use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, D};

use super::cpu_f32::{f32_slice, with_cpu_f32, written_f32};
use super::fused::{key_mask_values, AttentionCore, Operand, Place, SharedMut, Target};
use super::ops::attention;
use super::rotary::{check, rotary_composed, RotaryTable};

type CResult<T> = candle_core::Result<T>;

struct RotaryAttentionOp {
    core: AttentionCore,
    table: RotaryTable,
    keep: bool,
    /// `(B, heads, L, L)` probabilities before dropout, for the backward pass.
    probs: Mutex<Option<Vec<f32>>>,
}

impl RotaryAttentionOp {
    /// `(B, L, H)` of a packed `(B, L, 3H)` shape.
    fn dims(&self, packed: &Shape) -> CResult<(usize, usize, usize)> {
        let (batch, seq_len, width) = packed.dims3()?;
        if width == 0 || !width.is_multiple_of(3) {
            bail!("rotary attention: the packed projection {packed:?} is not (B, L, 3·H)");
        }
        check(&self.table, seq_len, width / 3)?;
        Ok((batch, seq_len, width / 3))
    }

    /// The rotated query and key of the packed projection, dense `(B, L, H)` each.
    fn rotated(&self, qkv: &[f32], hidden: usize) -> (Vec<f32>, Vec<f32>) {
        let rs = 3 * hidden;
        rayon::join(
            || self.table.rotated(qkv, Place { col: 0, rs }, hidden, false),
            || {
                self.table
                    .rotated(qkv, Place { col: hidden, rs }, hidden, false)
            },
        )
    }
}

/// The attention operands: the rotated query and key (dense) and the value in the packed buffer.
fn operands<'a>(q: &'a [f32], k: &'a [f32], qkv: &'a [f32], hidden: usize) -> [Operand<'a>; 3] {
    let dense = Place::dense(hidden);
    [
        Operand {
            data: q,
            place: dense,
        },
        Operand {
            data: k,
            place: dense,
        },
        Operand {
            data: qkv,
            place: Place {
                col: 2 * hidden,
                rs: 3 * hidden,
            },
        },
    ]
}

impl CustomOp1 for RotaryAttentionOp {
    fn name(&self) -> &'static str {
        "crossdistill-rotary-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CResult<(CpuStorage, Shape)> {
        let (batch, seq_len, hidden) = self.dims(layout.shape())?;
        let g = self.core.geometry(batch, seq_len, hidden)?;
        let qkv = f32_slice(storage, layout, self.name())?;
        let (q, k) = self.rotated(qkv, hidden);
        let [q, k, v] = operands(&q, &k, qkv, hidden);
        let (out, probs) = self.core.forward(&g, q, k, v, self.keep);
        if probs.is_some() {
            *self.probs.lock().expect("no panic while holding it") = probs;
        }
        Ok((CpuStorage::F32(out), Shape::from((batch, seq_len, hidden))))
    }

    fn bwd(&self, qkv: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        let (batch, seq_len, hidden) = self.dims(qkv.shape())?;
        let g = self.core.geometry(batch, seq_len, hidden)?;
        let kept = self.probs.lock().expect("no panic while holding it");
        let Some(probs) = kept.as_ref() else {
            bail!("rotary attention: backward through a forward pass that recorded no graph");
        };
        let rs = 3 * hidden;
        let mut dqkv = with_cpu_f32(qkv, self.name(), |packed| {
            let (q, k) = self.rotated(packed, hidden);
            with_cpu_f32(grad, self.name(), |dctx| {
                // SAFETY: the three targets are the column blocks 0..H, H..2H and 2H..3H of
                // the (B, L, 3H) buffer: disjoint, together the whole buffer, which the
                // backward pass writes (not reads) and nothing else touches meanwhile.
                unsafe {
                    written_f32(3 * g.elements(), |ptr| {
                        let target = |col: usize| Target {
                            ptr: SharedMut(ptr),
                            place: Place { col, rs },
                        };
                        let [q, k, v] = operands(&q, &k, packed, hidden);
                        self.core.backward(
                            &g,
                            probs,
                            q,
                            k,
                            v,
                            dctx,
                            target(0),
                            target(hidden),
                            target(2 * hidden),
                        )
                    })
                }
            })
        })??;
        // The rotation is orthogonal: the gradient before it is the gradient after it rotated back.
        self.table
            .rotate_in_place(&mut dqkv, Place { col: 0, rs }, hidden, true);
        self.table
            .rotate_in_place(&mut dqkv, Place { col: hidden, rs }, hidden, true);
        Ok(Some(Tensor::from_vec(dqkv, qkv.shape(), qkv.device())?))
    }
}

/// The attention context `(B, L, H)` of the packed projection `qkv` `(B, L, 3H)` (query, key,
/// value), with the rotary embedding of `table` applied to the query and key: per head,
/// `softmax(scale · Q Kᵀ)` over the keys with `key_mask[b, k] > 0`, times `dropout`
/// (`(B, heads, L, L)` multipliers) when given, times `V`; with `window`, query `i` sees only
/// keys `j` with `|i − j| <= window`. One fused op on CPU f32; composed candle ops elsewhere.
#[allow(clippy::too_many_arguments)]
pub fn rotary_attention(
    qkv: &Tensor,
    table: &RotaryTable,
    key_mask: &Tensor,
    heads: usize,
    scale: f64,
    window: Option<usize>,
    dropout: Option<Vec<f32>>,
) -> CResult<Tensor> {
    if qkv.device().is_cpu() && qkv.dtype() == DType::F32 {
        let op = RotaryAttentionOp {
            core: AttentionCore {
                heads,
                scale: scale as f32,
                key_mask: key_mask_values(key_mask)?,
                window,
                dropout,
            },
            table: table.clone(),
            keep: qkv.track_op(),
            probs: Mutex::new(None),
        };
        return qkv.contiguous()?.apply_op1(op);
    }
    rotary_attention_composed(qkv, table, key_mask, heads, scale, window, dropout)
}

/// [`rotary_attention`] from the projections split with `narrow` (any device).
#[allow(clippy::too_many_arguments)]
pub fn rotary_attention_composed(
    qkv: &Tensor,
    table: &RotaryTable,
    key_mask: &Tensor,
    heads: usize,
    scale: f64,
    window: Option<usize>,
    dropout: Option<Vec<f32>>,
) -> CResult<Tensor> {
    let hidden = qkv.dim(D::Minus1)? / 3;
    let part = |i: usize| qkv.narrow(D::Minus1, i * hidden, hidden)?.contiguous();
    let query = rotary_composed(&part(0)?, table)?;
    let key = rotary_composed(&part(1)?, table)?;
    attention(
        &query,
        &key,
        &part(2)?,
        key_mask,
        heads,
        scale,
        window,
        dropout,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gradient_check::check_grad;
    use crate::model::rotary::rotary;
    use candle_core::{Device, Var};

    fn sample(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761) ^ seed.wrapping_mul(40503)) % 2001) as f32
                    / 1000.0
                    - 1.0
            })
            .collect()
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
            .to_scalar()
            .unwrap()
    }

    /// The packed op against the separate ops it replaces (narrow → fused rotary → fused
    /// attention), values and gradients, with padding, a window and dropout.
    #[test]
    fn packed_equals_the_separate_ops() {
        let dev = Device::Cpu;
        let (b, l, h, heads) = (2, 6, 8, 2);
        let table = RotaryTable::new(l, h / heads, 160.0);
        let mask = Tensor::from_vec(
            vec![1f32, 1., 1., 1., 1., 1., 1., 1., 1., 1., 0., 0.],
            (b, l),
            &dev,
        )
        .unwrap();
        let drop: Vec<f32> = (0..b * heads * l * l)
            .map(|i| if i % 7 == 3 { 0.0 } else { 1.25 })
            .collect();
        for window in [None, Some(2)] {
            for dropout in [None, Some(drop.clone())] {
                let var = Var::from_vec(sample(b * l * 3 * h, 5), (b, l, 3 * h), &dev).unwrap();
                let weights = Tensor::from_vec(sample(b * l * h, 9), (b, l, h), &dev).unwrap();
                let packed = rotary_attention(
                    var.as_tensor(),
                    &table,
                    &mask,
                    heads,
                    0.5,
                    window,
                    dropout.clone(),
                )
                .unwrap();
                let part = |i: usize| var.as_tensor().narrow(2, i * h, h).unwrap();
                let separate = attention(
                    &rotary(&part(0), &table).unwrap(),
                    &rotary(&part(1), &table).unwrap(),
                    &part(2),
                    &mask,
                    heads,
                    0.5,
                    window,
                    dropout.clone(),
                )
                .unwrap();
                assert!(max_diff(&packed, &separate) < 1e-6);
                let grad = |out: &Tensor| {
                    let loss = out.mul(&weights).unwrap().sum_all().unwrap();
                    loss.backward()
                        .unwrap()
                        .get(var.as_tensor())
                        .unwrap()
                        .clone()
                };
                let (gp, gs) = (grad(&packed), grad(&separate));
                assert!(max_diff(&gp, &gs) < 1e-6, "{window:?}");
                // The composed fallback (any device) agrees too.
                let composed = rotary_attention_composed(
                    var.as_tensor(),
                    &table,
                    &mask,
                    heads,
                    0.5,
                    window,
                    dropout,
                )
                .unwrap();
                assert!(max_diff(&packed, &composed) < 1e-6);
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let (b, l, h, heads) = (1, 4, 8, 2);
        let table = RotaryTable::new(l, h / heads, 100.0);
        let mask = Tensor::from_vec(vec![1f32, 1., 1., 0.], (b, l), &dev).unwrap();
        for window in [None, Some(1)] {
            check_grad(
                &sample(b * l * 3 * h, 3),
                &[b, l, 3 * h],
                &|t| rotary_attention(t, &table, &mask, heads, 0.7, window, None),
                2e-2,
            );
        }
    }

    #[test]
    fn a_width_that_is_not_three_projections_is_an_error() {
        let dev = Device::Cpu;
        let table = RotaryTable::new(3, 4, 100.0);
        let qkv = Tensor::zeros((1, 3, 10), DType::F32, &dev).unwrap();
        let mask = Tensor::ones((1, 3), DType::F32, &dev).unwrap();
        let err = rotary_attention(&qkv, &table, &mask, 1, 1.0, None, None).unwrap_err();
        assert!(err.to_string().contains("not (B, L, 3·H)"), "{err}");
    }
}
