//! crossdistill's integration tests: one binary, so candle and the tokenizer link once.

mod bad_input;
mod cache;
mod cache_damage;
mod card;
mod common;
mod custom_loss;
mod eval_cli;
mod mine;
mod model_parity;
mod model_training;
mod multilingual;
mod onnx_teacher;
mod pipeline;
mod predict_cli;
mod resume_kill;
mod training;
mod trim_vocab;
