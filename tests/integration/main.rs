//! crossdistill's integration tests: one binary, so candle and the tokenizer link once.

mod cache;
mod common;
mod model_parity;
mod model_training;
mod predict_cli;
