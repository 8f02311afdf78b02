//! AdamW on the parameters' device, moments kept there, as two fused kernels per parameter
//! ([`super::fused_adamw`]): the device-generic counterpart of [`super::optim::AdamW`] (which
//! updates host memory in place, the CPU's fast path), with the same torch.optim.AdamW formula
//! in f32 and decoupled decay only where the parameter [`decays`](crate::model::ParamKind).
//!
//! What makes it device-resident is that nothing in a step needs the host: whether the step
//! applies (`ok`: its loss and gradient norm are finite), the clip factor and the bias
//! corrections' step count `t` are device tensors, so a non-finite step is skipped on the device
//! (both kernels leave everything as it was) and the trainer reads the step's scalars later, once
//! per log window. Per parameter and step: two kernel launches (was 13 candle ops plus a copy).
//!
//! The state converts to and from [`AdamW`] ([`DeviceAdamW::to_host`], [`DeviceAdamW::from_host`])
//! so checkpoints keep one format whichever path trained.

use candle_core::{DType, Device, Tensor, Var};

use super::device_gradients::DeviceGradients;
use super::fused_adamw::{MomentsUpdate, ParamUpdate};
use super::optim::{check_counts, AdamW, AdamWConfig};
use crate::error::{Error, Result};
use crate::model::Params;

/// Optimizer state of one parameter, on its device.
#[derive(Debug, Clone)]
struct DeviceMoments {
    /// `(2n,)` f32: the first moments, then the second.
    moments: Tensor,
    decay: bool,
}

/// AdamW over a model's parameters with moments on their device.
#[derive(Debug, Clone)]
pub struct DeviceAdamW {
    config: AdamWConfig,
    moments: Vec<DeviceMoments>,
    /// `(1,)` f32 on the parameters' device: updates applied so far (exact to 2²⁴ steps).
    steps: Tensor,
}

impl DeviceAdamW {
    /// Zero moments for every parameter of `params`, on each parameter's device.
    pub fn new(params: &Params, config: AdamWConfig) -> Result<Self> {
        Self::with_moments(params, config, 0, |_| None)
    }

    fn with_moments(
        params: &Params,
        config: AdamWConfig,
        steps: u64,
        mut host: impl FnMut(usize) -> Option<Vec<f32>>,
    ) -> Result<Self> {
        let moments = params
            .iter()
            .enumerate()
            .map(|(index, (spec, var))| {
                let n = 2 * var.elem_count();
                let moments = match host(index) {
                    Some(values) => Tensor::from_vec(values, n, var.device())?,
                    None => Tensor::zeros(n, DType::F32, var.device())?,
                };
                Ok(DeviceMoments {
                    moments,
                    decay: spec.kind.decays(),
                })
            })
            .collect::<Result<_>>()?;
        let device = params
            .vars()
            .first()
            .map_or(Device::Cpu, |v| v.device().clone());
        Ok(Self {
            config,
            moments,
            steps: Tensor::new(&[steps as f32], &device)?,
        })
    }

    /// The state of a host [`AdamW`] (a fresh one, or one loaded from a checkpoint) copied onto
    /// the devices of `params`.
    pub fn from_host(host: &AdamW, params: &Params) -> Result<Self> {
        let count = host.moments().count();
        if count != params.vars().len() {
            return Err(Error::invalid(format!(
                "optimizer state has {count} parameter states, the model has {}",
                params.vars().len()
            )));
        }
        let moments: Vec<(&[f32], &[f32])> = host.moments().collect();
        Self::with_moments(params, host.config(), host.steps(), |index| {
            let (m, v) = moments[index];
            Some([m, v].concat())
        })
    }

    /// The state copied to the host as an [`AdamW`] (for checkpoints: one read of every moment
    /// and of the step count).
    pub fn to_host(&self, params: &Params) -> Result<AdamW> {
        let mut host = AdamW::new(params, self.config);
        let moments = self
            .moments
            .iter()
            .map(|state| {
                let mut m = state.moments.to_vec1::<f32>()?;
                let v = m.split_off(m.len() / 2);
                Ok((m, v))
            })
            .collect::<Result<Vec<_>>>()?;
        host.restore(self.steps()?, moments)?;
        Ok(host)
    }

    /// Updates applied (a read from the device).
    pub fn steps(&self) -> Result<u64> {
        Ok(self.steps.to_vec1::<f32>()?[0] as u64)
    }

    /// One update of every variable with its gradient (same order as at construction), applied
    /// only where `ok` (a `(1,)` f32 device tensor, 1 or 0) is 1, with the gradients scaled by
    /// `clip` (`(1,)` f32); a parameter without a gradient this step updates with a zero
    /// gradient, as the host path does. Reads nothing from the device.
    pub fn step(
        &mut self,
        vars: &[Var],
        grads: &DeviceGradients,
        lr: f64,
        ok: &Tensor,
        clip: &Tensor,
    ) -> Result<()> {
        let grads = grads.tensors();
        check_counts(vars.len(), grads.len(), self.moments.len())?;
        self.steps = (&self.steps + ok)?;
        let flags = Tensor::cat(&[ok, &self.steps, clip], 0)?;
        let (beta1, beta2) = (self.config.beta1 as f32, self.config.beta2 as f32);
        let moments_op = MomentsUpdate { beta1, beta2 };
        let lr = lr as f32;
        let plain = ParamUpdate {
            lr,
            beta1,
            beta2,
            eps: self.config.eps as f32,
            decay: 1.0,
        };
        let decaying = ParamUpdate {
            decay: 1.0 - lr * self.config.weight_decay as f32,
            ..plain
        };
        for ((var, grad), state) in vars.iter().zip(grads).zip(&self.moments) {
            let zeros;
            let grad = match grad {
                Some(grad) => grad,
                None => {
                    zeros = var.as_tensor().zeros_like()?;
                    &zeros
                }
            };
            let param_op = if state.decay { &decaying } else { &plain };
            state
                .moments
                .inplace_op3(&grad.flatten_all()?, &flags, &moments_op)?;
            var.as_tensor()
                .inplace_op3(&state.moments, &flags, param_op)?;
        }
        Ok(())
    }
}
