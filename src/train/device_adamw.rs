//! AdamW as candle tensor ops on the parameters' device, moments kept there as tensors.
//!
//! The device-generic counterpart of [`super::optim::AdamW`] (which updates host memory in
//! place, the CPU's fast path): the same torch.optim.AdamW formula in f32, decoupled decay only
//! where the parameter [`decays`](crate::model::ParamKind), bias corrections computed on the
//! host from the step count. candle has no multi-tensor or fused kernels, so each parameter
//! costs 13 elementwise kernels per step (12 without decay) plus the copy into the variable:
//!
//! ```text
//! m ← b1·m + (1−b1)·g                       3 (two scalings, an addition)
//! v ← b2·v + (1−b2)·g²                      4 (a square, two scalings, an addition)
//! d ← √v / √(1−b2ᵗ) + eps                   2 (a square root, a fused scale-and-shift)
//! p ← p·(1−lr·wd) − lr/(1−b1ᵗ) · m / d      4 (a scaling, a division, a scaling, a subtraction)
//! ```
//!
//! The state converts to and from [`AdamW`] ([`DeviceAdamW::to_host`], [`DeviceAdamW::from_host`])
//! so checkpoints keep one format whichever path trained.

use candle_core::{DType, Tensor, Var};

use super::device_gradients::DeviceGradients;
use super::optim::{check_counts, AdamW, AdamWConfig};
use crate::error::{Error, Result};
use crate::model::Params;

/// Optimizer state of one parameter, on its device.
#[derive(Debug, Clone)]
struct DeviceMoments {
    m: Tensor,
    v: Tensor,
    decay: bool,
}

/// AdamW over a model's parameters with moments on their device.
#[derive(Debug, Clone)]
pub struct DeviceAdamW {
    config: AdamWConfig,
    moments: Vec<DeviceMoments>,
    step: u64,
}

impl DeviceAdamW {
    /// Zero moments for every parameter of `params`, on each parameter's device.
    pub fn new(params: &Params, config: AdamWConfig) -> Result<Self> {
        let moments = params
            .iter()
            .map(|(spec, var)| {
                let zeros = Tensor::zeros(var.shape(), DType::F32, var.device())?;
                Ok(DeviceMoments {
                    m: zeros.clone(),
                    v: zeros,
                    decay: spec.kind.decays(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            config,
            moments,
            step: 0,
        })
    }

    /// The state of a host [`AdamW`] (a fresh one, or one loaded from a checkpoint) copied onto
    /// the devices of `params`.
    pub fn from_host(host: &AdamW, params: &Params) -> Result<Self> {
        let mut device = Self::new(params, host.config())?;
        let count = host.moments().count();
        if count != device.moments.len() {
            return Err(Error::invalid(format!(
                "optimizer state has {count} parameter states, the model has {}",
                device.moments.len()
            )));
        }
        for ((target, (m, v)), (_, var)) in device
            .moments
            .iter_mut()
            .zip(host.moments())
            .zip(params.iter())
        {
            target.m = Tensor::from_slice(m, var.shape(), var.device())?;
            target.v = Tensor::from_slice(v, var.shape(), var.device())?;
        }
        device.step = host.steps();
        Ok(device)
    }

    /// The state copied to the host as an [`AdamW`] (for checkpoints: one read of every moment).
    pub fn to_host(&self, params: &Params) -> Result<AdamW> {
        let mut host = AdamW::new(params, self.config);
        let moments = self
            .moments
            .iter()
            .map(|state| {
                Ok((
                    state.m.flatten_all()?.to_vec1::<f32>()?,
                    state.v.flatten_all()?.to_vec1::<f32>()?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        host.restore(self.step, moments)?;
        Ok(host)
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update of every variable with its gradient (same order as at construction); a
    /// parameter without a gradient this step updates with a zero gradient, as the host path does.
    pub fn step(&mut self, vars: &[Var], grads: &DeviceGradients, lr: f64) -> Result<()> {
        let grads = grads.tensors();
        check_counts(vars.len(), grads.len(), self.moments.len())?;
        self.step += 1;
        let coefficients = Coefficients::new(&self.config, lr, self.step);
        for ((var, grad), moments) in vars.iter().zip(grads).zip(self.moments.iter_mut()) {
            let zeros;
            let grad = match grad {
                Some(grad) => grad,
                None => {
                    zeros = var.as_tensor().zeros_like()?;
                    &zeros
                }
            };
            let (param, m, v) = adamw_update(var.as_tensor(), moments, grad, &coefficients)?;
            var.set(&param)?;
            moments.m = m;
            moments.v = v;
        }
        Ok(())
    }
}

/// The scalars of one step, computed in f32 on the host as [`AdamW`] computes them.
struct Coefficients {
    beta1: f32,
    beta2: f32,
    /// `lr / (1 − b1ᵗ)`.
    step_size: f32,
    /// `√(1 − b2ᵗ)`.
    bias2_sqrt: f32,
    eps: f32,
    /// `1 − lr·wd`.
    decay: f32,
}

impl Coefficients {
    fn new(config: &AdamWConfig, lr: f64, step: u64) -> Self {
        let lr = lr as f32;
        let (beta1, beta2) = (config.beta1 as f32, config.beta2 as f32);
        let bias1 = 1.0 - beta1.powi(step as i32);
        let bias2 = 1.0 - beta2.powi(step as i32);
        Self {
            beta1,
            beta2,
            step_size: lr / bias1,
            bias2_sqrt: bias2.sqrt(),
            eps: config.eps as f32,
            decay: 1.0 - lr * config.weight_decay as f32,
        }
    }
}

/// The new parameter and moments of one AdamW step (see the module docs for the kernels).
fn adamw_update(
    param: &Tensor,
    moments: &DeviceMoments,
    grad: &Tensor,
    c: &Coefficients,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b1, b2) = (f64::from(c.beta1), f64::from(c.beta2));
    let m = (moments.m.affine(b1, 0.0)? + grad.affine(1.0 - b1, 0.0)?)?;
    let v = (moments.v.affine(b2, 0.0)? + grad.sqr()?.affine(1.0 - b2, 0.0)?)?;
    let denom = v
        .sqrt()?
        .affine(1.0 / f64::from(c.bias2_sqrt), f64::from(c.eps))?;
    let step = m.div(&denom)?.affine(f64::from(c.step_size), 0.0)?;
    let decayed = if moments.decay {
        param.affine(f64::from(c.decay), 0.0)?
    } else {
        param.clone()
    };
    Ok(((decayed - step)?, m, v))
}
