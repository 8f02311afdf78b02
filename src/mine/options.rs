//! What mining is asked to do ([`MineOptions`], sentence-transformers' parameter names and
//! defaults), and the checks and derived values ([`MinePlan`]) computed once before any work.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The shape of the mined dataset (`output_format` of `mine_hard_negatives`,
/// `util/hard_negatives.py`); the column names are sentence-transformers'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `(anchor, positive, negative)`: one row per valid negative of each (query, positive).
    Triplet,
    /// `(anchor, positive, negative_1, …, negative_N)`: one row per (query, positive) that has all
    /// N negatives.
    NTuple,
    /// `(anchor, positive, label)`: per query, every positive (label 1) then every valid negative
    /// (label 0).
    LabeledPair,
    /// `(anchor, [positive, negatives…], labels)`: one row per (query, positive) with at least one
    /// valid negative.
    LabeledList,
}

impl OutputFormat {
    /// Every format, in the order the help text lists them.
    pub const ALL: [OutputFormat; 4] = [
        OutputFormat::Triplet,
        OutputFormat::NTuple,
        OutputFormat::LabeledPair,
        OutputFormat::LabeledList,
    ];

    /// The sentence-transformers name: `triplet`, `n-tuple`, `labeled-pair`, `labeled-list`.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Triplet => "triplet",
            OutputFormat::NTuple => "n-tuple",
            OutputFormat::LabeledPair => "labeled-pair",
            OutputFormat::LabeledList => "labeled-list",
        }
    }

    /// Parse a sentence-transformers name.
    pub fn parse(name: &str) -> Result<Self> {
        OutputFormat::ALL
            .into_iter()
            .find(|format| format.name() == name)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown output format `{name}`; expected triplet, n-tuple, labeled-pair or labeled-list"
                ))
                .with_hint("`n-tuple-scores` is `n-tuple` with output_scores (--output-scores)")
            })
    }
}

impl std::fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How negatives are taken from the candidate window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplingStrategy {
    /// The `num_negatives` best candidates.
    Top,
    /// `num_negatives` candidates drawn uniformly (seeded) from the valid ones, then sorted by
    /// score, best first.
    Random,
}

/// The parameters of `mine_hard_negatives`, with sentence-transformers' names and defaults
/// (the signature of `mine_hard_negatives`, `util/hard_negatives.py`). `faiss_batch_size` becomes
/// `query_chunk_size` (exact search, no FAISS).
#[derive(Debug, Clone, PartialEq)]
pub struct MineOptions {
    /// Skip this many of the best surviving candidates (default 0).
    pub range_min: usize,
    /// Consider at most this many candidates per query; default
    /// `range_min + num_negatives + max_positives`, or `range_min + 10·num_negatives +
    /// max_positives` when a margin or `max_score` is set.
    pub range_max: Option<usize>,
    /// Drop candidates scoring above this.
    pub max_score: Option<f32>,
    /// Drop candidates scoring below this.
    pub min_score: Option<f32>,
    /// Drop candidates with `score + absolute_margin > min positive score` of their query.
    pub absolute_margin: Option<f32>,
    /// Drop candidates with `score > p − |p|·relative_margin`, `p` the query's minimum positive
    /// score (sign-safe, as sentence-transformers ≥ 5.6).
    pub relative_margin: Option<f32>,
    /// Negatives per (query, positive) (default 3).
    pub num_negatives: usize,
    /// Top or random (default top).
    pub sampling_strategy: SamplingStrategy,
    /// Text put before every query (already resolved against the model's prompts).
    pub query_prompt: Option<String>,
    /// Text put before every corpus document (already resolved).
    pub corpus_prompt: Option<String>,
    /// Keep positives among the candidates (for reranking eval sets); forces `n-tuple`.
    pub include_positives: bool,
    /// The output shape (default triplet).
    pub output_format: OutputFormat,
    /// Add the scores (`scores`, or `score`/`scores` replacing the labels).
    pub output_scores: bool,
    /// Texts per embedding forward pass, and pairs per teacher batch (default 32).
    pub batch_size: usize,
    /// Queries scored against the whole corpus at once; default: as many as keep the score
    /// chunk near 16 M floats (64 MiB), at most 16384.
    pub query_chunk_size: Option<usize>,
    /// Seed of random sampling.
    pub seed: u64,
    /// Where to keep query and corpus embeddings between runs (`.npy` files keyed by model,
    /// prompt and texts); none by default.
    pub cache_folder: Option<PathBuf>,
}

