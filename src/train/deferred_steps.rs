//! The device path's steps whose scalars (loss, per-loss values, gradient norm) are still on the
//! device: kept until the log window ends (or an evaluation, a checkpoint, the end of the run),
//! then read with one copy to the host for the whole window.
//!
//! The device has already applied or skipped each step by then (AdamW's `ok` flag), so reading
//! late changes no weight: it only decides what is logged, which steps count as skipped, and,
//! under `train.on_nan = "stop"`, ends the run at the window's end rather than at the step
//! (the error names the step and its rows either way).

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Tensor};

use super::step_losses::StepLosses;
use crate::error::{Error, Result};

/// One step as the trainer settles it, its scalars on the host.
#[derive(Debug, Clone)]
pub struct SettledStep {
    /// The step (1-based).
    pub step: usize,
    /// The step's loss (the mean over its micro-batches).
    pub loss: f64,
    /// Each loss's value summed over the micro-batches.
    pub parts: BTreeMap<String, f64>,
    /// One over the number of micro-batches.
    pub scale: f64,
    /// The global gradient norm before clipping.
    pub norm: f64,
    /// The learning rate of the step.
    pub lr: f64,
    /// Pairs trained on.
    pub pairs: usize,
    /// Seconds the step took.
    pub seconds: f64,
    /// Lines of the step's rows in the training data.
    pub lines: Vec<usize>,
}

impl SettledStep {
    /// The loss and the gradient norm are finite (the update was applied).
    pub fn is_finite(&self) -> bool {
        self.loss.is_finite() && self.norm.is_finite()
    }
}

/// A step whose scalars are on the device.
#[derive(Debug)]
struct DeferredStep {
    /// `[loss, norm, part…]`, `(2 + parts,)` f64 on the device.
    scalars: Tensor,
    keys: Vec<String>,
    /// Everything else, known on the host (loss, parts and norm filled in when read).
    step: SettledStep,
}

/// The steps of the current log window not yet read from the device.
#[derive(Debug, Default)]
pub struct DeferredSteps {
    steps: Vec<DeferredStep>,
}

impl DeferredSteps {
    /// Keep a step: its `loss` and `norm` (`(1,)` tensors on the device; any float type) and
    /// its `losses`, and what the host knows of it in `step`.
    pub fn push(
        &mut self,
        loss: &Tensor,
        norm: &Tensor,
        losses: &StepLosses,
        step: SettledStep,
    ) -> Result<()> {
        let (keys, parts) = losses.parts();
        let mut scalars = vec![loss.to_dtype(DType::F64)?, norm.to_dtype(DType::F64)?];
        scalars.extend(parts);
        let scalars = Tensor::cat(&scalars, 0)?;
        self.steps.push(DeferredStep {
            scalars,
            keys,
            step,
        });
        Ok(())
    }

    /// Read every waiting step's scalars with one copy from the device, in step order. The time
    /// the read waited for the device (the queued work of the window) is added to the last
    /// step's seconds, so the window's throughput counts it.
    pub fn read(&mut self) -> Result<Vec<SettledStep>> {
        if self.steps.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let all: Vec<Tensor> = self.steps.iter().map(|s| s.scalars.clone()).collect();
        let values: Vec<f64> = Tensor::cat(&all, 0)?.to_vec1()?;
        let waited = started.elapsed().as_secs_f64();
        let mut settled = Vec::with_capacity(self.steps.len());
        let mut values = values.as_slice();
        for deferred in self.steps.drain(..) {
            let count = 2 + deferred.keys.len();
            if values.len() < count {
                return Err(Error::invalid(
                    "deferred step scalars: fewer values than steps",
                ));
            }
            let (mine, rest) = values.split_at(count);
            values = rest;
            let mut step = deferred.step;
            step.loss = mine[0];
            step.norm = mine[1];
            step.parts = deferred
                .keys
                .into_iter()
                .zip(mine[2..].iter().copied())
                .collect();
            settled.push(step);
        }
        if let Some(last) = settled.last_mut() {
            last.seconds += waited;
        }
        Ok(settled)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn host(step: usize) -> SettledStep {
        SettledStep {
            step,
            loss: f64::NAN,
            parts: BTreeMap::new(),
            scale: 0.5,
            norm: f64::NAN,
            lr: 1e-3,
            pairs: 4,
            seconds: 0.25,
            lines: vec![step],
        }
    }

    #[test]
    fn reads_every_waiting_step_in_order_with_its_own_losses() {
        let dev = Device::Cpu;
        let mut deferred = DeferredSteps::default();
        assert!(deferred.read().unwrap().is_empty());
        for (step, value) in [(1usize, 0.5f64), (2, f64::INFINITY)] {
            let mut losses = StepLosses::new(&dev);
            losses.add_host("loss/mse", 1.0, value).unwrap();
            if step == 2 {
                losses.add_host("loss/list_net", 2.0, 3.0).unwrap();
            }
            let loss = losses.total(0.5).unwrap();
            let norm = Tensor::new(&[step as f32 * 10.0], &dev).unwrap();
            deferred.push(&loss, &norm, &losses, host(step)).unwrap();
        }
        let read = deferred.read().unwrap();
        assert_eq!(read.len(), 2);
        assert!(deferred.read().unwrap().is_empty());
        assert_eq!((read[0].step, read[0].loss, read[0].norm), (1, 0.25, 10.0));
        assert_eq!(read[0].parts, BTreeMap::from([("loss/mse".into(), 0.5)]));
        assert!(read[0].is_finite());
        assert_eq!(read[1].norm, 20.0);
        assert_eq!(read[1].parts["loss/list_net"], 3.0);
        assert!(!read[1].is_finite());
        assert_eq!(read[1].lines, [2]);
        assert!(read[1].seconds >= 0.25);
    }
}
