//! Hard-negative mining and dataset format conversion (sentence-transformers'
//! `mine_hard_negatives` in `util/hard_negatives.py`).
//!
//! ```text
//! (anchor, positive) pairs ──► BiEncoder embeddings (cached) ──► exact top-k in query chunks
//!   ──► optional teacher rescoring ──► mask positives, margin/score filters, window, sampling
//!   ──► triplet | n-tuple | labeled-pair | labeled-list table + statistics
//! ```
//!
//! [`mine_hard_negatives`] runs it all; [`MineOptions`] carries sentence-transformers' parameters
//! under their names. The result's [`Table`] writes JSONL or Parquet that `train` reads directly.
//! [`convert`] moves data between the formats (and turns class-labelled pairs into triplets).
//!
//! ```no_run
//! use crossdistill::mine::{mine_hard_negatives, MineOptions, PairDataset, Silent};
//! use crossdistill::model::bi_encoder::{BiEncoder, BiEncoderOptions};
//!
//! let embedder = BiEncoder::load("sentence-transformers/all-MiniLM-L6-v2", None, &BiEncoderOptions::default())?;
//! let dataset = PairDataset::new("query", "answer", vec![
//!     ("what is python".into(), "Python is a programming language.".into()),
//!     ("capital of france".into(), "Paris is the capital of France.".into()),
//! ])?;
//! let corpus = vec!["Pythons are snakes.".to_string(), "Lyon is in France.".to_string()];
//! let options = MineOptions { num_negatives: 1, ..MineOptions::default() };
//! let mined = mine_hard_negatives(&dataset, Some(&corpus), &embedder, None, &options, &mut Silent)?;
//! mined.table.write(std::path::Path::new("triplets.jsonl"))?;
//! println!("{}", mined.report);
//! # Ok::<(), crossdistill::error::Error>(())
//! ```

mod convert;
mod embedding_cache;
mod miner;
mod options;
mod output;
mod pairs;
mod search;
mod select;
mod stats;
mod table;

pub use convert::{
    convert, read_groups, sample_triplets, write_groups, ConvertFormat, ConvertNotes, Document,
    Group, Groups,
};
pub use embedding_cache::{cache_path, model_fingerprint, read_npy, write_npy};
pub use miner::{mine_hard_negatives, MineProgress, Mined, Silent};
pub use options::{MineOptions, MinePlan, OutputFormat, SamplingStrategy};
pub use pairs::PairDataset;
pub use search::{exact_top_k, top_k_of_row, Candidates};
pub use select::{apply_filters, mask_positives, pick_negatives, ScoreFilters, Skipped, Slot};
pub use stats::{MineReport, ScoreSummary};
pub use table::{Column, Table, Values};

#[cfg(test)]
mod tests;
