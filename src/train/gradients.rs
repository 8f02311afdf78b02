//! The step's gradient buffers: one host f32 vector per parameter, kept for the whole run.
//!
//! A step zeroes them, adds each micro-batch's gradients scaled by its share, takes the global
//! norm (which also tells whether any gradient is non-finite), clips, and hands them to AdamW.
//! A ModernBERT vocabulary alone is 13M gradients, so every pass runs in parallel over fixed
//! chunks; the norm sums chunk partials in chunk order, so it does not depend on the number of
//! threads.

use candle_core::backprop::GradStore;
use candle_core::Var;
use rayon::prelude::*;

use crate::error::Result;
use crate::model::ops::add_scaled_into;

/// Elements per parallel task.
const CHUNK: usize = 1 << 16;

/// One gradient buffer per parameter, in parameter order.
#[derive(Debug, Clone)]
pub struct Gradients {
    buffers: Vec<Vec<f32>>,
}

impl Gradients {
    /// Zero buffers shaped like `vars`.
    pub fn zeros(vars: &[Var]) -> Self {
        Self {
            buffers: vars.iter().map(|v| vec![0f32; v.elem_count()]).collect(),
        }
    }

    /// Buffers from given values (tests, benchmarks).
    pub fn from_buffers(buffers: Vec<Vec<f32>>) -> Self {
        Self { buffers }
    }

    /// The buffers, in parameter order.
    pub fn buffers(&self) -> &[Vec<f32>] {
        &self.buffers
    }

    /// Set every gradient to zero.
    pub fn zero(&mut self) {
        self.chunks_mut().for_each(|chunk| chunk.fill(0.0));
    }

    /// `self += scale · store[var]` for every var that has a gradient in `store`.
    pub fn add(&mut self, vars: &[Var], store: &GradStore, scale: f64) -> Result<()> {
        for (var, buffer) in vars.iter().zip(self.buffers.iter_mut()) {
            if let Some(grad) = store.get(var.as_tensor()) {
                add_scaled_into(grad, buffer, scale as f32)?;
            }
        }
        Ok(())
    }

    /// Global L2 norm over every buffer (f64 sums); not finite exactly when some gradient is
    /// not finite.
    pub fn norm(&self) -> f64 {
        let partials: Vec<f64> = self
            .buffers
            .iter()
            .flat_map(|buffer| buffer.chunks(CHUNK))
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|chunk| chunk.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
            .collect();
        partials.iter().sum::<f64>().sqrt()
    }

    /// torch's `clip_grad_norm_` given the norm from [`Gradients::norm`]: scales every gradient
    /// by `max_norm / (norm + 1e-6)` when the norm is above `max_norm` (> 0).
    pub fn clip_to(&mut self, norm: f64, max_norm: f64) {
        if max_norm > 0.0 && norm > max_norm {
            let scale = (max_norm / (norm + 1e-6)) as f32;
            self.chunks_mut()
                .for_each(|chunk| chunk.iter_mut().for_each(|x| *x *= scale));
        }
    }

    fn chunks_mut(&mut self) -> impl ParallelIterator<Item = &mut [f32]> {
        self.buffers
            .iter_mut()
            .flat_map(|buffer| buffer.chunks_mut(CHUNK))
            .collect::<Vec<_>>()
            .into_par_iter()
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn accumulates_scaled_gradients_and_clips_like_torch() {
        let dev = Device::Cpu;
        let a = Var::from_vec(vec![1f32, 2.0], 2, &dev).unwrap();
        let b = Var::from_vec(vec![0f32; CHUNK + 3], CHUNK + 3, &dev).unwrap();
        let vars = vec![a.clone(), b.clone()];
        let mut grads = Gradients::zeros(&vars);
        // d/da sum(3a) = 3; d/db sum(b * 0.5) = 0.5
        let loss = ((a.as_tensor() * 3.0).unwrap().sum_all().unwrap()
            + (b.as_tensor() * 0.5).unwrap().sum_all().unwrap())
        .unwrap();
        let store = loss.backward().unwrap();
        grads.add(&vars, &store, 0.5).unwrap();
        grads.add(&vars, &store, 0.5).unwrap();
        assert_eq!(grads.buffers()[0], vec![3.0, 3.0]);
        assert!(grads.buffers()[1].iter().all(|&g| g == 0.5));
        let norm = grads.norm();
        let expected = (18.0 + 0.25 * (CHUNK + 3) as f64).sqrt();
        assert!(
            (norm - expected).abs() < 1e-9 * expected,
            "{norm} vs {expected}"
        );
        grads.clip_to(norm, 1.0);
        let scale = (1.0 / (expected + 1e-6)) as f32;
        assert_eq!(grads.buffers()[0], vec![3.0 * scale, 3.0 * scale]);
        assert!((grads.norm() - 1.0).abs() < 1e-5);
        grads.zero();
        assert_eq!(grads.norm(), 0.0);
    }

    #[test]
    fn a_non_finite_gradient_makes_the_norm_non_finite() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut buffer = vec![1e30f32; 3 * CHUNK];
            buffer[2 * CHUNK + 5] = bad;
            assert!(!Gradients::from_buffers(vec![vec![1.0], buffer])
                .norm()
                .is_finite());
        }
        // Large but finite gradients square within f64's range.
        assert!(Gradients::from_buffers(vec![vec![f32::MAX; 4]])
            .norm()
            .is_finite());
    }

    #[test]
    fn clipping_below_the_limit_or_without_one_changes_nothing() {
        let mut grads = Gradients::from_buffers(vec![vec![3.0, 4.0]]);
        let norm = grads.norm();
        grads.clip_to(norm, 10.0);
        grads.clip_to(norm, 0.0);
        assert_eq!(grads.buffers()[0], vec![3.0, 4.0]);
    }
}
