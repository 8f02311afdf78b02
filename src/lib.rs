//! crossdistill: distill cross-encoder rerankers.
//!
//! ```text
//! recipe.toml ──► Plan ──► producer thread (teacher scores) ──► bounded channel ──► trainer (student)
//! ```
//!
//! Modules in dependency order, as declared below (each imports only those above it):
//! [`error`], [`fingerprint`], [`fsutil`], [`hub`], [`params`]; [`data`], [`tokenize`];
//! [`model`], [`teacher`]; [`cache`], [`mine`]; [`loss`]; [`eval`]; [`card`], [`recipe`];
//! [`pipeline`], [`train`]; [`cli`].
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

// Foundations: the error type, the hashes that name what is stored, file-system helpers, the
// Hugging Face hub, the reader of TOML parameter values.
pub mod error;
pub mod fingerprint;
pub mod fsutil;
pub mod hub;
pub mod params;
pub mod process_settings;

// Inputs: rows of text from JSONL/CSV/Parquet, and their tokens.
pub mod data;
pub mod tokenize;

// Models: the trainable student, and the teachers that score for it.
pub mod model;
pub mod teacher;

// Prepared ahead of training: the teacher-score cache, mined hard negatives.
pub mod cache;
pub mod mine;

// What the student learns from.
pub mod loss;

// How the student is measured.
pub mod eval;

// The model card; the recipe, read and checked.
pub mod card;
pub mod recipe;

// Running: the producer pipeline and the trainer.
pub mod pipeline;
pub mod train;

// The command line.
pub mod cli;
