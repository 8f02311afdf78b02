//! `CrossEncoderRerankingEvaluator` (sentence-transformers `cross_encoder/evaluation/reranking.py`,
//! `__call__` and `compute_metrics`): rerank each query's candidates with the model
//! and report MAP, MRR@k and NDCG@k (plus the first stage's `base_*` in documents mode); and the
//! same evaluator over a BEIR folder, with BM25 or a TREC run as the first stage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::beir::{reranking_samples, BeirDataset, FirstStage, SampleOptions, TrecRun};
use super::bm25::Bm25Config;
use super::eval_data::read_reranking_samples;
use super::evaluator::{check_batch_size, single_scores, Evaluator};
use super::metrics::{Candidates, RerankingMetrics, RerankingQuery, RerankingSample};
use crate::error::{Error, Result};
use crate::model::PairScorer;

/// Settings of [`RerankingEvaluator`], with ST's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RerankingOptions {
    /// Cut-off of MRR and NDCG. Default 10.
    pub at_k: usize,
    /// Documents mode: score every positive, retrieved or not (ST's default `true`).
    pub always_rerank_positives: bool,
    /// Pairs per forward pass. Default 64 (ST's).
    pub batch_size: usize,
}

impl Default for RerankingOptions {
    fn default() -> Self {
        RerankingOptions {
            at_k: 10,
            always_rerank_positives: true,
            batch_size: 64,
        }
    }
}

/// The first stage of a BEIR evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum BeirFirstStage {
    /// BM25 over the corpus (`title + " " + text`).
    Bm25(Bm25Config),
    /// A TREC run file (`qid Q0 docid rank score tag`), e.g. from a dense retriever.
    Run(PathBuf),
}

/// Where [`RerankingEvaluator::from_beir`] takes its samples from.
#[derive(Debug, Clone, PartialEq)]
pub struct BeirOptions {
    /// The qrels split (`qrels/{split}.tsv`). Default `"test"`.
    pub split: String,
    /// The first stage. Default BM25 with `k1 = 1.5`, `b = 0.75`.
    pub first_stage: BeirFirstStage,
    /// Candidates per query (default 100) and the lowest relevant grade (default 1).
    pub samples: SampleOptions,
}

impl Default for BeirOptions {
    fn default() -> Self {
        BeirOptions {
            split: "test".to_string(),
            first_stage: BeirFirstStage::Bm25(Bm25Config::default()),
            samples: SampleOptions::default(),
        }
    }
}

/// ST's `CrossEncoderRerankingEvaluator`: metrics `map`, `mrr@{k}`, `ndcg@{k}`, and in documents
/// mode `base_map`, `base_mrr@{k}`, `base_ndcg@{k}` (the first stage's own order); primary metric
/// `ndcg@{k}`. Scores use the model's default activation, as ST's `predict`.
#[derive(Debug, Clone)]
pub struct RerankingEvaluator {
    name: String,
    samples: Vec<RerankingSample>,
    options: RerankingOptions,
    primary_metric: String,
    documents_mode: bool,
}

impl RerankingEvaluator {
    /// An evaluator over `samples`. Errors when there is no sample, `at_k` or `batch_size` is 0.
    pub fn new(
        name: impl Into<String>,
        samples: Vec<RerankingSample>,
        options: RerankingOptions,
    ) -> Result<Self> {
        let name = name.into();
        if samples.is_empty() {
            return Err(Error::invalid(format!(
                "reranking evaluator {name:?} has no samples; need at least one query"
            )));
        }
        // Checks at_k.
        RerankingMetrics::new(options.at_k)?;
        check_batch_size(options.batch_size)?;
        let documents_mode = samples
            .iter()
            .any(|s| matches!(s.candidates, Candidates::Documents(_)));
        Ok(RerankingEvaluator {
            primary_metric: format!("ndcg@{}", options.at_k),
            name,
            samples,
            options,
            documents_mode,
        })
    }

