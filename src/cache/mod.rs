//! The persistent teacher-score cache: `(teacher fingerprint, query, passage) → score`.
//!
//! ```text
//! pairs ──► PairKey (xxh3-128) ──► ScoreCache lookup ──hits──────────────► scores
//!                                        │ misses (distinct)                 ▲
//!                                        └──► teacher ──► insert + commit ───┘
//! ```
//!
//! A [`ScoreCache`] is one redb file (`DIR/scores.redb`). Scores are keyed by the teacher's
//! [`fingerprint`](crate::teacher::Teacher::fingerprint) (weights and tokenizer hashes,
//! backend, max_length, activation, ensemble members), so a different teacher never reads
//! another's scores. Every insert is one durable transaction: a process killed at any moment
//! leaves every committed score readable and nothing half-written.
//!
//! [`CachedTeacher`] puts any [`Teacher`](crate::teacher::Teacher) behind a cache; the trainer
//! uses it when a recipe has `[cache]`, and [`precompute`] fills a cache ahead of training
//! (`crossdistill score`, optionally one [`Shard`] of the pairs per machine, joined with
//! [`ScoreCache::merge_from`]). [`export`] and [`import`] move scores to and from Parquet/JSONL.
//!
//! ```no_run
//! use crossdistill::cache::ScoreCache;
//!
//! let mut cache = ScoreCache::open(std::path::Path::new("cache"))?;
//! cache.insert("my-teacher", &[("what is python", "Python is a language.", 7.5)])?;
//! let scores = cache.lookup("my-teacher", &[("what is python", "Python is a language.")])?;
//! assert_eq!(scores, vec![Some(7.5)]);
//! # Ok::<(), crossdistill::error::Error>(())
//! ```

mod cached_teacher;
mod file_backend;
mod guard;
mod key;
mod precompute;
mod store;
mod transfer;

pub use cached_teacher::{attach, CacheCounters, CacheCounts, CachedTeacher, Misses};
pub use key::{PairKey, Shard};
pub use precompute::{
    count_missing, precompute, NoProgress, PrecomputeProgress, PrecomputeSummary,
};
pub use store::{
    damage_hint, entry_check, CacheEntry, CacheStats, EntryBatch, InsertReport, ScoreCache,
    TeacherStats, FILE_NAME, FORMAT, MERGE_CHUNK,
};
pub use transfer::{export, export_readable, import, ExportFormat, ImportReport, EXPORT_COLUMNS};

#[cfg(test)]
mod tests;
