//! AdamW with decoupled weight decay (torch.optim.AdamW semantics), updating parameters in
//! place on CPU. The trainer uses it on CPU only; on other devices it runs
//! [`super::device_adamw::DeviceAdamW`] (the same formula as tensor ops, no host copies), whose
//! state converts to and from this one for checkpoints.
//!
//! candle-nn's AdamW allocates new tensors for every parameter on every step and decays biases
//! and LayerNorm weights; this one keeps its moments as plain vectors, skips decay where
//! transformers does (biases, LayerNorm), and writes the update into the parameter's storage.

use std::cell::RefCell;

use candle_core::{backend::BackendStorage, CpuStorage, InplaceOp1, Layout, Tensor, Var};
use rayon::prelude::*;

use super::gradients::Gradients;

use crate::error::{Error, Result};
use crate::model::Params;

/// Elements per parallel task of an update.
const CHUNK: usize = 1 << 15;

/// AdamW hyper-parameters (torch defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay (applied only to parameters that decay).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// Optimizer state of one parameter.
#[derive(Debug, Clone)]
struct Moments {
    m: Vec<f32>,
    v: Vec<f32>,
    decay: bool,
}

/// AdamW over a model's parameters.
#[derive(Debug, Clone)]
pub struct AdamW {
    config: AdamWConfig,
    moments: Vec<Moments>,
    step: u64,
}

struct Update<'a> {
    moments: RefCell<&'a mut Moments>,
    grad: &'a [f32],
    lr: f32,
    config: AdamWConfig,
    step: u64,
}

impl Update<'_> {
    fn apply(&self, params: &mut [f32]) {
        let mut moments = self.moments.borrow_mut();
        let moments = &mut **moments;
        let (b1, b2) = (self.config.beta1 as f32, self.config.beta2 as f32);
        let bias1 = 1.0 - (self.config.beta1 as f32).powi(self.step as i32);
        let bias2 = 1.0 - (self.config.beta2 as f32).powi(self.step as i32);
        let step_size = self.lr / bias1;
        let bias2_sqrt = bias2.sqrt();
        let eps = self.config.eps as f32;
        let decay = if moments.decay {
            1.0 - self.lr * self.config.weight_decay as f32
        } else {
            1.0
        };
        let update = |params: &mut [f32], m: &mut [f32], v: &mut [f32], grad: &[f32]| {
            for (((p, m), v), &g) in params.iter_mut().zip(m).zip(v).zip(grad) {
                *p *= decay;
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let denom = v.sqrt() / bias2_sqrt + eps;
                *p -= step_size * *m / denom;
            }
        };
        // Elementwise, so chunking changes nothing in the result.
        params
            .par_chunks_mut(CHUNK)
            .zip(moments.m.par_chunks_mut(CHUNK))
            .zip(moments.v.par_chunks_mut(CHUNK))
            .zip(self.grad.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| update(p, m, v, g));
    }
}

impl InplaceOp1 for Update<'_> {
    fn name(&self) -> &'static str {
        "crossdistill-adamw"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let dtype = storage.dtype();
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("adamw: parameters must be f32, found {dtype:?}");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            return Err(candle_core::Error::RequiresContiguous { op: "adamw" });
        };
        self.apply(&mut data[start..end]);
        Ok(())
    }
}

/// One gradient and one optimizer state per variable, or an error saying what does not match.
pub(super) fn check_counts(vars: usize, grads: usize, states: usize) -> Result<()> {
    if vars != states || grads != vars {
        return Err(Error::invalid(format!(
            "adamw: {vars} variables and {grads} gradients for {states} parameter states"
        )));
    }
    Ok(())
}

impl AdamW {
    /// Zero moments for every parameter of `params`.
    pub fn new(params: &Params, config: AdamWConfig) -> Self {
        let moments = params
            .iter()
            .map(|(spec, var)| Moments {
                m: vec![0.0; var.elem_count()],
                v: vec![0.0; var.elem_count()],
                decay: spec.kind.decays(),
            })
            .collect();
        Self {
            config,
            moments,
            step: 0,
        }
    }

