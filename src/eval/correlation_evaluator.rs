//! `CrossEncoderCorrelationEvaluator` (sentence-transformers
//! `cross_encoder/evaluation/correlation.py`, `__call__`): Pearson and Spearman correlation
//! between the model's scores and gold similarity labels.

use std::collections::BTreeMap;
use std::path::Path;

use super::correlation::correlation_metrics;
use super::eval_data::{read_labelled_pairs, LabelColumn, LABEL_CANDIDATES};
use super::evaluator::{check_batch_size, single_scores, Evaluator};
use crate::error::{Error, Result};
use crate::model::PairScorer;

/// ST's `CrossEncoderCorrelationEvaluator`: metrics `pearson` and `spearman` (primary) between
/// gold labels and the model's scores (default activation, as ST's `predict`).
#[derive(Debug, Clone)]
pub struct CorrelationEvaluator {
    name: String,
    pairs: Vec<(String, String)>,
    labels: Vec<f64>,
    batch_size: usize,
}

impl CorrelationEvaluator {
    /// An evaluator over `pairs` with gold `labels`. Errors when the counts differ, there are
    /// fewer than 2 pairs, or `batch_size` is 0.
    pub fn new(
        name: impl Into<String>,
        pairs: Vec<(String, String)>,
        labels: Vec<f64>,
        batch_size: usize,
    ) -> Result<Self> {
        let name = name.into();
        if pairs.len() != labels.len() {
            return Err(Error::invalid(format!(
                "correlation evaluator {name:?}: {} pairs but {} labels; need one label per pair",
                pairs.len(),
                labels.len()
            )));
        }
        if pairs.len() < 2 {
            return Err(Error::invalid(format!(
                "correlation evaluator {name:?} has {} pair(s); a correlation needs at least 2",
                pairs.len()
            )));
        }
        check_batch_size(batch_size)?;
        Ok(CorrelationEvaluator {
            name,
            pairs,
            labels,
            batch_size,
        })
    }

    /// An evaluator over a JSONL file of labelled pairs (see
    /// [`read_labelled_pairs`](super::read_labelled_pairs)); `label = None` takes the first of
    /// `label`, `labels`, `score`, `scores`.
    pub fn from_jsonl(
        name: impl Into<String>,
        path: &Path,
        columns: Option<[&str; 2]>,
        label: Option<&str>,
        batch_size: usize,
    ) -> Result<Self> {
        let label = label.map_or(LabelColumn::FirstOf(LABEL_CANDIDATES), LabelColumn::Named);
        let data = read_labelled_pairs(path, columns, label)?;
        Self::new(name, data.pairs, data.labels, batch_size)
    }

    /// The pairs the model scores.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.pairs
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect()
    }

    /// The gold labels.
    pub fn labels(&self) -> &[f64] {
        &self.labels
    }

    /// `pearson` and `spearman` of `scores` (one per pair) against the gold labels.
    pub fn metrics_from_scores(&self, scores: &[f64]) -> Result<BTreeMap<String, f64>> {
        correlation_metrics(&self.labels, scores)
    }
}

impl Evaluator for CorrelationEvaluator {
    fn name(&self) -> &str {
        &self.name
    }

    fn evaluate_with_progress(
        &self,
        model: &dyn PairScorer,
        progress: &mut dyn FnMut(usize),
    ) -> Result<BTreeMap<String, f64>> {
        let what = format!("correlation evaluator {:?}", self.name);
        let scores = single_scores(model, &self.pairs(), self.batch_size, &what, progress)?;
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
        "spearman"
    }

    fn description(&self) -> &str {
        "Cross Encoder Correlation"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(n: usize) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("q{i}"), format!("d{i}"))).collect()
    }

    #[test]
    fn hand_checked_correlations() {
        // Scores 1, 2, 4 against labels 1, 2, 3: Spearman 1 (same order); Pearson by hand:
        // centred scores (-4/3, -1/3, 5/3), labels (-1, 0, 1): r = 3 / sqrt(42/9 · 2)
        // = 0.9819805060619657.
        let evaluator =
            CorrelationEvaluator::new("sts", pairs(3), vec![1.0, 2.0, 3.0], 32).unwrap();
        let metrics = evaluator.metrics_from_scores(&[1.0, 2.0, 4.0]).unwrap();
        assert!((metrics["spearman"] - 1.0).abs() < 1e-12);
        assert!((metrics["pearson"] - 0.9819805060619657).abs() < 1e-12);
        assert_eq!(evaluator.primary_metric(), "spearman");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let err = CorrelationEvaluator::new("sts", pairs(3), vec![1.0], 32)
            .unwrap_err()
            .to_string();
        assert!(err.contains("3 pairs but 1 labels"), "{err}");
        let err = CorrelationEvaluator::new("sts", pairs(1), vec![1.0], 32)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs at least 2"), "{err}");
    }
}
