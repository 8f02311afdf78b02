//! `CrossEncoderClassificationEvaluator` (sentence-transformers
//! `cross_encoder/evaluation/classification.py`, `__call__`): binary metrics with threshold
//! search for one-logit models, F1 averages for several logits.

use std::collections::BTreeMap;
use std::path::Path;

use super::classification::{BinaryClassificationMetrics, MulticlassMetrics};
use super::eval_data::{read_labelled_pairs, LabelColumn, LABEL_CANDIDATES};
use super::evaluator::{check_batch_size, model_scores, Evaluator};
use crate::error::{Error, Result};
use crate::model::PairScorer;

/// ST's `CrossEncoderClassificationEvaluator`.
///
/// * `num_labels == 1`: `accuracy`, `accuracy_threshold`, `f1`, `f1_threshold`, `precision`,
///   `recall`, `average_precision` (primary) of the model's scores (default activation, so
///   thresholds are in sigmoid space as in ST) against 0/1 labels.
/// * `num_labels > 1`: the argmax of each row against class labels: `f1_macro` (primary),
///   `f1_micro`, `f1_weighted`, and our `accuracy`.
#[derive(Debug, Clone)]
pub struct ClassificationEvaluator {
    name: String,
    pairs: Vec<(String, String)>,
    labels: Vec<u32>,
    num_labels: usize,
    batch_size: usize,
}

impl ClassificationEvaluator {
    /// An evaluator over `pairs` with class `labels`, for a model with `num_labels` outputs.
    ///
    /// Errors when the counts differ, there is no pair, `num_labels` or `batch_size` is 0, or a
    /// label is out of range (0/1 for one output, `< num_labels` otherwise).
    pub fn new(
        name: impl Into<String>,
        pairs: Vec<(String, String)>,
        labels: Vec<u32>,
        num_labels: usize,
        batch_size: usize,
    ) -> Result<Self> {
        let name = name.into();
        if pairs.len() != labels.len() {
            return Err(Error::invalid(format!(
                "classification evaluator {name:?}: {} pairs but {} labels; need one label per pair",
                pairs.len(),
                labels.len()
            )));
        }
        if pairs.is_empty() {
            return Err(Error::invalid(format!(
                "classification evaluator {name:?} has no pairs; need at least one"
            )));
        }
        if num_labels == 0 {
            return Err(Error::invalid(
                "num_labels is 0; a model has at least one output",
            ));
        }
        check_batch_size(batch_size)?;
        let limit = num_labels.max(2);
        if let Some(i) = labels.iter().position(|&l| l as usize >= limit) {
            return Err(Error::invalid(format!(
                "classification evaluator {name:?}: label {i} is {}; {}",
                labels[i],
                label_rule(num_labels)
            )));
        }
        Ok(ClassificationEvaluator {
            name,
            pairs,
            labels,
            num_labels,
            batch_size,
        })
    }

    /// An evaluator over a JSONL file of labelled pairs (see
    /// [`read_labelled_pairs`](super::read_labelled_pairs)); `label = None` takes the first of
    /// `label`, `labels`, `score`, `scores`. A label that is not a class index is an error at
    /// its file and line.
    pub fn from_jsonl(
        name: impl Into<String>,
        path: &Path,
        columns: Option<[&str; 2]>,
        label: Option<&str>,
        num_labels: usize,
        batch_size: usize,
    ) -> Result<Self> {
        let label = label.map_or(LabelColumn::FirstOf(LABEL_CANDIDATES), LabelColumn::Named);
        let data = read_labelled_pairs(path, columns, label)?;
        let limit = num_labels.max(2) as f64;
        let labels = data
            .labels
            .iter()
            .zip(&data.lines)
            .map(|(&value, &line)| {
                if value.fract() == 0.0 && (0.0..limit).contains(&value) {
                    Ok(value as u32)
                } else {
                    Err(Error::input(
                        path,
                        Some(line),
                        format!(
                            "label `{}` is {value}; {}",
                            data.label_column.as_deref().unwrap_or("label"),
                            label_rule(num_labels)
                        ),
                    ))
                }
            })
            .collect::<Result<Vec<u32>>>()?;
        Self::new(name, data.pairs, labels, num_labels, batch_size)
    }

    /// The pairs the model scores.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.pairs
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect()
    }

    /// The gold class labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// The metrics given one row of `num_labels` activated scores per pair.
    pub fn metrics_from_scores(&self, scores: &[Vec<f64>]) -> Result<BTreeMap<String, f64>> {
        if let Some(i) = scores.iter().position(|row| row.len() != self.num_labels) {
            return Err(Error::invalid(format!(
                "classification evaluator {:?}: score row {i} has {} values; the evaluator was \
                 built for {} labels",
                self.name,
                scores[i].len(),
                self.num_labels
            )));
        }
        if self.num_labels == 1 {
            // The model's scores are f32 (sentence-transformers' predict returns float32), and
            // the threshold sweeps place their thresholds in the scores' type.
            let scores: Vec<f32> = scores.iter().map(|row| row[0] as f32).collect();
            Ok(BinaryClassificationMetrics::compute(&scores, &self.labels)?.to_map())
        } else {
            Ok(MulticlassMetrics::from_logits(scores, &self.labels)?.to_map())
        }
    }
}

