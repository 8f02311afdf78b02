//! The end of a training step, on whichever path suits the device: gradient accumulation, the
//! global norm, the non-finite check, clipping and AdamW.
//!
//! On CPU the [`Gradients`] host buffers and [`AdamW`]'s in-place update are the fast path; the
//! step's loss and norm are known on the host at once. On any other device the step stays there:
//! [`DeviceGradients`] keeps one gradient tensor per parameter, the norm, the `ok` flag (loss and
//! norm finite) and the clip factor are computed as device tensors, and [`DeviceAdamW`]'s fused
//! kernels apply the update only where `ok` is 1. Nothing is read from the device per step: the
//! trainer gets the loss and norm back as tensors and reads them once per log window
//! ([`super::deferred_steps`]). Both paths compute the same f32 formula and skip the same steps.

use std::borrow::Cow;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use super::device_adamw::DeviceAdamW;
use super::device_gradients::{clip_scale, DeviceGradients};
use super::gradients::Gradients;
use super::optim::AdamW;
use crate::error::Result;
use crate::model::Params;

/// Set to `1` to run the device-generic step on the CPU (tests and debugging: it must train
/// exactly as the host path does).
pub const DEVICE_STEP_ENV: &str = "CROSSDISTILL_DEVICE_STEP";

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
    /// Device tensors and fused AdamW kernels (any device).
    Device {
        /// The step's gradients.
        grads: DeviceGradients,
        /// The optimizer.
        adamw: DeviceAdamW,
    },
}

/// How a step ended: its loss and norm known on the host, or still on the device.
#[derive(Debug)]
pub enum StepEnd {
    /// The host path: the update was applied exactly when both are finite.
    Known {
        /// The step's loss.
        loss: f64,
        /// The global gradient norm before clipping.
        norm: f64,
    },
    /// The device path: the norm as a `(1,)` f64 device tensor, to be read with the loss later;
    /// the update was applied on the device exactly when both are finite.
    Deferred {
        /// The global gradient norm before clipping.
        norm: Tensor,
    },
}

impl StepOptimizer {
    /// The path for the device of `params`, starting from `adamw`'s state (fresh or loaded
    /// from a checkpoint): the host path on CPU (unless [`DEVICE_STEP_ENV`] asks for the
    /// other), the device-generic one elsewhere.
    pub fn for_params(params: &Params, adamw: AdamW) -> Result<Self> {
        let on_cpu = params.vars().iter().all(|v| v.device().is_cpu());
        let forced = std::env::var(DEVICE_STEP_ENV).is_ok_and(|v| v == "1");
        if on_cpu && !forced {
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
        })
    }

    /// Start a step: no gradients yet.
    pub fn zero(&mut self) {
        match self {
            Self::Host { grads, .. } => grads.zero(),
            Self::Device { grads, .. } => grads.zero(),
        }
    }

    /// Add `scale · store[var]` to every var's gradient.
    pub fn add(&mut self, vars: &[Var], store: &GradStore, scale: f64) -> Result<()> {
        match self {
            Self::Host { grads, .. } => grads.add(vars, store, scale),
            Self::Device { grads, .. } => grads.add(vars, store, scale),
        }
    }

    /// End the step whose loss is `loss` (`(1,)` f64, on the student's device): measure the
    /// gradients' global L2 norm and, when loss and norm are finite, clip to `max_norm` (> 0;
    /// torch's `clip_grad_norm_`) and take one AdamW step at `lr`; a non-finite step changes
    /// neither weights nor optimizer state. The host path reads the loss (a host tensor) and
    /// decides on the host; the device path reads nothing.
    pub fn finish(
        &mut self,
        vars: &[Var],
        loss: &Tensor,
        max_norm: f64,
        lr: f64,
    ) -> Result<StepEnd> {
        match self {
            Self::Host { grads, adamw } => {
                let loss = loss.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?[0];
                let norm = grads.norm();
                if loss.is_finite() && norm.is_finite() {
                    grads.clip_to(norm, max_norm);
                    adamw.step(vars, grads, lr)?;
                }
                Ok(StepEnd::Known { loss, norm })
            }
            Self::Device { grads, adamw } => {
                let device = loss.device();
                let norm = match grads.norm()? {
                    Some(norm) => norm.reshape(1)?,
                    None => Tensor::zeros(1, DType::F64, device)?,
                };
                let ok = (finite(loss)? * finite(&norm)?)?;
                let clip = if max_norm > 0.0 {
                    clip_scale(&norm, max_norm)?.reshape(1)?
                } else {
                    Tensor::ones(1, DType::F32, device)?
                };
                adamw.step(vars, grads, lr, &ok, &clip)?;
                Ok(StepEnd::Deferred { norm })
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

/// `1.0` (f32) where `x` is finite, `0.0` where it is NaN or infinite: `x − x` is 0 exactly for
/// finite values.
#[allow(clippy::eq_op)] // x − x on purpose: the NaN/inf test
fn finite(x: &Tensor) -> Result<Tensor> {
    let x = x.to_dtype(DType::F64)?;
    Ok((&x - &x)?.eq(0.0)?.to_dtype(DType::F32)?)
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

    /// Steps `first..last` with accumulation 2, clipping at 1, step 3's gradients made
    /// non-finite and step 5's loss (both skipped, the host path deciding on the host, the device
    /// path on the device); returns the norms measured.
    fn run(optimizer: &mut StepOptimizer, vars: &[Var], steps: std::ops::Range<usize>) -> Vec<f64> {
        let mut norms = Vec::new();
        for step in steps {
            optimizer.zero();
            for micro in 0..2 {
                let c = coefficients(vars, step, micro, step == 3 && micro == 1);
                optimizer.add(vars, &grad_store(vars, &c), 0.5).unwrap();
            }
            let loss = if step == 5 { f64::NAN } else { 1.0 };
            let loss = Tensor::new(&[loss], &Device::Cpu).unwrap();
            let end = optimizer
                .finish(vars, &loss, 1.0, 1e-3 * (1.0 + step as f64))
                .unwrap();
            norms.push(match end {
                StepEnd::Known { norm, .. } => norm,
                StepEnd::Deferred { norm } => norm.to_vec1::<f64>().unwrap()[0],
            });
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
        // Clipping was active on every finite step; steps 3 and 5 were skipped on both paths.
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
        assert_eq!(host_state.steps(), 4);
        assert_eq!(device_state.steps(), 4);
        let worst = max_difference(&host_student, &host_state, &device_student, &device_state);
        // Bit for bit: the fused kernels' CPU code is the host AdamW's arithmetic.
        assert_eq!(worst, 0.0);
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
