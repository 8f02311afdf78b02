//! The step's gradients kept on the parameters' device: one tensor per parameter, accumulated,
//! measured and clipped with candle ops, so no gradient is copied to the host.
//!
//! The device-generic counterpart of [`super::gradients::Gradients`] (host f32 buffers, the CPU's
//! fast path); both compute the same values in f32: `sum_k scale_k · grad_k`, the global L2 norm,
//! torch's `clip_grad_norm_` scale `min(1, max_norm / (norm + 1e-6))` (which the fused AdamW
//! kernels multiply into the gradient as they read it).

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use crate::error::{Error, Result};

/// One gradient tensor per parameter, in parameter order; `None` until a micro-batch gave the
/// parameter a gradient this step (it counts as zero).
#[derive(Debug, Clone)]
pub struct DeviceGradients {
    tensors: Vec<Option<Tensor>>,
}

impl DeviceGradients {
    /// No gradients yet for `count` parameters.
    pub fn new(count: usize) -> Self {
        Self {
            tensors: vec![None; count],
        }
    }

    /// Gradients from given tensors (tests).
    pub fn from_tensors(tensors: Vec<Option<Tensor>>) -> Self {
        Self { tensors }
    }

    /// Forget this step's gradients (the next [`DeviceGradients::add`] starts from zero).
    pub fn zero(&mut self) {
        self.tensors.iter_mut().for_each(|t| *t = None);
    }

    /// `self += scale · store[var]` for every var that has a gradient in `store`: one scaling and
    /// (after the first micro-batch) one addition per parameter, on the device.
    pub fn add(&mut self, vars: &[Var], store: &GradStore, scale: f64) -> Result<()> {
        check_count(vars.len(), self.tensors.len())?;
        for (var, slot) in vars.iter().zip(self.tensors.iter_mut()) {
            let Some(grad) = store.get(var.as_tensor()) else {
                continue;
            };
            let scaled = grad.to_dtype(DType::F32)?.affine(scale, 0.0)?;
            *slot = Some(match slot.take() {
                Some(sum) => (sum + scaled)?,
                None => scaled,
            });
        }
        Ok(())
    }

    /// The global L2 norm as a 0-d f64 tensor on the device (squares and sums in f64, as the host
    /// buffers' norm: an f32 sum over a 13M-entry embedding gradient drifts by ~1e-6); not finite
    /// exactly when some gradient is not finite. `None` when no parameter has a gradient (the
    /// norm is 0).
    pub fn norm(&self) -> Result<Option<Tensor>> {
        let squares: Vec<Tensor> = self
            .tensors
            .iter()
            .flatten()
            .map(|g| g.to_dtype(DType::F64)?.sqr()?.sum_all()?.reshape(1))
            .collect::<candle_core::Result<_>>()?;
        if squares.is_empty() {
            return Ok(None);
        }
        let total = Tensor::cat(&squares, 0)?.sum_all()?;
        Ok(Some(total.sqrt()?))
    }

    /// The gradient tensors, in parameter order.
    pub fn tensors(&self) -> &[Option<Tensor>] {
        &self.tensors
    }
}

/// torch's `clip_grad_norm_` factor as an f32 0-d tensor: `min(1, max_norm / (norm + 1e-6))`,
/// with the division in f64 as [`super::gradients::Gradients::clip_to`] does it.
pub fn clip_scale(norm: &Tensor, max_norm: f64) -> Result<Tensor> {
    let ratio = (norm.to_dtype(DType::F64)?.affine(1.0, 1e-6)?.recip()? * max_norm)?;
    Ok(ratio.minimum(1.0)?.to_dtype(DType::F32)?)
}

fn check_count(vars: usize, tensors: usize) -> Result<()> {
    if vars != tensors {
        return Err(Error::invalid(format!(
            "device gradients: {vars} variables for {tensors} gradient slots"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::train::gradients::Gradients;

    #[test]
    fn accumulates_measures_and_clips_like_the_host_buffers() {
        let dev = Device::Cpu;
        let a = Var::from_vec(vec![1f32, 2.0], 2, &dev).unwrap();
        let b = Var::from_vec(vec![0f32; 70_003], 70_003, &dev).unwrap();
        let unused = Var::from_vec(vec![5f32; 3], 3, &dev).unwrap();
        let vars = vec![a.clone(), b.clone(), unused];
        let loss = ((a.as_tensor() * 3.0).unwrap().sum_all().unwrap()
            + (b.as_tensor() * 0.5).unwrap().sum_all().unwrap())
        .unwrap();
        let store = loss.backward().unwrap();
        let mut host = Gradients::zeros(&vars);
        let mut device = DeviceGradients::new(vars.len());
        for _ in 0..2 {
            host.add(&vars, &store, 0.5).unwrap();
            device.add(&vars, &store, 0.5).unwrap();
        }
        let host_norm = host.norm();
        let norm = device.norm().unwrap().unwrap();
        let norm_value = norm.to_scalar::<f64>().unwrap();
        assert!(
            (norm_value - host_norm).abs() < 1e-7 * host_norm,
            "{norm_value} vs {host_norm}"
        );
        host.clip_to(host_norm, 1.0);
        let clip = clip_scale(&norm, 1.0).unwrap();
        assert!(device.tensors()[2].is_none());
        for (h, d) in host.buffers().iter().zip(device.tensors()) {
            let Some(d) = d else { continue };
            let d: Vec<f32> = d.broadcast_mul(&clip).unwrap().to_vec1().unwrap();
            for (x, y) in h.iter().zip(&d) {
                assert!((x - y).abs() <= 1e-7 * x.abs(), "{x} vs {y}");
            }
        }
        device.zero();
        assert!(device.norm().unwrap().is_none());
    }

    #[test]
    fn the_clip_factor_is_one_below_the_limit_and_a_non_finite_gradient_shows_in_the_norm() {
        let dev = Device::Cpu;
        let scale = |norm: f64| {
            clip_scale(&Tensor::new(norm, &dev).unwrap(), 10.0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(scale(5.0), 1.0);
        assert_eq!(scale(20.0), (10.0 / (20.0 + 1e-6)) as f32);
        let grads = DeviceGradients::from_tensors(vec![Some(
            Tensor::new(&[1f32, f32::INFINITY], &dev).unwrap(),
        )]);
        let norm = grads.norm().unwrap().unwrap().to_scalar::<f64>().unwrap();
        assert!(!norm.is_finite());
    }
}
