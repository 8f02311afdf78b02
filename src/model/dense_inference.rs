//! Inference-only dense layers on f32 slices: `act(x Wᵀ + b)` and the post-LN block's
//! `LayerNorm(x + residual)`, for encoders that run without candle tensors (the DeBERTa-v2
//! teacher, [`super::deberta_encoder`]).
//!
//! No graph, no intermediate kept: the bias is written first and the gemm accumulates onto it,
//! the activation runs in place, and the residual add, mean, variance and affine map of a
//! LayerNorm run in one pass over each row. Rows are split over rayon's threads; the gemm uses
//! all of them.

use rayon::prelude::*;

use super::cpu_f32::PAR_ROWS;
use super::fused::{all_threads, matmul, View};
use super::gelu::gelu_erf;
use super::hidden_act::HiddenAct;

/// `act(x Wᵀ + b)` for `xs` `(rows, in)` row-major, `weight` `(out, in)` (torch's `Linear`
/// layout), `bias` `(out)` or none; returns `(rows, out)`. `act` `None` is the identity.
///
/// # Panics
/// When the slices do not have the sizes `in = xs.len() / rows` and `out = weight.len() / in`
/// imply (the callers build them from checked shapes).
pub(super) fn dense(
    xs: &[f32],
    rows: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Option<HiddenAct>,
) -> Vec<f32> {
    let mut ys = Vec::new();
    dense_into(xs, rows, weight, bias, act, &mut ys);
    ys
}

/// [`dense`] written into `ys` (resized), so that a caller running layer after layer reuses one
/// buffer instead of faulting in fresh pages for every output.
pub(super) fn dense_into(
    xs: &[f32],
    rows: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Option<HiddenAct>,
    ys: &mut Vec<f32>,
) {
    let in_dim = xs.len() / rows.max(1);
    let out_dim = weight.len() / in_dim.max(1);
    assert!(
        in_dim * rows == xs.len() && out_dim * in_dim == weight.len(),
        "dense: input of {} values for {rows} rows and a weight of {} values do not fit",
        xs.len(),
        weight.len()
    );
    ys.resize(rows * out_dim, 0.0);
    match bias {
        Some(bias) => {
            assert_eq!(bias.len(), out_dim, "dense: bias length");
            ys.par_chunks_mut(out_dim * PAR_ROWS).for_each(|block| {
                block
                    .chunks_mut(out_dim)
                    .for_each(|row| row.copy_from_slice(bias))
            });
        }
        None => ys.fill(0.0),
    }
    if rows > 0 && in_dim > 0 {
        // SAFETY: ys holds rows × out; xs is (rows, in) and W (out, in), both contiguous.
        unsafe {
            matmul(
                rows,
                out_dim,
                in_dim,
                ys.as_mut_ptr(),
                out_dim,
                true,
                View::rows(xs, 0, in_dim),
                View::transposed(weight, 0, in_dim),
                all_threads(),
            )
        };
    }
    if let Some(act) = act {
        ys.par_chunks_mut(out_dim * PAR_ROWS)
            .for_each(|block| activate(block, act));
    }
}

/// `act` applied in place, element by element.
pub(super) fn activate(xs: &mut [f32], act: HiddenAct) {
    match act {
        HiddenAct::GeluErf => xs.iter_mut().for_each(|x| *x = gelu_erf(*x)),
        HiddenAct::GeluTanh => xs.iter_mut().for_each(|x| {
            const SQRT_2_OVER_PI: f32 = 0.797_884_6;
            let inner = SQRT_2_OVER_PI * (*x + 0.044_715 * *x * *x * *x);
            *x = 0.5 * *x * (1.0 + inner.tanh());
        }),
        HiddenAct::Relu => xs.iter_mut().for_each(|x| *x = x.max(0.0)),
        HiddenAct::Silu => xs.iter_mut().for_each(|x| *x /= 1.0 + (-*x).exp()),
    }
}

/// `xs ← LayerNorm(xs + residual)` row by row over rows of `gamma.len()` values:
/// `(v − mean) / sqrt(var + eps) ⊙ gamma + beta` with the biased variance (torch's
/// `nn.LayerNorm`). Without `residual`, a plain LayerNorm.
pub(super) fn add_layer_norm(
    xs: &mut [f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let hidden = gamma.len();
    assert!(
        hidden > 0 && xs.len().is_multiple_of(hidden) && beta.len() == hidden,
        "add_layer_norm: {} values for rows of {hidden}",
        xs.len()
    );
    let norm_row = |row: &mut [f32]| {
        let n = hidden as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let rstd = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * rstd * g + b;
        }
    };
    let chunk = hidden * PAR_ROWS;
    match residual {
        Some(residual) => {
            assert_eq!(residual.len(), xs.len(), "add_layer_norm: residual length");
            xs.par_chunks_mut(chunk)
                .zip(residual.par_chunks(chunk))
                .for_each(|(rows, res_rows)| {
                    for (row, res) in rows.chunks_mut(hidden).zip(res_rows.chunks(hidden)) {
                        row.iter_mut().zip(res).for_each(|(v, r)| *v += r);
                        norm_row(row);
                    }
                })
        }
        None => xs
            .par_chunks_mut(chunk)
            .for_each(|rows| rows.chunks_mut(hidden).for_each(norm_row)),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0) * 1.3)
            .collect()
    }

    #[test]
    fn dense_matches_candle_matmul_with_every_activation() {
        let (rows, in_dim, out_dim) = (70, 19, 23);
        let (xs, weight, bias) = (
            values(rows * in_dim, 1),
            values(out_dim * in_dim, 2),
            values(out_dim, 3),
        );
        let dev = Device::Cpu;
        let x = Tensor::from_vec(xs.clone(), (rows, in_dim), &dev).unwrap();
        let w = Tensor::from_vec(weight.clone(), (out_dim, in_dim), &dev).unwrap();
        let b = Tensor::from_vec(bias.clone(), out_dim, &dev).unwrap();
        let z = x
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        for act in [
            None,
            Some(HiddenAct::GeluErf),
            Some(HiddenAct::GeluTanh),
            Some(HiddenAct::Relu),
            Some(HiddenAct::Silu),
        ] {
            let want = match act {
                None => z.clone(),
                Some(act) => act.apply(&z).unwrap(),
            };
            let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
            let got = dense(&xs, rows, &weight, Some(&bias), act);
            let diff = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-5, "{act:?}: {diff}");
        }
        let no_bias = dense(&xs, rows, &weight, None, None);
        let want: Vec<f32> = x
            .matmul(&w.t().unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(no_bias.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    #[test]
    fn add_layer_norm_matches_candle_layer_norm_of_the_sum() {
        let (rows, hidden) = (130, 24);
        let (xs, residual) = (values(rows * hidden, 4), values(rows * hidden, 5));
        let (gamma, beta) = (values(hidden, 6), values(hidden, 7));
        let dev = Device::Cpu;
        let sum = Tensor::from_vec(xs.clone(), (rows, hidden), &dev)
            .unwrap()
            .add(&Tensor::from_vec(residual.clone(), (rows, hidden), &dev).unwrap())
            .unwrap();
        let want: Vec<f32> = candle_nn::ops::layer_norm(
            &sum,
            &Tensor::from_vec(gamma.clone(), hidden, &dev).unwrap(),
            &Tensor::from_vec(beta.clone(), hidden, &dev).unwrap(),
            1e-7,
        )
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
        let mut got = xs;
        add_layer_norm(&mut got, Some(&residual), &gamma, &beta, 1e-7);
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "{diff}");
    }
}
