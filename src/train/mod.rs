//! The student trainer: the plan built from a recipe, optimizer, schedule, checkpoints and the
//! training loop.

pub mod checkpoint;
pub mod evals;
mod finish;
pub mod optim;
pub mod plan;
pub mod preflight;
pub mod resume;
pub mod schedule;
mod trainer;

pub use optim::{clip_grad_norm, AdamW, AdamWConfig};
pub use plan::{Plan, PlannedLoss};
pub use schedule::{Schedule, ScheduleKind};
pub use trainer::{train, LogWindow, Silent, TrainProgress, TrainReport};
