//! Classification metrics of `CrossEncoderClassificationEvaluator` (sentence-transformers
//! `cross_encoder/evaluation/classification.py`, `__call__`).
//!
//! * One logit per pair ([`BinaryClassificationMetrics`]): accuracy and F1 with the best
//!   threshold found by ST's sweeps ([`find_best_acc_and_threshold`],
//!   [`find_best_f1_and_threshold`], copied from `BinaryClassificationEvaluator` with
//!   `high_score_more_similar=True`), plus sklearn's `average_precision_score`. Labels are 0/1.
//! * Several logits per pair ([`MulticlassMetrics`]): predictions are the row-wise argmax (the
//!   first maximum, as `np.argmax`), then sklearn's `f1_score` with `average="macro"`, `"micro"`
//!   and `"weighted"`, over the labels that occur in the gold labels or the predictions.

use std::collections::BTreeMap;

use super::metrics::average_precision;
use crate::error::{Error, Result};

fn check_binary(scores: &[f64], labels: &[u32]) -> Result<()> {
    if scores.len() != labels.len() {
        return Err(Error::invalid(format!(
            "binary classification: {} scores but {} labels; need one label per score",
            scores.len(),
            labels.len()
        )));
    }
    if scores.is_empty() {
        return Err(Error::invalid(
            "binary classification: no scores; need at least one labelled pair",
        ));
    }
    if let Some(i) = labels.iter().position(|&l| l > 1) {
        return Err(Error::invalid(format!(
            "binary classification: label {i} is {}; one-logit models need labels 0 or 1",
            labels[i]
        ))
        .with_hint(
            "use a model with one logit per class (num_labels > 1) for multi-class labels",
        ));
    }
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(Error::invalid(format!(
            "binary classification: score {i} is NaN; scores must be numbers"
        )));
    }
    Ok(())
}

/// `(score, label)` rows by descending score; equal scores keep their input order (Python's
/// `sorted(..., reverse=True)` is stable too).
fn rows_by_descending_score(scores: &[f64], labels: &[u32]) -> Vec<(f64, u32)> {
    let mut rows: Vec<(f64, u32)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    rows
}

/// ST's `find_best_acc_and_threshold(scores, labels, True)`: `(accuracy, threshold)`.
///
/// Sweeps the rows sorted by descending score; after row `i` (of the first `n − 1`), predicting
/// positive for rows `0..=i` has accuracy `(positives so far + negatives after) / n`; the best
/// strict improvement wins, with threshold the midpoint of the scores of rows `i` and `i + 1`.
/// Starts from accuracy 0 and threshold −1 (what one row returns).
pub fn find_best_acc_and_threshold(scores: &[f64], labels: &[u32]) -> Result<(f64, f64)> {
    check_binary(scores, labels)?;
    let rows = rows_by_descending_score(scores, labels);
    let (mut max_accuracy, mut best_threshold) = (0.0, -1.0);
    let mut positives_so_far = 0usize;
    let mut remaining_negatives = labels.iter().filter(|&&l| l == 0).count();
    for i in 0..rows.len() - 1 {
        if rows[i].1 == 1 {
            positives_so_far += 1;
        } else {
            remaining_negatives -= 1;
        }
        let accuracy = (positives_so_far + remaining_negatives) as f64 / labels.len() as f64;
        if accuracy > max_accuracy {
            max_accuracy = accuracy;
            best_threshold = (rows[i].0 + rows[i + 1].0) / 2.0;
        }
    }
    Ok((max_accuracy, best_threshold))
}

/// The result of [`find_best_f1_and_threshold`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BestF1 {
    /// The best F1.
    pub f1: f64,
    /// Precision at that threshold.
    pub precision: f64,
    /// Recall at that threshold.
    pub recall: f64,
    /// The threshold (midpoint between the last row predicted positive and the next).
    pub threshold: f64,
}

