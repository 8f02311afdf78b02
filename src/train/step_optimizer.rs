//! The end of a training step, on whichever path suits the device: gradient accumulation, the
//! global norm (which is also the non-finite check), clipping and AdamW.
//!
//! On CPU the [`Gradients`] host buffers and [`AdamW`]'s in-place update are the fast path. On
//! any other device the step stays there: [`DeviceGradients`] and [`DeviceAdamW`] keep the
//! gradients and moments as device tensors and update with candle ops. The one host read per
//! step on that path is the gradient norm (a single f64), because the trainer decides on it
//! whether to skip a non-finite step (or stop the run) and logs it; the clip factor itself is
//! computed on the device. Both paths compute the same f32 formula.

use std::borrow::Cow;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use super::device_adamw::DeviceAdamW;
use super::device_gradients::DeviceGradients;
use super::gradients::Gradients;
use super::optim::AdamW;
use crate::error::Result;
use crate::model::Params;

/// A step's gradients and the optimizer that consumes them.
#[derive(Debug)]
pub enum StepOptimizer {
    /// Host buffers and in-place AdamW (CPU).
    Host {
        /// The step's gradient buffers.
        grads: Gradients,
        /// The optimizer.
        adamw: AdamW,
    },
    /// Device tensors and AdamW as tensor ops (any device).
    Device {
        /// The step's gradients.
        grads: DeviceGradients,
        /// The optimizer.
        adamw: DeviceAdamW,
        /// The norm of the step's gradients on the device, from [`StepOptimizer::norm`].
        norm: Option<Tensor>,
    },
}

impl StepOptimizer {
    /// The path for the device of `params`, starting from `adamw`'s state (fresh or loaded
    /// from a checkpoint): the host path on CPU, the device-generic one elsewhere.
    pub fn for_params(params: &Params, adamw: AdamW) -> Result<Self> {
        let on_cpu = params.vars().iter().all(|v| v.device().is_cpu());
        if on_cpu {
            Ok(Self::Host {
                grads: Gradients::zeros(params.vars()),
                adamw,
            })
        } else {
            Self::device_generic(params, adamw)
        }
    }

    /// The device-generic path whatever the device (tests run it on CPU against the host path).
    pub(crate) fn device_generic(params: &Params, adamw: AdamW) -> Result<Self> {
        Ok(Self::Device {
            grads: DeviceGradients::new(params.vars().len()),
            adamw: DeviceAdamW::from_host(&adamw, params)?,
            norm: None,
        })
    }

    /// Start a step: no gradients yet.
    pub fn zero(&mut self) {
        match self {
            Self::Host { grads, .. } => grads.zero(),
            Self::Device { grads, norm, .. } => {
                grads.zero();
                *norm = None;
            }
        }
    }

    /// Add `scale · store[var]` to every var's gradient.
    pub fn add(&mut self, vars: &[Var], store: &GradStore, scale: f64) -> Result<()> {
        match self {
            Self::Host { grads, .. } => grads.add(vars, store, scale),
            Self::Device { grads, .. } => grads.add(vars, store, scale),
        }
    }

    /// The global L2 norm of the step's gradients; not finite exactly when some gradient is
    /// not finite. The device path reads this one scalar from the device.
    pub fn norm(&mut self) -> Result<f64> {
        match self {
            Self::Host { grads, .. } => Ok(grads.norm()),
            Self::Device { grads, norm, .. } => {
                *norm = grads.norm()?;
                match norm {
                    Some(tensor) => Ok(tensor.to_scalar::<f64>()?),
                    None => Ok(0.0),
                }
            }
        }
    }

    /// Clip to `max_norm` (> 0; torch's `clip_grad_norm_`) given the norm from
    /// [`StepOptimizer::norm`], then one AdamW update at `lr`.
    pub fn clip_and_update(
        &mut self,
        vars: &[Var],
        norm: f64,
        max_norm: f64,
        lr: f64,
    ) -> Result<()> {
        match self {
            Self::Host { grads, adamw } => {
                grads.clip_to(norm, max_norm);
                adamw.step(vars, grads, lr)
            }
            Self::Device {
                grads,
                adamw,
                norm: device_norm,
            } => {
                if let Some(device_norm) = device_norm {
                    grads.clip_to(device_norm, max_norm)?;
                }
                adamw.step(vars, grads, lr)
            }
        }
    }

