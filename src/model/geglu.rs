//! The gated linear unit of ModernBERT's MLP: `xs (…, 2I)` is split into `input, gate` halves
//! (transformers' `.chunk(2, dim=-1)`) and the output is `act(input) ⊙ gate` `(…, I)`.
//!
//! With the exact GELU on CPU f32 it is one fused op whose backward pass writes both halves of
//! the input gradient at once (`d input = g ⊙ gate ⊙ act'(input)`, `d gate = g ⊙ act(input)`),
//! instead of candle's two zero-padded `narrow` gradients added together.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use super::cpu_f32::{f32_slice, with_cpu_f32};
use super::hidden_act::HiddenAct;

type CResult<T> = candle_core::Result<T>;

/// The exact GELU with libm's erf, as candle's `gelu_erf` computes it (not the fast rational erf
/// of the dense kernels: three AdamW steps turn differences of a few ulp in near-zero gradients
/// into visibly different weights, and the ModernBERT training check against torch is tighter
/// with the same erf as the composed op).
#[inline]
fn gelu_erf(z: f32) -> f32 {
    0.5 * z * (1.0 + candle_core::cpu::erf::erf_f32(z * std::f32::consts::FRAC_1_SQRT_2))
}

/// [`gelu_erf`] and its derivative `Φ(z) + z φ(z)`, from one erf.
#[inline]
fn gelu_erf_and_grad(z: f32) -> (f32, f32) {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let erf = candle_core::cpu::erf::erf_f32(z * std::f32::consts::FRAC_1_SQRT_2);
    let cdf = 0.5 * (1.0 + erf);
    (
        0.5 * z * (1.0 + erf),
        cdf + z * INV_SQRT_2PI * (-0.5 * z * z).exp(),
    )
}

struct GegluOp;

impl CustomOp1 for GegluOp {
    fn name(&self) -> &'static str {
        "crossdistill-geglu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CResult<(CpuStorage, Shape)> {
        let xs = f32_slice(storage, layout, self.name())?;
        let (shape, half) = halved(layout.shape())?;
        let mut out = vec![0f32; xs.len() / 2];
        out.par_chunks_mut(half)
            .zip(xs.par_chunks(2 * half))
            .for_each(|(out_row, row)| {
                let (input, gate) = row.split_at(half);
                for ((o, &x), &g) in out_row.iter_mut().zip(input).zip(gate) {
                    *o = gelu_erf(x) * g;
                }
            });
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        let half = arg.dim(D::Minus1)? / 2;
        let dx = with_cpu_f32(arg, self.name(), |xs| {
            with_cpu_f32(grad, self.name(), |gs| {
                let mut dx = vec![0f32; xs.len()];
                dx.par_chunks_mut(2 * half)
                    .zip(xs.par_chunks(2 * half).zip(gs.par_chunks(half)))
                    .for_each(|(dx_row, (row, g_row))| {
                        let (input, gate) = row.split_at(half);
                        let (d_input, d_gate) = dx_row.split_at_mut(half);
                        for k in 0..half {
                            let (act, act_grad) = gelu_erf_and_grad(input[k]);
                            d_input[k] = g_row[k] * gate[k] * act_grad;
                            d_gate[k] = g_row[k] * act;
                        }
                    });
                dx
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// The output shape (last dimension halved) and the half width.
fn halved(shape: &Shape) -> CResult<(Shape, usize)> {
    let mut dims = shape.dims().to_vec();
    let last = dims.last_mut().ok_or_else(|| {
        candle_core::Error::Msg("geglu: a scalar has no last dimension to split".into())
    })?;
    if *last % 2 != 0 {
        candle_core::bail!("geglu: the last dimension {last} of {shape:?} is odd");
    }
    *last /= 2;
    let half = *last;
    Ok((Shape::from(dims), half))
}

/// `act(input) ⊙ gate` for `input, gate` the halves of the last dimension of `xs`.
pub fn geglu(xs: &Tensor, act: HiddenAct) -> CResult<Tensor> {
    if act == HiddenAct::GeluErf && xs.device().is_cpu() && xs.dtype() == DType::F32 {
        return xs.contiguous()?.apply_op1(GegluOp);
    }
    geglu_composed(xs, act)
}

/// [`geglu`] from differentiable candle ops (any device, any activation).
pub fn geglu_composed(xs: &Tensor, act: HiddenAct) -> CResult<Tensor> {
    let half = xs.dim(D::Minus1)? / 2;
    let input = xs.narrow(D::Minus1, 0, half)?;
    let gate = xs.narrow(D::Minus1, half, half)?;
    act.apply(&input)?.mul(&gate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gradient_check::check_grad;
    use candle_core::Device;

    fn sample(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761) ^ seed.wrapping_mul(40503)) % 4001) as f32
                    / 1000.0
                    - 2.0
            })
            .collect()
    }

    #[test]
    fn fused_equals_composed() {
        let xs = Tensor::from_vec(sample(3 * 4 * 10, 1), (3, 4, 10), &Device::Cpu).unwrap();
        let fused = geglu(&xs, HiddenAct::GeluErf).unwrap();
        let composed = geglu_composed(&xs, HiddenAct::GeluErf).unwrap();
        assert_eq!(fused.dims(), &[3, 4, 5]);
        let diff: f32 = (fused - composed)
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
        let odd = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        let error = geglu(&odd, HiddenAct::GeluErf).unwrap_err().to_string();
        assert!(error.contains("odd"), "{error}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_grad(
            &sample(2 * 8, 2),
            &[2, 8],
            &|t| geglu(t, HiddenAct::GeluErf),
            2e-3,
        );
    }
}