/// ST's `find_best_f1_and_threshold(scores, labels, True)`.
///
/// Same sweep as [`find_best_acc_and_threshold`]: after row `i` (of the first `n − 1`), with at
/// least one positive among rows `0..=i`, F1 of "rows `0..=i` are positive"; the best strict
/// improvement wins. Starts from all zeros (threshold 0), which is also the answer when no label
/// is 1.
pub fn find_best_f1_and_threshold(scores: &[f64], labels: &[u32]) -> Result<BestF1> {
    check_binary(scores, labels)?;
    let rows = rows_by_descending_score(scores, labels);
    let total_positives = labels.iter().filter(|&&l| l == 1).count();
    let mut best = BestF1 {
        f1: 0.0,
        precision: 0.0,
        recall: 0.0,
        threshold: 0.0,
    };
    let mut correct = 0usize;
    for i in 0..rows.len() - 1 {
        let extracted = i + 1;
        if rows[i].1 == 1 {
            correct += 1;
        }
        if correct > 0 {
            let precision = correct as f64 / extracted as f64;
            let recall = correct as f64 / total_positives as f64;
            let f1 = 2.0 * precision * recall / (precision + recall);
            if f1 > best.f1 {
                best = BestF1 {
                    f1,
                    precision,
                    recall,
                    threshold: (rows[i].0 + rows[i + 1].0) / 2.0,
                };
            }
        }
    }
    Ok(best)
}

/// The one-logit classification metrics, under ST's names (see [`Self::to_map`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BinaryClassificationMetrics {
    /// Best accuracy over thresholds.
    pub accuracy: f64,
    /// Its threshold.
    pub accuracy_threshold: f64,
    /// Best F1 over thresholds.
    pub f1: f64,
    /// Its threshold.
    pub f1_threshold: f64,
    /// Precision at the F1 threshold.
    pub precision: f64,
    /// Recall at the F1 threshold.
    pub recall: f64,
    /// sklearn's average precision of the scores (ST's primary metric).
    pub average_precision: f64,
}

impl BinaryClassificationMetrics {
    /// All metrics of model `scores` against 0/1 `labels`.
    ///
    /// Errors when the lengths differ, the lists are empty, a label is not 0 or 1, or a score
    /// is NaN.
    pub fn compute(scores: &[f64], labels: &[u32]) -> Result<Self> {
        let (accuracy, accuracy_threshold) = find_best_acc_and_threshold(scores, labels)?;
        let best_f1 = find_best_f1_and_threshold(scores, labels)?;
        let relevant: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
        Ok(BinaryClassificationMetrics {
            accuracy,
            accuracy_threshold,
            f1: best_f1.f1,
            f1_threshold: best_f1.threshold,
            precision: best_f1.precision,
            recall: best_f1.recall,
            average_precision: average_precision(&relevant, scores)?,
        })
    }

    /// ST's keys: `accuracy`, `accuracy_threshold`, `f1`, `f1_threshold`, `precision`,
    /// `recall`, `average_precision` (without the evaluator-name prefix).
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        [
            ("accuracy", self.accuracy),
            ("accuracy_threshold", self.accuracy_threshold),
            ("f1", self.f1),
            ("f1_threshold", self.f1_threshold),
            ("precision", self.precision),
            ("recall", self.recall),
            ("average_precision", self.average_precision),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
    }
}

/// The index of the first maximum of each row (`np.argmax(logits, axis=1)`).
///
/// Errors on an empty row or a NaN logit (numpy would return the NaN's index).
pub fn argmax_rows(logits: &[Vec<f64>]) -> Result<Vec<u32>> {
    logits
        .iter()
        .enumerate()
        .map(|(row, values)| {
            if values.is_empty() {
                return Err(Error::invalid(format!(
                    "argmax: logit row {row} is empty; need one logit per class"
                )));
            }
            if let Some(i) = values.iter().position(|v| v.is_nan()) {
                return Err(Error::invalid(format!(
                    "argmax: logit {i} of row {row} is NaN; logits must be numbers"
                )));
            }
            let mut best = 0;
            for (i, value) in values.iter().enumerate() {
                if *value > values[best] {
                    best = i;
                }
            }
            Ok(u32::try_from(best)
                .expect("a row of more than 4 billion logits does not fit in memory"))
        })
        .collect()
}

/// The multi-logit classification metrics. ST reports the three F1 averages; `accuracy` is an
/// addition of ours (for single-label data it equals `f1_micro`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MulticlassMetrics {
    /// Fraction of correct predictions.
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1 (ST's primary metric).
    pub f1_macro: f64,
    /// F1 of the pooled counts: `2·ΣTP / (2·ΣTP + ΣFP + ΣFN)`.
    pub f1_micro: f64,
    /// Per-class F1 weighted by the class's count in the gold labels.
    pub f1_weighted: f64,
}