    /// The optimizer state as a host [`AdamW`] (what checkpoints save; the device path copies
    /// its moments to the host).
    pub fn host_state(&self, params: &Params) -> Result<Cow<'_, AdamW>> {
        match self {
            Self::Host { adamw, .. } => Ok(Cow::Borrowed(adamw)),
            Self::Device { adamw, .. } => Ok(Cow::Owned(adamw.to_host(params)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use candle_core::{DType, Device};

    use super::*;
    use crate::model::{CrossEncoder, LoadOptions};
    use crate::train::optim::AdamWConfig;
    use crate::train::{checkpoint, TrainerState};

    fn student() -> CrossEncoder {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert-ce");
        CrossEncoder::load(dir.to_str().unwrap(), None, &LoadOptions::default()).unwrap()
    }

    fn adamw(student: &CrossEncoder) -> AdamW {
        let config = AdamWConfig {
            weight_decay: 0.1,
            ..AdamWConfig::default()
        };
        AdamW::new(student.params(), config)
    }

    /// Per parameter, a loss `25 · Σ c ⊙ w²` (gradient `50 · c ⊙ w`, large enough that a
    /// max norm of 1 clips every step), with `c` from a fixed pattern per step and micro-batch;
    /// `poisoned` puts a NaN into one coefficient.
    fn coefficients(vars: &[Var], step: usize, micro: usize, poisoned: bool) -> Vec<Tensor> {
        vars.iter()
            .enumerate()
            .map(|(p, var)| {
                let n = var.elem_count();
                let mut c: Vec<f32> = (0..n)
                    .map(|i| {
                        (((i * 7919 + p * 104_729 + step * 31 + micro * 17) % 2003) as f32) / 1001.5
                            - 1.0
                    })
                    .collect();
                if poisoned && p == 3 {
                    c[n / 2] = f32::NAN;
                }
                Tensor::from_vec(c, var.shape(), var.device()).unwrap()
            })
            .collect()
    }

    fn grad_store(vars: &[Var], coefficients: &[Tensor]) -> GradStore {
        let mut loss = Tensor::zeros((), DType::F32, &Device::Cpu).unwrap();
        for (var, c) in vars.iter().zip(coefficients) {
            let term = (var.as_tensor().sqr().unwrap() * c)
                .unwrap()
                .sum_all()
                .unwrap();
            loss = (loss + (term * 25.0).unwrap()).unwrap();
        }
        loss.backward().unwrap()
    }

    /// Steps `first..last` with accumulation 2, clipping at 1 and step 3 made non-finite
    /// (skipped, as the trainer does); returns the norms measured.
    fn run(optimizer: &mut StepOptimizer, vars: &[Var], steps: std::ops::Range<usize>) -> Vec<f64> {
        let mut norms = Vec::new();
        for step in steps {
            optimizer.zero();
            for micro in 0..2 {
                let c = coefficients(vars, step, micro, step == 3 && micro == 1);
                optimizer.add(vars, &grad_store(vars, &c), 0.5).unwrap();
            }
            let norm = optimizer.norm().unwrap();
            norms.push(norm);
            if !norm.is_finite() {
                continue;
            }
            optimizer
                .clip_and_update(vars, norm, 1.0, 1e-3 * (1.0 + step as f64))
                .unwrap();
        }
        norms
    }

    /// `max |x − y| / max(|x|, |y|)` over a tensor: the difference relative to the tensor's scale
    /// (element by element, values that cancel to near zero would measure rounding, not agreement).
    fn max_relative(a: &[f32], b: &[f32]) -> f64 {
        let scale = a.iter().chain(b).fold(0f32, |s, x| s.max(x.abs())) as f64;
        let worst = a.iter().zip(b).fold(0f32, |w, (x, y)| w.max((x - y).abs())) as f64;
        if scale == 0.0 {
            worst
        } else {
            worst / scale
        }
    }

    /// The largest relative difference between two students' weights and two optimizers' moments.
    fn max_difference(a: &CrossEncoder, a_opt: &AdamW, b: &CrossEncoder, b_opt: &AdamW) -> f64 {
        assert_eq!(a_opt.steps(), b_opt.steps());
        let mut worst = 0f64;
        for (x, y) in a.vars().iter().zip(b.vars()) {
            let x: Vec<f32> = x.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let y: Vec<f32> = y.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            worst = worst.max(max_relative(&x, &y));
        }
        for ((m1, v1), (m2, v2)) in a_opt.moments().zip(b_opt.moments()) {
            worst = worst.max(max_relative(m1, m2)).max(max_relative(v1, v2));
        }
        worst
    }

    #[test]
    fn the_device_generic_step_equals_the_cpu_path() {
        let (host_student, device_student) = (student(), student());
        let mut host =
            StepOptimizer::for_params(host_student.params(), adamw(&host_student)).unwrap();
        assert!(matches!(host, StepOptimizer::Host { .. }));
        let mut device =
            StepOptimizer::device_generic(device_student.params(), adamw(&device_student)).unwrap();
        let host_norms = run(&mut host, host_student.vars(), 0..6);
        let device_norms = run(&mut device, device_student.vars(), 0..6);
        // Clipping was active on every finite step and step 3 was skipped on both paths.
        assert!(
            host_norms[3].is_nan() && device_norms[3].is_nan(),
            "{host_norms:?}"
        );
        for (h, d) in host_norms
            .iter()
            .zip(&device_norms)
            .filter(|(h, _)| h.is_finite())
        {
            assert!(*h > 1.0, "{host_norms:?}");
            assert!((h - d).abs() <= 1e-6 * h, "{h} vs {d}");
        }
        let host_state = host.host_state(host_student.params()).unwrap();
        let device_state = device.host_state(device_student.params()).unwrap();
        assert_eq!(host_state.steps(), 5);
        let worst = max_difference(&host_student, &host_state, &device_student, &device_state);
        eprintln!("device-generic vs CPU step: max relative difference {worst:e}");
        assert!(worst <= 1e-6, "{worst:e}");
        // The weights moved: the comparison is not between two untouched models.
        let fresh = student();
        let moved = max_difference(&fresh, &adamw(&fresh), &device_student, &adamw(&fresh));
        assert!(moved > 1e-3, "{moved}");
    }

    #[test]
    fn the_device_path_resumes_from_a_checkpoint_like_an_uninterrupted_run() {
        let (straight_student, resumed_student) = (student(), student());
        let mut straight =
            StepOptimizer::device_generic(straight_student.params(), adamw(&straight_student))
                .unwrap();
        run(&mut straight, straight_student.vars(), 0..5);

        let dir = tempfile::tempdir().unwrap();
        let mut first =
            StepOptimizer::device_generic(resumed_student.params(), adamw(&resumed_student))
                .unwrap();
        run(&mut first, resumed_student.vars(), 0..2);
        let state = TrainerState {
            step: 2,
            ..TrainerState::default()
        };
        let saved = checkpoint::save(
            dir.path(),
            &resumed_student,
            &first.host_state(resumed_student.params()).unwrap(),
            &state,
            "recipe",
            None,
        )
        .unwrap();
        drop(first);
        let reloaded_student = student();
        let mut loaded = adamw(&reloaded_student);
        checkpoint::load(&saved, &reloaded_student, &mut loaded).unwrap();
        assert_eq!(loaded.steps(), 2);
        let mut resumed = StepOptimizer::device_generic(reloaded_student.params(), loaded).unwrap();
        run(&mut resumed, reloaded_student.vars(), 2..5);
        let worst = max_difference(
            &straight_student,
            &straight.host_state(straight_student.params()).unwrap(),
            &reloaded_student,
            &resumed.host_state(reloaded_student.params()).unwrap(),
        );
        assert_eq!(worst, 0.0);
    }
}
