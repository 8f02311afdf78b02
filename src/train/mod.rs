//! The student trainer: the plan built from a recipe, optimizer, schedule, checkpoints and the
//! training loop.
//!
//! From the ground up: [`trainer_state`] (what a run carries and checkpoints), [`checkpoint`],
//! the [`plan`] (everything a run needs, resolved from the recipe once), the pieces of a step
//! (`micro_batch`, `nan_policy`) and of what follows it (`metrics_log`, `evaluation`,
//! `best_model`, `held_out`, `model_card`), and the `trainer` that drives them.

mod best_model;
pub mod checkpoint;
mod deferred_steps;
mod device_adamw;
mod device_gradients;
pub mod evals;
mod evaluation;
mod fused_adamw;
mod gradients;
mod held_out;
mod metrics_log;
mod micro_batch;
mod model_card;
mod nan_policy;
pub mod optim;
pub mod plan;
pub mod preflight;
mod progress;
pub mod resume;
mod run_dir;
pub mod schedule;
mod step_losses;
mod step_optimizer;
mod trainer;
pub mod trainer_state;

pub use device_adamw::DeviceAdamW;
pub use device_gradients::DeviceGradients;
pub use gradients::Gradients;
pub use optim::{AdamW, AdamWConfig};
pub use plan::{Plan, PlannedLoss};
pub use progress::{Silent, TrainProgress};
pub use schedule::{Schedule, ScheduleKind};
pub use step_optimizer::{StepEnd, StepOptimizer, DEVICE_STEP_ENV};
pub use trainer::{train, TrainReport};
pub use trainer_state::{LogWindow, TrainerState};
