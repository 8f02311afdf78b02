//! crossdistill: distill cross-encoder rerankers.
//!
//! ```text
//! recipe.toml ──► Plan ──► producer thread (teacher scores) ──► bounded channel ──► trainer (student)
//! ```
//!
//! Modules in dependency order (each imports only those above it): [`error`], [`fsutil`],
//! [`hub`], [`tokenize`], [`model`], [`teacher`], [`eval`], [`recipe`], [`train`], [`cli`].
//!
//! ```no_run
//! use crossdistill::model::{CrossEncoder, LoadOptions, ScoreActivation};
//!
//! let model = CrossEncoder::load("tests/fixtures/tiny-bert-ce", None, &LoadOptions::default())?;
//! let scores = model.predict(&[("what is python", "Python is a language.")], 32, ScoreActivation::Sigmoid)?;
//! println!("{scores:?}");
//! # Ok::<(), crossdistill::error::Error>(())
//! ```
#![warn(missing_docs)]

pub mod cache;
pub mod card;
pub mod cli;
pub mod data;
pub mod error;
pub mod eval;
pub mod fsutil;
pub mod hub;
pub mod loss;
pub mod mine;
pub mod model;
pub mod pipeline;
pub mod recipe;
pub mod teacher;
pub mod tokenize;
pub mod train;