impl Default for MineOptions {
    fn default() -> Self {
        Self {
            range_min: 0,
            range_max: None,
            max_score: None,
            min_score: None,
            absolute_margin: None,
            relative_margin: None,
            num_negatives: 3,
            sampling_strategy: SamplingStrategy::Top,
            query_prompt: None,
            corpus_prompt: None,
            include_positives: false,
            output_format: OutputFormat::Triplet,
            output_scores: false,
            batch_size: 32,
            query_chunk_size: None,
            seed: 42,
            cache_folder: None,
        }
    }
}

/// The score chunk [`MineOptions::query_chunk_size`] aims at by default, in floats.
const SCORE_CHUNK_FLOATS: usize = 1 << 24;

/// sentence-transformers' `faiss_batch_size` default, the cap of the automatic chunk.
const MAX_QUERY_CHUNK: usize = 16384;

/// Checked options with the derived values.
#[derive(Debug, Clone, PartialEq)]
pub struct MinePlan {
    /// The candidate window's end (given or derived).
    pub range_max: usize,
    /// True when `range_max` was derived.
    pub range_max_derived: bool,
    /// The output format after `include_positives` (which forces n-tuple).
    pub output_format: OutputFormat,
    /// Candidates retrieved per query: `range_max + max_positives` (positives are masked
    /// afterwards, so the window still fills).
    pub candidates_per_query: usize,
    /// Whether a margin or `max_score` asks for teacher rescoring (when a teacher is given).
    pub wants_rescoring: bool,
    /// Things the user should know (a forced format, ignored parameters).
    pub notes: Vec<String>,
}

impl MineOptions {
    /// True when a margin or `max_score` is set: these trigger the ×10 window and rescoring.
    pub fn has_score_filter(&self) -> bool {
        self.absolute_margin.is_some() || self.relative_margin.is_some() || self.max_score.is_some()
    }

    /// Queries per similarity chunk for a corpus of `corpus_len` documents.
    pub fn query_chunk(&self, corpus_len: usize) -> usize {
        self.query_chunk_size
            .unwrap_or_else(|| (SCORE_CHUNK_FLOATS / corpus_len.max(1)).clamp(1, MAX_QUERY_CHUNK))
    }

