//! The student trainer: optimizer, schedule, and the training loop.

pub mod optim;
pub mod schedule;

pub use optim::{clip_grad_norm, AdamW, AdamWConfig};
pub use schedule::{Schedule, ScheduleKind};