    /// The hyper-parameters.
    pub fn config(&self) -> AdamWConfig {
        self.config
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update of every variable with its gradient (same order as at construction).
    pub fn step(&mut self, vars: &[Var], grads: &Gradients, lr: f64) -> Result<()> {
        let grads = grads.buffers();
        check_counts(vars.len(), grads.len(), self.moments.len())?;
        self.step += 1;
        for ((var, grad), moments) in vars.iter().zip(grads).zip(self.moments.iter_mut()) {
            let update = Update {
                moments: RefCell::new(moments),
                grad,
                lr: lr as f32,
                config: self.config,
                step: self.step,
            };
            if var.device().is_cpu() && var.as_tensor().is_contiguous() {
                var.as_tensor().inplace_op1(&update)?;
            } else {
                // Other devices (the trainer uses DeviceAdamW there): update a host copy and
                // write it back.
                let mut host: Vec<f32> = var.as_tensor().flatten_all()?.to_vec1()?;
                update.apply(&mut host);
                var.set(&Tensor::from_vec(host, var.shape(), var.device())?)?;
            }
        }
        Ok(())
    }

    /// The first and second moments of every parameter, in parameter order (for checkpoints;
    /// the step count is [`AdamW::steps`]).
    pub fn moments(&self) -> impl Iterator<Item = (&[f32], &[f32])> {
        self.moments
            .iter()
            .map(|m| (m.m.as_slice(), m.v.as_slice()))
    }

    /// Restore a state saved by [`AdamW::state`].
    pub fn restore(&mut self, step: u64, moments: Vec<(Vec<f32>, Vec<f32>)>) -> Result<()> {
        if moments.len() != self.moments.len() {
            return Err(Error::invalid(format!(
                "optimizer checkpoint has {} parameter states, the model has {}",
                moments.len(),
                self.moments.len()
            )));
        }
        for (target, (m, v)) in self.moments.iter_mut().zip(moments) {
            if m.len() != target.m.len() || v.len() != target.v.len() {
                return Err(Error::invalid(
                    "optimizer checkpoint does not match the model's parameter sizes",
                ));
            }
            target.m = m;
            target.v = v;
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adamw_matches_torch_formula_on_one_parameter() {
        // torch.optim.AdamW(lr=0.1, weight_decay=0.5), p=1.0, grads 0.5 then -0.25:
        // step1: p = 1*(1-0.05) = 0.95; m=0.05, v=0.00025; m̂=0.5, v̂=0.25 -> p -= 0.1*0.5/(0.5+1e-8) = 0.85
        let config = AdamWConfig {
            weight_decay: 0.5,
            ..AdamWConfig::default()
        };
        let mut moments = Moments {
            m: vec![0.0],
            v: vec![0.0],
            decay: true,
        };
        let mut p = vec![1.0f32];
        let grad = [0.5f32];
        Update {
            moments: RefCell::new(&mut moments),
            grad: &grad,
            lr: 0.1,
            config,
            step: 1,
        }
        .apply(&mut p);
        assert!((p[0] - 0.85).abs() < 1e-6, "{}", p[0]);
        let grad = [-0.25f32];
        Update {
            moments: RefCell::new(&mut moments),
            grad: &grad,
            lr: 0.1,
            config,
            step: 2,
        }
        .apply(&mut p);
        // step2 by hand: p=0.85*0.95=0.8075; m=0.9*0.05-0.025=0.02; v=0.999*0.00025+0.001*0.0625=0.00031225
        // m̂=0.02/0.19=0.105263; v̂=0.00031225/0.001999=0.156203; p -= 0.1*0.105263/0.395225 = 0.026634
        assert!((p[0] - 0.780866).abs() < 1e-5, "{}", p[0]);
    }

    #[test]
    fn no_decay_where_transformers_skips_it() {
        let config = AdamWConfig {
            weight_decay: 0.5,
            ..AdamWConfig::default()
        };
        let mut moments = Moments {
            m: vec![0.0],
            v: vec![0.0],
            decay: false,
        };
        let mut p = vec![1.0f32];
        Update {
            moments: RefCell::new(&mut moments),
            grad: &[0.0],
            lr: 0.1,
            config,
            step: 1,
        }
        .apply(&mut p);
        assert_eq!(p[0], 1.0);
    }

    #[test]
    fn a_parameter_updated_in_parallel_chunks_equals_each_element_alone() {
        let config = AdamWConfig::default();
        let n = 3 * CHUNK + 17;
        let grad: Vec<f32> = (0..n)
            .map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0)
            .collect();
        let start: Vec<f32> = (0..n)
            .map(|i| ((i * 13 % 89) as f32 - 44.0) / 40.0)
            .collect();
        let mut moments = Moments {
            m: vec![0.1; n],
            v: vec![0.2; n],
            decay: true,
        };
        let mut p = start.clone();
        Update {
            moments: RefCell::new(&mut moments),
            grad: &grad,
            lr: 0.01,
            config,
            step: 3,
        }
        .apply(&mut p);
        for i in [0, CHUNK - 1, CHUNK, 2 * CHUNK + 1, n - 1] {
            let mut one = Moments {
                m: vec![0.1],
                v: vec![0.2],
                decay: true,
            };
            let mut q = vec![start[i]];
            Update {
                moments: RefCell::new(&mut one),
                grad: &grad[i..i + 1],
                lr: 0.01,
                config,
                step: 3,
            }
            .apply(&mut q);
            assert_eq!(
                (q[0], one.m[0], one.v[0]),
                (p[i], moments.m[i], moments.v[i])
            );
        }
    }
}