impl MulticlassMetrics {
    /// Metrics of `predicted` classes against gold `labels`, as sklearn's `f1_score`: per class,
    /// `F1 = 2·TP / (2·TP + FP + FN)` (0 when the class is never right, sklearn's
    /// `zero_division` value), over the classes present in either list.
    ///
    /// Errors when the lengths differ or the lists are empty.
    pub fn compute(predicted: &[u32], labels: &[u32]) -> Result<Self> {
        if predicted.len() != labels.len() {
            return Err(Error::invalid(format!(
                "multi-class classification: {} predictions but {} labels; need one label per prediction",
                predicted.len(),
                labels.len()
            )));
        }
        if labels.is_empty() {
            return Err(Error::invalid(
                "multi-class classification: no predictions; need at least one labelled pair",
            ));
        }
        // class -> (true positives, false positives, false negatives)
        let mut counts: BTreeMap<u32, (usize, usize, usize)> = BTreeMap::new();
        for (&prediction, &label) in predicted.iter().zip(labels) {
            if prediction == label {
                counts.entry(label).or_default().0 += 1;
            } else {
                counts.entry(prediction).or_default().1 += 1;
                counts.entry(label).or_default().2 += 1;
            }
        }
        let f1 = |tp: usize, fp: usize, fn_: usize| {
            let denominator = 2 * tp + fp + fn_;
            if denominator == 0 {
                0.0
            } else {
                (2 * tp) as f64 / denominator as f64
            }
        };
        let n = labels.len() as f64;
        let (mut macro_sum, mut weighted_sum) = (0.0, 0.0);
        let (mut tp_sum, mut fp_sum, mut fn_sum) = (0, 0, 0);
        for &(tp, fp, fn_) in counts.values() {
            let class_f1 = f1(tp, fp, fn_);
            macro_sum += class_f1;
            // support = TP + FN, the class's count among the gold labels.
            weighted_sum += class_f1 * (tp + fn_) as f64;
            tp_sum += tp;
            fp_sum += fp;
            fn_sum += fn_;
        }
        Ok(MulticlassMetrics {
            accuracy: tp_sum as f64 / n,
            f1_macro: macro_sum / counts.len() as f64,
            f1_micro: f1(tp_sum, fp_sum, fn_sum),
            f1_weighted: weighted_sum / n,
        })
    }

    /// [`Self::compute`] on the argmax of each logit row.
    pub fn from_logits(logits: &[Vec<f64>], labels: &[u32]) -> Result<Self> {
        Self::compute(&argmax_rows(logits)?, labels)
    }

