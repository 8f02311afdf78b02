//! Small tensor helpers the losses share: dtype policy, host reads of constants, a numerically
//! stable log-softmax and shape checks whose errors carry the real shapes.

use candle_core::{DType, Tensor, D};

use crate::error::{Error, Result};

/// Losses compute in f32 at least: half-precision logits are upcast (sentence-transformers calls
/// `.float()` on listwise logits, PR #3800). `to_dtype` is differentiable, so gradients still
/// reach the half-precision graph.
pub(crate) fn upcast(xs: &Tensor) -> Result<Tensor> {
    Ok(match xs.dtype() {
        DType::F16 | DType::BF16 => xs.to_dtype(DType::F32)?,
        _ => xs.clone(),
    })
}

/// The values of a rank-1 tensor on the host, as f64 (any dtype).
pub(crate) fn host_vector(xs: &Tensor) -> Result<Vec<f64>> {
    Ok(xs.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// The values of a rank-2 tensor on the host, as f64 rows (any dtype).
pub(crate) fn host_matrix(xs: &Tensor) -> Result<Vec<Vec<f64>>> {
    Ok(xs.to_dtype(DType::F64)?.to_vec2::<f64>()?)
}

/// A rank-2 tensor of `rows` (all of equal length `cols`) with `like`'s dtype and device.
pub(crate) fn matrix_like(rows: &[Vec<f64>], cols: usize, like: &Tensor) -> Result<Tensor> {
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (rows.len(), cols), like.device())?.to_dtype(like.dtype())?)
}

/// A rank-1 tensor with `like`'s dtype and device.
pub(crate) fn vector_like(values: Vec<f64>, like: &Tensor) -> Result<Tensor> {
    let len = values.len();
    Ok(Tensor::from_vec(values, len, like.device())?.to_dtype(like.dtype())?)
}

/// A scalar 0 that stays connected to `like` (its gradient is zero), so a caller that looks up
/// gradients after `backward` finds them. Used where sentence-transformers returns
/// `tensor(0.0, requires_grad=True)`.
pub(crate) fn zero_loss(like: &Tensor) -> Result<Tensor> {
    Ok(like.zeros_like()?.mul(like)?.sum_all()?)
}

/// `log_softmax` over the last dimension: `x - max - log(sum(exp(x - max)))` with the max
/// detached, so the gradient is exactly `onehot - softmax` and no op without a backward is used.
pub(crate) fn log_softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    let max = xs.max_keepdim(D::Minus1)?.detach();
    let shifted = xs.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&log_sum)?)
}

/// The logits of a loss that needs one logit per pair: accepts `(B,)` or `(B, 1)` and returns
/// `(B,)`; `(B, C)` with `C != 1` is a num_labels mismatch.
pub(crate) fn one_logit_per_pair(loss: &str, logits: &Tensor) -> Result<Tensor> {
    match *logits.dims() {
        [_] => Ok(logits.clone()),
        [_, 1] => Ok(logits.flatten_all()?),
        _ => Err(Error::invalid(format!(
            "{loss} needs one logit per pair (num_labels = 1) but the logits have shape {:?}",
            logits.dims()
        ))
        .with_hint(
            "set student.num_labels = 1, or use the cross_entropy loss for several classes",
        )),
    }
}

/// Labels with one value per pair: `(B,)` or `(B, 1)`, returned as `(B,)`.
pub(crate) fn one_label_per_pair(loss: &str, labels: &Tensor, batch: usize) -> Result<Tensor> {
    match *labels.dims() {
        [b] if b == batch => Ok(labels.clone()),
        [b, 1] if b == batch => Ok(labels.flatten_all()?),
        _ => Err(Error::invalid(format!(
            "{loss}: labels have shape {:?} but {batch} logits need [{batch}] (one label per pair)",
            labels.dims()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn log_softmax_matches_the_formula_and_has_softmax_gradient() -> Result<()> {
        let xs = Var::new(&[[1.0f64, 2.0, -3.0]], &Device::Cpu)?;
        let lp = log_softmax_last_dim(xs.as_tensor())?;
        let z: f64 = [1.0f64, 2.0, -3.0].iter().map(|x| x.exp()).sum();
        let got: Vec<Vec<f64>> = lp.to_vec2()?;
        for (j, x) in [1.0f64, 2.0, -3.0].iter().enumerate() {
            assert!((got[0][j] - (x - z.ln())).abs() < 1e-14);
        }
        // d/dx of log_softmax(x)[0] is onehot(0) - softmax(x).
        let grads = lp.narrow(1, 0, 1)?.sum_all()?.backward()?;
        let g: Vec<Vec<f64>> = grads.get(&xs).expect("xs is used").to_vec2()?;
        for (j, x) in [1.0f64, 2.0, -3.0].iter().enumerate() {
            let expected = f64::from(j == 0) - x.exp() / z;
            assert!((g[0][j] - expected).abs() < 1e-14);
        }
        Ok(())
    }

    #[test]
    fn zero_loss_keeps_the_graph() -> Result<()> {
        let xs = Var::new(&[1.0f32, 2.0], &Device::Cpu)?;
        let zero = zero_loss(xs.as_tensor())?;
        assert_eq!(zero.to_scalar::<f32>()?, 0.0);
        let grads = zero.backward()?;
        let g: Vec<f32> = grads.get(&xs).expect("connected").to_vec1()?;
        assert_eq!(g, vec![0.0, 0.0]);
        Ok(())
    }

    #[test]
    fn upcast_half_precision() -> Result<()> {
        let xs = Tensor::new(&[1.0f32], &Device::Cpu)?.to_dtype(DType::BF16)?;
        assert_eq!(upcast(&xs)?.dtype(), DType::F32);
        let ys = Tensor::new(&[1.0f64], &Device::Cpu)?;
        assert_eq!(upcast(&ys)?.dtype(), DType::F64);
        Ok(())
    }

    #[test]
    fn num_labels_mismatch_names_the_shape() {
        let logits = Tensor::zeros((16, 3), DType::F32, &Device::Cpu).unwrap();
        let message = one_logit_per_pair("mse", &logits).unwrap_err().to_string();
        assert!(
            message.starts_with(
                "mse needs one logit per pair (num_labels = 1) but the logits have shape [16, 3]"
            ),
            "{message}"
        );
        assert!(message.contains("num_labels = 1"), "{message}");
    }
}