    /// An evaluator over the samples of a JSONL file (see
    /// [`read_reranking_samples`](super::read_reranking_samples)).
    pub fn from_jsonl(
        name: impl Into<String>,
        path: &Path,
        options: RerankingOptions,
    ) -> Result<Self> {
        Self::new(name, read_reranking_samples(path)?, options)
    }

    /// An evaluator over a BEIR folder: documents-mode samples whose positives are the judged
    /// documents with grade >= `min_grade` and whose documents are the first stage's top
    /// `top_k` (see [`reranking_samples`](super::reranking_samples)).
    ///
    /// Errors when the folder or run cannot be read, or no judged query has a positive.
    pub fn from_beir(
        name: impl Into<String>,
        dir: &Path,
        beir: &BeirOptions,
        options: RerankingOptions,
    ) -> Result<Self> {
        let dataset = BeirDataset::read(dir, &beir.split)?;
        let built = match &beir.first_stage {
            BeirFirstStage::Bm25(config) => {
                let index = dataset.bm25_index(*config)?;
                reranking_samples(&dataset, FirstStage::Bm25(&index), beir.samples)?
            }
            BeirFirstStage::Run(path) => {
                let run = TrecRun::read(path)?;
                reranking_samples(&dataset, FirstStage::Run(&run), beir.samples)?
            }
        };
        if built.samples.is_empty() {
            return Err(Error::invalid(format!(
                "BEIR folder {} (split {:?}): no judged query has a document of grade >= {}",
                dir.display(),
                beir.split,
                beir.samples.min_grade
            ))
            .with_hint("check the qrels file, or lower min_grade"));
        }
        Self::new(name, built.samples, options)
    }

    /// The samples.
    pub fn samples(&self) -> &[RerankingSample] {
        &self.samples
    }

    /// The settings.
    pub fn options(&self) -> RerankingOptions {
        self.options
    }

    fn queries(&self) -> Vec<RerankingQuery<'_>> {
        self.samples
            .iter()
            .map(|s| s.to_query(self.options.always_rerank_positives))
            .collect()
    }

    /// The (query, document) pairs the model scores, in order: the documents of every query
    /// that has a relevant document to score (ST skips the others).
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.queries()
            .iter()
            .filter(|query| query.needs_scores())
            .flat_map(|query| query.docs.iter().map(|&doc| (query.query, doc)))
            .collect()
    }

    /// The metrics given one score per [`Self::pairs`] entry, in that order.
    ///
    /// Errors when the number of scores differs or a score is NaN.
    pub fn metrics_from_scores(&self, scores: &[f64]) -> Result<BTreeMap<String, f64>> {
        let queries = self.queries();
        let expected: usize = queries
            .iter()
            .filter(|q| q.needs_scores())
            .map(|q| q.docs.len())
            .sum();
        if scores.len() != expected {
            return Err(Error::invalid(format!(
                "reranking evaluator {:?}: {} scores for {expected} pairs; need one per pair",
                self.name,
                scores.len()
            )));
        }
        let mut metrics = RerankingMetrics::new(self.options.at_k)?;
        let mut start = 0;
        for query in &queries {
            if query.needs_scores() {
                let end = start + query.docs.len();
                metrics.add(query, &scores[start..end])?;
                start = end;
            } else {
                metrics.add(query, &[])?;
            }
        }
        Ok(metrics.finish())
    }
}

impl Evaluator for RerankingEvaluator {
    fn name(&self) -> &str {
        &self.name
    }

    fn evaluate_with_progress(
        &self,
        model: &dyn PairScorer,
        progress: &mut dyn FnMut(usize),
    ) -> Result<BTreeMap<String, f64>> {
        let pairs = self.pairs();
        let what = format!("reranking evaluator {:?}", self.name);
        let scores = single_scores(model, &pairs, self.options.batch_size, &what, progress)?;
        self.metrics_from_scores(&scores)
    }

    fn pair_count(&self) -> usize {
        self.pairs().len()
    }

