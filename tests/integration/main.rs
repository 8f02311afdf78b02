//! crossdistill's integration tests: one binary, so candle and the tokenizer link once.

mod bad_input;
mod cache;
mod cache_damage;
mod card;
mod causal_lm_teacher;
mod common;
mod custom_loss;
mod device_step;
mod eval_cli;
mod mine;
mod model_parity;
mod model_training;
mod modern_teachers;
mod multilingual;
mod non_finite;
mod onnx_teacher;
mod pipeline;
mod precision;
mod predict_cli;
mod resume_kill;
mod st_parity;
mod students;
mod training;
mod trim_vocab;