    /// ST's keys `f1_macro`, `f1_micro`, `f1_weighted`, plus our `accuracy`.
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        [
            ("accuracy", self.accuracy),
            ("f1_macro", self.f1_macro),
            ("f1_micro", self.f1_micro),
            ("f1_weighted", self.f1_weighted),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(actual: f64, expected: f64, what: &str) {
        assert!(
            (actual - expected).abs() < 1e-12,
            "{what}: got {actual}, expected {expected}"
        );
    }

    // Expected values below were printed by ST's two functions copied verbatim from
    // `sentence_transformers/sentence_transformer/evaluation/binary_classification.py`
    // (huggingface/sentence-transformers cad21198) with sklearn 1.9.1's average_precision_score.

    #[test]
    fn threshold_sweeps_match_st() {
        // Rows by score: .9(1) .8(1) .7(0) .6(1) .55(0) .4(0) .3(1). By hand: accuracy peaks at
        // 5/7 after row 2 (threshold (.8+.7)/2 = .75); F1 peaks at 0.75 after row 4 (P = R = 3/4,
        // threshold (.6+.55)/2 = .575).
        let scores = [0.9, 0.8, 0.7, 0.6, 0.55, 0.4, 0.3];
        let labels = [1, 1, 0, 1, 0, 0, 1];
        let metrics = BinaryClassificationMetrics::compute(&scores, &labels).unwrap();
        assert_close(metrics.accuracy, 5.0 / 7.0, "accuracy");
        assert_close(metrics.accuracy_threshold, 0.75, "accuracy threshold");
        assert_close(metrics.f1, 0.75, "f1");
        assert_close(metrics.f1_threshold, 0.575, "f1 threshold");
        assert_close(metrics.precision, 0.75, "precision");
        assert_close(metrics.recall, 0.75, "recall");
        assert_close(metrics.average_precision, 0.8303571428571428, "ap");
        let keys: Vec<String> = metrics.to_map().into_keys().collect();
        assert_eq!(
            keys,
            [
                "accuracy",
                "accuracy_threshold",
                "average_precision",
                "f1",
                "f1_threshold",
                "precision",
                "recall"
            ]
        );
    }

    #[test]
    fn ties_keep_input_order_like_python_sorted() {
        // ST printed accuracy 0.5 at 0.65, F1 2/3 (P = R = 2/3) at 0.35, AP 0.8055555555555556.
        let metrics =
            BinaryClassificationMetrics::compute(&[0.5, 0.5, 0.2, 0.8], &[0, 1, 1, 1]).unwrap();
        assert_close(metrics.accuracy, 0.5, "accuracy");
        assert_close(metrics.accuracy_threshold, 0.65, "accuracy threshold");
        assert_close(metrics.f1, 2.0 / 3.0, "f1");
        assert_close(metrics.f1_threshold, 0.35, "f1 threshold");
        assert_close(metrics.average_precision, 0.8055555555555556, "ap");
        // All tied, labels 1 0 1: the stable order stops the F1 sweep after the first row
        // (P 1, R 1/2), which only holds if equal scores keep their input order.
        let best = find_best_f1_and_threshold(&[0.5; 3], &[1, 0, 1]).unwrap();
        assert_eq!(
            (best.precision, best.recall, best.threshold),
            (1.0, 0.5, 0.5)
        );
        let (accuracy, threshold) = find_best_acc_and_threshold(&[0.5; 3], &[1, 0, 1]).unwrap();
        assert_close(accuracy, 2.0 / 3.0, "tied accuracy");
        assert_eq!(threshold, 0.5);
    }

    #[test]
    fn degenerate_inputs_follow_st() {
        // No positive: ST returns F1 0 at threshold 0 and accuracy 0.5 at (.3+.1)/2; AP 0.
        let metrics = BinaryClassificationMetrics::compute(&[0.3, 0.1], &[0, 0]).unwrap();
        assert_close(metrics.accuracy, 0.5, "accuracy");
        assert_close(metrics.accuracy_threshold, 0.2, "threshold");
        assert_eq!((metrics.f1, metrics.f1_threshold), (0.0, 0.0));
        assert_eq!(metrics.average_precision, 0.0);
        // One row: the sweep never runs.
        assert_eq!(
            find_best_acc_and_threshold(&[0.7], &[1]).unwrap(),
            (0.0, -1.0)
        );
    }

    #[test]
    fn binary_input_errors() {
        let err = BinaryClassificationMetrics::compute(&[0.1, 0.2], &[0, 2])
            .unwrap_err()
            .to_string();
        assert!(err.contains("label 1 is 2"), "{err}");
        let err = find_best_f1_and_threshold(&[0.1], &[0, 1])
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 scores but 2 labels"), "{err}");
    }

    #[test]
    fn multiclass_f1_matches_sklearn() {
        // sklearn 1.9.1 f1_score(y, p, average=...): macro 0.5, micro 0.625, weighted 2/3;
        // accuracy_score 0.625. Class 3 occurs only among the predictions and still counts in
        // the macro mean (F1 0), as in sklearn.
        let labels = [0, 1, 2, 2, 1, 0, 2, 1];
        let predicted = [0, 2, 2, 2, 1, 3, 1, 1];
        let metrics = MulticlassMetrics::compute(&predicted, &labels).unwrap();
        assert_close(metrics.f1_macro, 0.5, "macro");
        assert_close(metrics.f1_micro, 0.625, "micro");
        assert_close(metrics.f1_weighted, 2.0 / 3.0, "weighted");
        assert_close(metrics.accuracy, 0.625, "accuracy");
        assert_eq!(
            metrics.to_map().into_keys().collect::<Vec<_>>(),
            ["accuracy", "f1_macro", "f1_micro", "f1_weighted"]
        );
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        // np.argmax([[1,1,0],[0,2,2]], axis=1) = [0, 1].
        assert_eq!(
            argmax_rows(&[vec![1.0, 1.0, 0.0], vec![0.0, 2.0, 2.0]]).unwrap(),
            vec![0, 1]
        );
        let metrics =
            MulticlassMetrics::from_logits(&[vec![0.1, 0.9], vec![0.8, 0.2]], &[1, 1]).unwrap();
        assert_close(metrics.accuracy, 0.5, "accuracy");
        let err = argmax_rows(&[vec![]]).unwrap_err().to_string();
        assert!(err.contains("row 0 is empty"), "{err}");
    }
}
