//! crossdistill: distill cross-encoder rerankers.
#![warn(missing_docs)]

pub mod error;
pub mod hub;
pub mod loss;