    /// Check the options (the `ValueError` checks at the top of sentence-transformers ≥ 5.7's
    /// `mine_hard_negatives`, `util/hard_negatives.py`) and derive the window for a dataset
    /// whose most frequent anchor has `max_positives` rows.
    pub fn plan(&self, max_positives: usize) -> Result<MinePlan> {
        if self.num_negatives == 0 {
            return Err(Error::invalid("num_negatives must be at least 1, found 0"));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("batch_size must be at least 1, found 0"));
        }
        if self.query_chunk_size == Some(0) {
            return Err(Error::invalid(
                "query_chunk_size must be at least 1, found 0",
            ));
        }
        for (name, value) in [
            ("max_score", self.max_score),
            ("min_score", self.min_score),
            ("absolute_margin", self.absolute_margin),
            ("relative_margin", self.relative_margin),
        ] {
            if let Some(value) = value.filter(|v| !v.is_finite()) {
                return Err(Error::invalid(format!(
                    "{name} must be a finite number, found {value}"
                )));
            }
        }
        let mut notes = Vec::new();
        let mut output_format = self.output_format;
        if self.include_positives {
            let changed = self.range_min != 0
                || self.range_max.is_some()
                || self.has_score_filter()
                || self.min_score.is_some()
                || self.sampling_strategy != SamplingStrategy::Top;
            if changed {
                notes.push(
                    "include_positives with range_min, range_max, a score filter or random \
                     sampling may still discard the positives"
                        .to_string(),
                );
            }
            if output_format != OutputFormat::NTuple {
                notes.push(format!(
                    "include_positives keeps the ranking order, so the output format is n-tuple, not {output_format}"
                ));
                output_format = OutputFormat::NTuple;
            }
        }
        let (range_max, range_max_derived) = match self.range_max {
            Some(range_max) => (range_max, false),
            None => {
                let spread = if self.has_score_filter() { 10 } else { 1 };
                (
                    self.range_min
                        .saturating_add(self.num_negatives.saturating_mul(spread))
                        .saturating_add(max_positives),
                    true,
                )
            }
        };
        if self.range_min >= range_max {
            return Err(Error::invalid(format!(
                "range_min must be smaller than range_max, found range_min={} and range_max={range_max}",
                self.range_min
            )));
        }
        if self.num_negatives > range_max - self.range_min {
            return Err(Error::invalid(format!(
                "cannot mine {} negatives per query: only {} candidates remain after skipping the first range_min={} of range_max={range_max}",
                self.num_negatives,
                range_max - self.range_min,
                self.range_min
            ))
            .with_hint("decrease num_negatives or range_min, or increase range_max"));
        }
        Ok(MinePlan {
            range_max,
            range_max_derived,
            output_format,
            candidates_per_query: range_max.saturating_add(max_positives),
            wants_rescoring: self.has_score_filter(),
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_max_defaults_follow_the_spec() {
        // `mine_hard_negatives` (util/hard_negatives.py) without range_max:
        // range_min + num_negatives + max_positives ...
        let options = MineOptions {
            range_min: 2,
            num_negatives: 3,
            ..MineOptions::default()
        };
        let plan = options.plan(4).unwrap();
        assert_eq!(plan.range_max, 2 + 3 + 4);
        assert!(plan.range_max_derived);
        assert_eq!(plan.candidates_per_query, 9 + 4);
        assert!(!plan.wants_rescoring);
        // ... ×10 when a margin or max_score is set ...
        for options in [
            MineOptions {
                absolute_margin: Some(0.0),
                ..options.clone()
            },
            MineOptions {
                relative_margin: Some(0.05),
                ..options.clone()
            },
            MineOptions {
                max_score: Some(0.9),
                ..options.clone()
            },
        ] {
            let plan = options.plan(4).unwrap();
            assert_eq!(plan.range_max, 2 + 30 + 4);
            assert!(plan.wants_rescoring);
        }
        // ... but not for min_score.
        let min_only = MineOptions {
            min_score: Some(0.1),
            ..options.clone()
        };
        assert_eq!(min_only.plan(4).unwrap().range_max, 9);
        let given = MineOptions {
            range_max: Some(50),
            ..options
        };
        assert_eq!(given.plan(4).unwrap().range_max, 50);
    }

    #[test]
    fn invalid_windows_are_rejected_with_the_values() {
        let zero = MineOptions {
            num_negatives: 0,
            ..MineOptions::default()
        };
        assert!(zero
            .plan(1)
            .unwrap_err()
            .to_string()
            .contains("num_negatives must be at least 1"));
        let inverted = MineOptions {
            range_min: 10,
            range_max: Some(10),
            ..MineOptions::default()
        };
        let error = inverted.plan(1).unwrap_err().to_string();
        assert!(error.contains("range_min=10 and range_max=10"), "{error}");
        let narrow = MineOptions {
            range_min: 8,
            range_max: Some(10),
            num_negatives: 3,
            ..MineOptions::default()
        };
        let error = narrow.plan(1).unwrap_err().to_string();
        assert!(error.contains("only 2 candidates remain"), "{error}");
        let nan = MineOptions {
            max_score: Some(f32::NAN),
            ..MineOptions::default()
        };
        assert!(nan.plan(1).unwrap_err().to_string().contains("max_score"));
    }

    #[test]
    fn include_positives_forces_n_tuple_and_says_so() {
        let options = MineOptions {
            include_positives: true,
            output_format: OutputFormat::LabeledPair,
            ..MineOptions::default()
        };
        let plan = options.plan(1).unwrap();
        assert_eq!(plan.output_format, OutputFormat::NTuple);
        assert!(plan.notes[0].contains("n-tuple, not labeled-pair"));
    }

    #[test]
    fn format_names_round_trip() {
        for format in OutputFormat::ALL {
            assert_eq!(OutputFormat::parse(format.name()).unwrap(), format);
        }
        assert!(OutputFormat::parse("n-tuple-scores")
            .unwrap_err()
            .to_string()
            .contains("output_scores"));
    }

    #[test]
    fn automatic_query_chunks_bound_the_score_matrix() {
        let options = MineOptions::default();
        assert_eq!(options.query_chunk(50_000), (1 << 24) / 50_000);
        assert_eq!(options.query_chunk(10), 16384);
        assert_eq!(options.query_chunk(100_000_000), 1);
        let fixed = MineOptions {
            query_chunk_size: Some(7),
            ..options
        };
        assert_eq!(fixed.query_chunk(50_000), 7);
    }
}
