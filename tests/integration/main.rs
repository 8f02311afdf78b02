//! crossdistill's integration tests: one binary, so candle and the tokenizer link once.

mod common;
mod mine;
mod model_parity;
mod model_training;
mod predict_cli;
