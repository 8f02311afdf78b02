//! Learning-rate schedules with warmup, as transformers' `get_*_schedule_with_warmup`.
//!
//! Pure functions: the trainer asks for the rate of an optimizer step and applies it.

/// The shape of the schedule after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// Linear decay to 0 at the last step.
    Linear,
    /// Half-cosine decay to 0 at the last step.
    Cosine,
    /// Flat after warmup.
    Constant,
}

/// A validated schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Peak learning rate.
    pub base_lr: f64,
    /// Warmup steps (rate grows linearly from 0).
    pub warmup_steps: usize,
    /// Optimizer steps of the whole run.
    pub total_steps: usize,
    /// Shape after warmup.
    pub kind: ScheduleKind,
}

impl Schedule {
    /// `warmup_steps` = `warmup_steps` if non-zero, else ceil(`warmup_ratio` × `total_steps`),
    /// as transformers computes it.
    pub fn new(
        kind: ScheduleKind,
        base_lr: f64,
        total_steps: usize,
        warmup_ratio: f64,
        warmup_steps: usize,
    ) -> Self {
        let warmup_steps = if warmup_steps > 0 {
            warmup_steps
        } else {
            (warmup_ratio * total_steps as f64).ceil() as usize
        };
        Self {
            base_lr,
            warmup_steps,
            total_steps,
            kind,
        }
    }

    /// The rate for optimizer step `step` (0-based): transformers' `lr_lambda(step) × base_lr`.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = (step - self.warmup_steps) as f64 / decay_steps;
        let factor = match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => (1.0 - progress).max(0.0),
            ScheduleKind::Cosine => {
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        };
        self.base_lr * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_warmup_then_decay_like_transformers() {
        // total 10, warmup_ratio 0.1 -> 1 warmup step: lambda = [0, 1, 8/9, 7/9, ...]
        let s = Schedule::new(ScheduleKind::Linear, 1.0, 10, 0.1, 0);
        assert_eq!(s.warmup_steps, 1);
        assert_eq!(s.lr(0), 0.0);
        assert_eq!(s.lr(1), 1.0);
        assert!((s.lr(2) - 8.0 / 9.0).abs() < 1e-12);
        assert_eq!(s.lr(10), 0.0);
    }

    #[test]
    fn cosine_and_constant() {
        let s = Schedule::new(ScheduleKind::Cosine, 2.0, 11, 0.0, 1);
        assert_eq!(s.lr(1), 2.0);
        assert!((s.lr(6) - 1.0).abs() < 1e-12, "halfway is half the rate");
        let c = Schedule::new(ScheduleKind::Constant, 3.0, 100, 0.0, 4);
        assert_eq!(c.lr(2), 1.5);
        assert_eq!(c.lr(50), 3.0);
    }
}
