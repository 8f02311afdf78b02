//! crossdistill: distill cross-encoder rerankers.
#![warn(missing_docs)]

pub mod error;
pub mod eval;
pub mod hub;