    /// The keys of [`Self::metrics_from_scores`] (which every score vector gives).
    fn metric_names(&self) -> Vec<String> {
        self.metrics_from_scores(&vec![0.0; self.pair_count()])
            .map(|metrics| metrics.into_keys().collect())
            .unwrap_or_default()
    }

    fn primary_metric(&self) -> &str {
        &self.primary_metric
    }

    fn description(&self) -> &str {
        "Cross Encoder Reranking"
    }

    /// `{"at_k": k}`, plus `always_rerank_positives` in documents mode (ST's config dict).
    fn config(&self) -> serde_json::Value {
        if self.documents_mode {
            json!({
                "at_k": self.options.at_k,
                "always_rerank_positives": self.options.always_rerank_positives,
            })
        } else {
            json!({ "at_k": self.options.at_k })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(query: &str, positive: &[&str], candidates: Candidates) -> RerankingSample {
        RerankingSample {
            query: query.into(),
            positive: positive.iter().map(|s| s.to_string()).collect(),
            candidates,
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hand_checked_negative_mode() {
        // q1: docs [p, n1, n2] scored [0.2, 0.9, 0.1]: p ranks 2nd → MRR 1/2, AP 1/2,
        // NDCG = (1/log2 3) / 1 = 0.6309297535714575.
        // q2: docs [p, n] scored [0.8, 0.3]: p first → all 1.
        let evaluator = RerankingEvaluator::new(
            "dev",
            vec![
                sample("q1", &["p"], Candidates::Negative(strings(&["n1", "n2"]))),
                sample("q2", &["p"], Candidates::Negative(strings(&["n"]))),
            ],
            RerankingOptions::default(),
        )
        .unwrap();
        assert_eq!(
            evaluator.pairs(),
            [
                ("q1", "p"),
                ("q1", "n1"),
                ("q1", "n2"),
                ("q2", "p"),
                ("q2", "n")
            ]
        );
        let metrics = evaluator
            .metrics_from_scores(&[0.2, 0.9, 0.1, 0.8, 0.3])
            .unwrap();
        assert_eq!(metrics["mrr@10"], 0.75);
        assert_eq!(metrics["map"], 0.75);
        assert!((metrics["ndcg@10"] - (1.0 + 1.0 / 3f64.log2()) / 2.0).abs() < 1e-12);
        assert!(!metrics.contains_key("base_map"));
        assert_eq!(evaluator.primary_metric(), "ndcg@10");
        assert_eq!(evaluator.config(), json!({"at_k": 10}));
    }

    #[test]
    fn hand_checked_documents_mode_with_base_metrics() {
        // documents [a, p, b], positive p. Base: p at rank 2 → MRR 1/2, AP 1/2.
        // Reranked (always_rerank_positives): docs [p, a, b] scored [0.9, 0.5, 0.1] → all 1.
        // A second query retrieved no positive but still scores its positive first → its base
        // metrics are 0; reranked, [p2, c] scored [0.1, 0.2] → MRR 1/2.
        let evaluator = RerankingEvaluator::new(
            "docs",
            vec![
                sample(
                    "q",
                    &["p"],
                    Candidates::Documents(strings(&["a", "p", "b"])),
                ),
                sample("r", &["p2"], Candidates::Documents(strings(&["c"]))),
            ],
            RerankingOptions {
                at_k: 1,
                ..RerankingOptions::default()
            },
        )
        .unwrap();
        assert_eq!(
            evaluator.pairs(),
            [("q", "p"), ("q", "a"), ("q", "b"), ("r", "p2"), ("r", "c")]
        );
        let metrics = evaluator
            .metrics_from_scores(&[0.9, 0.5, 0.1, 0.1, 0.2])
            .unwrap();
        // @1: q's p first → 1; r's p2 second → 0 (cut-off 1). AP: 1 and 1/2.
        assert_eq!(metrics["mrr@1"], 0.5);
        assert_eq!(metrics["ndcg@1"], 0.5);
        assert_eq!(metrics["map"], 0.75);
        // Base: q: p at rank 2 → MRR@1 0, AP 1/2; r: nothing retrieved → 0.
        assert_eq!(metrics["base_mrr@1"], 0.0);
        assert_eq!(metrics["base_map"], 0.25);
        assert_eq!(metrics["base_ndcg@1"], 0.0);
        assert_eq!(
            evaluator.config(),
            json!({"at_k": 1, "always_rerank_positives": true})
        );
    }

    #[test]
    fn queries_without_positive_count_zero_and_are_not_scored() {
        let evaluator = RerankingEvaluator::new(
            "dev",
            vec![
                sample("q", &["p"], Candidates::Negative(strings(&["n"]))),
                sample("empty", &[], Candidates::Negative(strings(&["n"]))),
            ],
            RerankingOptions::default(),
        )
        .unwrap();
        assert_eq!(evaluator.pairs().len(), 2);
        let metrics = evaluator.metrics_from_scores(&[1.0, 0.0]).unwrap();
        assert_eq!(metrics["map"], 0.5);
        let err = evaluator
            .metrics_from_scores(&[1.0])
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 scores for 2 pairs"), "{err}");
    }

    #[test]
    fn bad_settings_are_errors() {
        let one = vec![sample("q", &["p"], Candidates::Negative(vec![]))];
        let err = RerankingEvaluator::new("x", vec![], RerankingOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no samples"), "{err}");
        let options = RerankingOptions {
            at_k: 0,
            ..RerankingOptions::default()
        };
        assert!(RerankingEvaluator::new("x", one.clone(), options).is_err());
        let options = RerankingOptions {
            batch_size: 0,
            ..RerankingOptions::default()
        };
        let err = RerankingEvaluator::new("x", one, options)
            .unwrap_err()
            .to_string();
        assert!(err.contains("batch_size is 0"), "{err}");
    }

    #[test]
    fn beir_folder_with_a_run_gives_documents_mode_samples() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("qrels")).unwrap();
        std::fs::write(
            root.join("corpus.jsonl"),
            "{\"_id\": \"d1\", \"title\": \"\", \"text\": \"cats eat fish\"}\n\
             {\"_id\": \"d2\", \"text\": \"dogs bark\"}\n",
        )
        .unwrap();
        std::fs::write(
            root.join("queries.jsonl"),
            "{\"_id\": \"q1\", \"text\": \"what do cats eat\"}\n",
        )
        .unwrap();
        std::fs::write(
            root.join("qrels/test.tsv"),
            "query-id\tcorpus-id\tscore\nq1\td1\t1\n",
        )
        .unwrap();
        std::fs::write(
            root.join("run.trec"),
            "q1 Q0 d2 1 9.0 x\nq1 Q0 d1 2 8.0 x\n",
        )
        .unwrap();
        let beir = BeirOptions {
            first_stage: BeirFirstStage::Run(root.join("run.trec")),
            ..BeirOptions::default()
        };
        let evaluator =
            RerankingEvaluator::from_beir("beir", root, &beir, RerankingOptions::default())
                .unwrap();
        assert_eq!(
            evaluator.samples(),
            [sample(
                "what do cats eat",
                &["cats eat fish"],
                Candidates::Documents(strings(&["dogs bark", "cats eat fish"]))
            )]
        );
        // BM25 ranks d1 first (it shares "cats" and "eat" with the query).
        let evaluator = RerankingEvaluator::from_beir(
            "beir",
            root,
            &BeirOptions::default(),
            RerankingOptions::default(),
        )
        .unwrap();
        let Candidates::Documents(documents) = &evaluator.samples()[0].candidates else {
            panic!("BEIR samples are in documents mode");
        };
        assert_eq!(documents[0], "cats eat fish");
        let err = RerankingEvaluator::from_beir(
            "beir",
            root,
            &BeirOptions {
                split: "dev".into(),
                ..BeirOptions::default()
            },
            RerankingOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no qrels file for split \"dev\""), "{err}");
    }
}
