//! Rotary position embeddings (RoPE) as transformers' ModernBERT applies them: within each head of
//! width `d`, dimension `k < d/2` and `k + d/2` are rotated together by the angle
//! `position · θ^(−2k/d)` (`q·cos + rotate_half(q)·sin`).
//!
//! The rotation is linear and orthogonal, so its backward pass is the rotation by the opposite
//! angle: one fused CPU op each way, no intermediates kept.

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use super::cpu_f32::{f32_slice, with_cpu_f32};
use super::fused::Place;

type CResult<T> = candle_core::Result<T>;

/// The cosines and sines of one sequence length, head width and theta: `(L, d/2)` each.
#[derive(Debug, Clone)]
pub struct RotaryTable {
    seq_len: usize,
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RotaryTable {
    /// Angles for positions `0..seq_len` and heads of width `head_dim` (even), computed in f32
    /// as transformers does: `inv_freq[k] = 1 / θ^(2k/d)`, `angle = position · inv_freq[k]`.
    pub fn new(seq_len: usize, head_dim: usize, theta: f64) -> Self {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|k| 1.0 / (theta as f32).powf((2 * k) as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(seq_len * half);
        let mut sin = Vec::with_capacity(seq_len * half);
        for position in 0..seq_len {
            for &f in &inv_freq {
                let angle = position as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Self {
            seq_len,
            half,
            cos,
            sin,
        }
    }

    /// The cosines and signed sines of the token in row `token` of a `(B, L, ·)` buffer.
    fn angles(&self, token: usize, inverse: bool) -> (&[f32], &[f32], f32) {
        let position = token % self.seq_len;
        let span = position * self.half..(position + 1) * self.half;
        let sign = if inverse { -1.0 } else { 1.0 };
        (&self.cos[span.clone()], &self.sin[span], sign)
    }

    /// The `(B, L, H)` projection at `place` of `xs` (`H` = heads × `2·half`), rotated by
    /// `+angle` or, for the backward pass, by `−angle`, as a dense `(B, L, H)` buffer.
    pub(super) fn rotated(
        &self,
        xs: &[f32],
        place: Place,
        hidden: usize,
        inverse: bool,
    ) -> Vec<f32> {
        let half = self.half;
        let mut out = vec![0f32; xs.len() / place.rs * hidden];
        out.par_chunks_mut(hidden)
            .zip(xs.par_chunks(place.rs))
            .enumerate()
            .for_each(|(token, (out_row, row))| {
                let (cos, sin, sign) = self.angles(token, inverse);
                let row = &row[place.col..place.col + hidden];
                for (out_head, head) in out_row
                    .chunks_exact_mut(2 * half)
                    .zip(row.chunks_exact(2 * half))
                {
                    for k in 0..half {
                        let (x1, x2) = (head[k], head[k + half]);
                        let (c, s) = (cos[k], sign * sin[k]);
                        out_head[k] = x1 * c - x2 * s;
                        out_head[k + half] = x2 * c + x1 * s;
                    }
                }
            });
        out
    }

    /// Rotate the `(B, L, H)` projection at `place` of `buf` in place (each `(k, k + d/2)`
    /// pair is read and written by itself only).
    pub(super) fn rotate_in_place(
        &self,
        buf: &mut [f32],
        place: Place,
        hidden: usize,
        inverse: bool,
    ) {
        let half = self.half;
        buf.par_chunks_mut(place.rs)
            .enumerate()
            .for_each(|(token, row)| {
                let (cos, sin, sign) = self.angles(token, inverse);
                for head in row[place.col..place.col + hidden].chunks_exact_mut(2 * half) {
                    for k in 0..half {
                        let (x1, x2) = (head[k], head[k + half]);
                        let (c, s) = (cos[k], sign * sin[k]);
                        head[k] = x1 * c - x2 * s;
                        head[k + half] = x2 * c + x1 * s;
                    }
                }
            });
    }

    /// `(L, d/2)` tensors of the cosines and sines.
    fn tensors(&self, device: &Device) -> CResult<(Tensor, Tensor)> {
        let shape = (self.seq_len, self.half);
        Ok((
            Tensor::from_slice(&self.cos, shape, device)?,
            Tensor::from_slice(&self.sin, shape, device)?,
        ))
    }
}

struct RotaryOp {
    table: RotaryTable,
}

impl CustomOp1 for RotaryOp {
    fn name(&self) -> &'static str {
        "crossdistill-rotary"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CResult<(CpuStorage, Shape)> {
        let xs = f32_slice(storage, layout, self.name())?;
        let (_, seq_len, hidden) = layout.shape().dims3()?;
        check(&self.table, seq_len, hidden)?;
        Ok((
            CpuStorage::F32(self.table.rotated(xs, Place::dense(hidden), hidden, false)),
            layout.shape().clone(),
        ))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        let hidden = arg.dim(D::Minus1)?;
        let dx = with_cpu_f32(grad, self.name(), |g| {
            self.table.rotated(g, Place::dense(hidden), hidden, true)
        })?;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

pub(super) fn check(table: &RotaryTable, seq_len: usize, hidden: usize) -> CResult<()> {
    if seq_len != table.seq_len || table.half == 0 || !hidden.is_multiple_of(2 * table.half) {
        candle_core::bail!(
            "rotary: a table for {} positions and heads of {} does not fit ({seq_len}, {hidden})",
            table.seq_len,
            2 * table.half
        );
    }
    Ok(())
}

/// Apply the rotary embedding of `table` to `xs` `(B, L, H)` whose heads are consecutive
/// blocks of `H / heads` columns. One fused op on CPU f32; composed candle ops elsewhere.
pub fn rotary(xs: &Tensor, table: &RotaryTable) -> CResult<Tensor> {
    if xs.device().is_cpu() && xs.dtype() == candle_core::DType::F32 {
        return xs.contiguous()?.apply_op1(RotaryOp {
            table: table.clone(),
        });
    }
    rotary_composed(xs, table)
}

/// [`rotary`] from differentiable candle ops (any device): `x·cos + rotate_half(x)·sin`.
pub fn rotary_composed(xs: &Tensor, table: &RotaryTable) -> CResult<Tensor> {
    let (b_sz, seq_len, hidden) = xs.dims3()?;
    check(table, seq_len, hidden)?;
    let half = table.half;
    let heads = hidden / (2 * half);
    let xs = xs.reshape((b_sz, seq_len, heads, 2 * half))?;
    let x1 = xs.narrow(D::Minus1, 0, half)?;
    let x2 = xs.narrow(D::Minus1, half, half)?;
    let (cos, sin) = table.tensors(xs.device())?;
    let cos = cos.to_dtype(xs.dtype())?.reshape((1, seq_len, 1, half))?;
    let sin = sin.to_dtype(xs.dtype())?.reshape((1, seq_len, 1, half))?;
    let y1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let y2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
    Tensor::cat(&[y1, y2], D::Minus1)?.reshape((b_sz, seq_len, hidden))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gradient_check::check_grad;

    fn sample(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761) ^ seed.wrapping_mul(40503)) % 2001) as f32
                    / 1000.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn fused_equals_composed_and_position_zero_is_identity() {
        let dev = Device::Cpu;
        let (b, l, h) = (2, 5, 8);
        let values = sample(b * l * h, 1);
        let xs = Tensor::from_vec(values.clone(), (b, l, h), &dev).unwrap();
        let table = RotaryTable::new(l, 4, 10_000.0);
        let fused = rotary(&xs, &table).unwrap();
        let composed = rotary_composed(&xs, &table).unwrap();
        let diff: f32 = (&fused - &composed)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-6, "max diff {diff}");
        let out: Vec<f32> = fused.flatten_all().unwrap().to_vec1().unwrap();
        // Position 0 of each batch row is not rotated.
        assert_eq!(out[..h], values[..h]);
        assert_eq!(out[l * h..l * h + h], values[l * h..l * h + h]);
        // A rotation keeps the norm of each (k, k + d/2) pair.
        for token in 0..b * l {
            for head in 0..2 {
                for k in 0..2 {
                    let i = token * h + head * 4 + k;
                    let before = values[i].hypot(values[i + 2]);
                    let after = out[i].hypot(out[i + 2]);
                    assert!((before - after).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (b, l, h) = (1, 3, 4);
        let table = RotaryTable::new(l, 4, 100.0);
        check_grad(
            &sample(b * l * h, 2),
            &[b, l, h],
            &|t| rotary(t, &table),
            1e-3,
        );
    }
}
