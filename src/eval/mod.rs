//! Evaluation: the model-independent half of sentence-transformers' CrossEncoder evaluators.
//!
//! Everything here is a pure function over scores, labels and documents, with
//! sentence-transformers' definitions and metric names (`cross_encoder/evaluation/`); the
//! evaluators that run a model
//! build on it:
//!
//! * [`metrics`]: reranking (`CrossEncoderRerankingEvaluator`): MRR@k, NDCG@k (sklearn's
//!   tie-averaged `ndcg_score`), MAP (sklearn's `average_precision_score`), the sample format with
//!   `documents` or `negative`, and [`RerankingMetrics`] for `map`, `mrr@k`, `ndcg@k`, `base_*`.
//! * [`correlation`]: `pearson`, `spearman` (`CrossEncoderCorrelationEvaluator`).
//! * [`classification`]: `CrossEncoderClassificationEvaluator`'s threshold sweeps and F1s.
//! * [`agreement`](mod@agreement): Spearman and Kendall's tau-b between student and teacher scores.
//! * [`beir`]: BEIR folders, TREC runs, and reranking samples from a first stage.
//! * [`bm25`]: an Okapi BM25 first stage.
//!
//! The evaluators score a [`CrossEncoder`](crate::model::CrossEncoder) through the
//! [`Evaluator`] trait, and [`write_csv`] logs their results as sentence-transformers does:
//!
//! * [`RerankingEvaluator`]: JSONL reranking samples, or a BEIR folder with BM25 or a TREC run
//!   as the first stage ([`RerankingEvaluator::from_beir`]).
//! * [`CorrelationEvaluator`], [`ClassificationEvaluator`]: JSONL labelled pairs
//!   ([`read_labelled_pairs`]).
//! * [`AgreementEvaluator`]: student against teacher scores.
//! * `crate::train::evals::from_section` builds the evaluator a recipe's `[[eval]]` section describes.
//!
//! ```
//! use crossdistill::eval::{Candidates, RerankingMetrics, RerankingSample};
//!
//! let sample = RerankingSample {
//!     query: "what do cats eat".into(),
//!     positive: vec!["Cats eat fish.".into()],
//!     candidates: Candidates::Negative(vec!["Dogs bark.".into()]),
//! };
//! let query = sample.to_query(true);
//! // Scores a model gave to (query, doc) for each of query.docs.
//! let scores = vec![vec![0.9, 0.1]];
//! let metrics = RerankingMetrics::compute(10, &[query], &scores)?;
//! assert_eq!(metrics["ndcg@10"], 1.0);
//! # Ok::<(), crossdistill::error::Error>(())
//! ```

pub mod agreement;
mod agreement_evaluator;
pub mod beir;
pub mod bm25;
pub mod classification;
mod classification_evaluator;
pub mod correlation;
mod correlation_evaluator;
mod eval_data;
mod evaluator;
pub mod metrics;
mod reranking_evaluator;

pub use agreement::{agreement, kendall_tau_b, mean_query_agreement};
pub use agreement_evaluator::{AgreementEvaluator, TEACHER_SCORE_CANDIDATES};
pub use beir::{
    qrels_path, read_corpus, read_qrels, read_queries, reranking_samples, splits, BeirDataset,
    BeirDocument, BeirQuery, BeirSamples, FirstStage, Judgment, QrelsLine, RunEntry, SampleOptions,
    TrecRun,
};
pub use bm25::{tokenize, Bm25Config, Bm25Index};
pub use classification::{
    argmax_rows, find_best_acc_and_threshold, find_best_f1_and_threshold, BestF1,
    BinaryClassificationMetrics, MulticlassMetrics, SweepScore,
};
pub use classification_evaluator::ClassificationEvaluator;
pub use correlation::{average_ranks, correlation_metrics, pearson, spearman};
pub use correlation_evaluator::CorrelationEvaluator;
pub use eval_data::{
    read_jsonl_objects, read_labelled_pairs, read_reranking_samples, LabelColumn, LabelledPairs,
    LABEL_CANDIDATES, PAIR_COLUMN_CANDIDATES,
};
pub use evaluator::{csv_path, write_csv, Evaluator};
pub use metrics::{
    average_precision, descending_order, mrr_at_k, ndcg_at_k, Candidates, QueryMetrics,
    RerankingMetrics, RerankingQuery, RerankingSample,
};
pub use reranking_evaluator::{BeirFirstStage, BeirOptions, RerankingEvaluator, RerankingOptions};