fn label_rule(num_labels: usize) -> String {
    if num_labels == 1 {
        "a one-output model needs labels 0 or 1".to_string()
    } else {
        format!(
            "a model with {num_labels} outputs needs class labels 0 to {}",
            num_labels - 1
        )
    }
}

impl Evaluator for ClassificationEvaluator {
    fn name(&self) -> &str {
        &self.name
    }

    fn evaluate_with_progress(
        &self,
        model: &dyn PairScorer,
        progress: &mut dyn FnMut(usize),
    ) -> Result<BTreeMap<String, f64>> {
        if model.num_labels() != self.num_labels {
            return Err(Error::invalid(format!(
                "classification evaluator {:?} was built for {} label(s) but the model has {}",
                self.name,
                self.num_labels,
                model.num_labels()
            )));
        }
        let scores = model_scores(model, &self.pairs(), self.batch_size, progress)?;
        self.metrics_from_scores(&scores)
    }

    fn pair_count(&self) -> usize {
        self.pairs().len()
    }

    /// The keys of [`Self::metrics_from_scores`] (which every score vector gives).
    fn metric_names(&self) -> Vec<String> {
        self.metrics_from_scores(&vec![vec![0.0; self.num_labels]; self.pair_count()])
            .map(|metrics| metrics.into_keys().collect())
            .unwrap_or_default()
    }

    fn primary_metric(&self) -> &str {
        if self.num_labels == 1 {
            "average_precision"
        } else {
            "f1_macro"
        }
    }

    fn description(&self) -> &str {
        "Cross Encoder Classification"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(n: usize) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("q{i}"), format!("d{i}"))).collect()
    }

    #[test]
    fn hand_checked_binary_metrics() {
        // Scores .9 .2 .6 .4 with labels 1 0 0 1. Sorted: .9(1) .6(0) .4(1) .2(0).
        // Accuracy sweep: after .9 → (1 + 2)/4 = 0.75 at (.9+.6)/2 = 0.75; nothing better.
        // F1 sweep: after .9: P 1, R 1/2, F1 2/3 at 0.75; after .4: P 2/3, R 1, F1 0.8 at 0.3;
        // after .2 (everything positive): P 1/2, R 1, F1 2/3.
        // AP: 1·1/2 + (2/3)·1/2 = 5/6.
        let evaluator =
            ClassificationEvaluator::new("cls", pairs(4), vec![1, 0, 0, 1], 1, 32).unwrap();
        let rows: Vec<Vec<f64>> = [0.9, 0.2, 0.6, 0.4].iter().map(|&s| vec![s]).collect();
        let metrics = evaluator.metrics_from_scores(&rows).unwrap();
        assert_eq!(metrics["accuracy"], 0.75);
        assert_eq!(metrics["accuracy_threshold"], 0.75);
        assert!((metrics["f1"] - 0.8).abs() < 1e-12);
        // Model scores are f32 and the threshold is placed in f32, as sentence-transformers 6
        // places it in the dtype of predict's float32 scores.
        assert_eq!(metrics["f1_threshold"], f64::from((0.4f32 + 0.2f32) / 2.0));
        assert!((metrics["average_precision"] - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(evaluator.primary_metric(), "average_precision");
    }

    #[test]
    fn hand_checked_multiclass_metrics() {
        // Argmax: [2, 0, 1] against [2, 1, 1]: class 2 F1 1, class 0 F1 0, class 1: TP 1,
        // FN 1 → 2/3. Macro (1 + 0 + 2/3)/3 = 5/9; micro: 2 of 3 right → 2/3.
        let evaluator =
            ClassificationEvaluator::new("nli", pairs(3), vec![2, 1, 1], 3, 32).unwrap();
        let rows = vec![
            vec![0.1, 0.2, 0.7],
            vec![0.5, 0.3, 0.2],
            vec![0.2, 0.6, 0.2],
        ];
        let metrics = evaluator.metrics_from_scores(&rows).unwrap();
        assert!((metrics["f1_macro"] - 5.0 / 9.0).abs() < 1e-12);
        assert!((metrics["f1_micro"] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(evaluator.primary_metric(), "f1_macro");
        let err = evaluator
            .metrics_from_scores(
                &rows[..2]
                    .iter()
                    .map(|r| r[..2].to_vec())
                    .collect::<Vec<_>>(),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("score row 0 has 2 values"), "{err}");
    }

    #[test]
    fn labels_out_of_range_are_errors() {
        let err = ClassificationEvaluator::new("cls", pairs(2), vec![0, 2], 1, 32)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("label 1 is 2; a one-output model needs labels 0 or 1"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cls.jsonl");
        std::fs::write(
            &path,
            "{\"query\": \"a\", \"passage\": \"b\", \"label\": 1}\n{\"query\": \"a\", \"passage\": \"c\", \"label\": 0.5}\n",
        )
        .unwrap();
        let err = ClassificationEvaluator::from_jsonl("cls", &path, None, None, 1, 32)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cls.jsonl:2: label `label` is 0.5"), "{err}");
        let err = ClassificationEvaluator::from_jsonl("cls", &path, None, None, 3, 32)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs class labels 0 to 2"), "{err}");
    }
}
