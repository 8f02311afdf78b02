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

/// A score type the threshold sweeps run in. sentence-transformers computes the thresholds in
/// the scores' own dtype (`float32` from `CrossEncoder.predict`): the midpoints, the
/// "rounded midpoint equals the next score" check and the starting threshold (the next float
/// above the top score) all depend on it, so the sweeps are generic over `f32` and `f64`.
pub trait SweepScore: Copy + PartialEq + Into<f64> + std::fmt::Debug {
    /// The smallest value of this type above `self` (`np.nextafter(x, inf, dtype)`).
    fn next_up(self) -> Self;
    /// `(self + other) / 2` in this type, as numpy computes it.
    fn midpoint_with(self, other: Self) -> Self;
    /// Total order (descending sort; NaN is rejected before).
    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering;
}

impl SweepScore for f32 {
    fn next_up(self) -> Self {
        f32::next_up(self)
    }
    fn midpoint_with(self, other: Self) -> Self {
        (self + other) / 2.0
    }
    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering {
        f32::total_cmp(self, other)
    }
}

impl SweepScore for f64 {
    fn next_up(self) -> Self {
        f64::next_up(self)
    }
    fn midpoint_with(self, other: Self) -> Self {
        (self + other) / 2.0
    }
    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering {
        f64::total_cmp(self, other)
    }
}

fn check_binary<S: SweepScore>(scores: &[S], labels: &[u32]) -> Result<()> {
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
    if let Some(i) = scores.iter().position(|&s| s.into().is_nan()) {
        return Err(Error::invalid(format!(
            "binary classification: score {i} is NaN; scores must be numbers"
        )));
    }
    Ok(())
}

/// `(score, label)` rows by descending score; equal scores keep their input order (Python's
/// `sorted(..., reverse=True)` is stable too).
fn rows_by_descending_score<S: SweepScore>(scores: &[S], labels: &[u32]) -> Vec<(S, u32)> {
    let mut rows: Vec<(S, u32)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    rows
}

/// The indices that end a group of equal scores in `rows` (the steps of the sweeps: no
/// threshold falls inside a tie); the last row always ends one.
fn ends_of_ties<S: SweepScore>(rows: &[(S, u32)]) -> impl Iterator<Item = usize> + '_ {
    (0..rows.len()).filter(move |&i| i + 1 == rows.len() || rows[i].0 != rows[i + 1].0)
}

/// The threshold after the step that ends at row `i`: the midpoint to the next score, the
/// score itself at the last row, or the score itself when the midpoint rounds onto the next
/// score (it must not take in the next group).
fn threshold_after<S: SweepScore>(rows: &[(S, u32)], i: usize) -> S {
    let score = rows[i].0;
    match rows.get(i + 1) {
        None => score,
        Some(&(next, _)) => {
            let midpoint = score.midpoint_with(next);
            if midpoint == next {
                score
            } else {
                midpoint
            }
        }
    }
}

/// sentence-transformers 6's `find_best_acc_and_threshold(scores, labels, True)`:
/// `(accuracy, threshold)`
/// (`sentence_transformers/sentence_transformer/evaluation/binary_classification.py`,
/// `BinaryClassificationEvaluator.find_best_acc_and_threshold`).
///
/// Starts from "every pair negative": accuracy = share of negatives, threshold = the next float
/// above the top score (in the scores' type). Walks the rows by descending score, a run of equal
/// scores as one step, the last row included; after each step predicting its rows and those
/// before positive has accuracy `(positives so far + negatives after) / n`, and a strict
/// improvement takes the threshold of [`threshold_after`].
pub fn find_best_acc_and_threshold<S: SweepScore>(
    scores: &[S],
    labels: &[u32],
) -> Result<(f64, f64)> {
    check_binary(scores, labels)?;
    let rows = rows_by_descending_score(scores, labels);
    let n = labels.len() as f64;
    let mut remaining_negatives = labels.iter().filter(|&&l| l == 0).count();
    let mut max_accuracy = remaining_negatives as f64 / n;
    let mut best_threshold = rows[0].0.next_up();
    let mut positives_so_far = 0usize;
    let mut start = 0;
    for end in ends_of_ties(&rows) {
        for &(_, label) in &rows[start..=end] {
            if label == 1 {
                positives_so_far += 1;
            } else {
                remaining_negatives -= 1;
            }
        }
        start = end + 1;
        let accuracy = (positives_so_far + remaining_negatives) as f64 / n;
        if accuracy > max_accuracy {
            max_accuracy = accuracy;
            best_threshold = threshold_after(&rows, end);
        }
    }
    Ok((max_accuracy, best_threshold.into()))
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
    /// The threshold (see [`find_best_acc_and_threshold`] for how it is placed).
    pub threshold: f64,
}

/// sentence-transformers 6's `find_best_f1_and_threshold(scores, labels, True)`
/// (`BinaryClassificationEvaluator.find_best_f1_and_threshold`, same file).
///
/// The same walk as [`find_best_acc_and_threshold`] (ties one step, last row included, so
/// "everything positive" is a candidate); each step with at least one positive so far gives the
/// F1 of predicting its rows and those before positive; the best strict improvement wins.
/// Starts from all zeros (threshold 0), which is also the answer when no label is 1.
pub fn find_best_f1_and_threshold<S: SweepScore>(scores: &[S], labels: &[u32]) -> Result<BestF1> {
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
    let mut start = 0;
    for end in ends_of_ties(&rows) {
        correct += rows[start..=end].iter().filter(|row| row.1 == 1).count();
        start = end + 1;
        if correct > 0 {
            let extracted = end + 1;
            let precision = correct as f64 / extracted as f64;
            let recall = correct as f64 / total_positives as f64;
            let f1 = 2.0 * precision * recall / (precision + recall);
            if f1 > best.f1 {
                best = BestF1 {
                    f1,
                    precision,
                    recall,
                    threshold: threshold_after(&rows, end).into(),
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
    pub fn compute<S: SweepScore>(scores: &[S], labels: &[u32]) -> Result<Self> {
        let (accuracy, accuracy_threshold) = find_best_acc_and_threshold(scores, labels)?;
        let best_f1 = find_best_f1_and_threshold(scores, labels)?;
        let relevant: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
        let scores: Vec<f64> = scores.iter().map(|&s| s.into()).collect();
        Ok(BinaryClassificationMetrics {
            accuracy,
            accuracy_threshold,
            f1: best_f1.f1,
            f1_threshold: best_f1.threshold,
            precision: best_f1.precision,
            recall: best_f1.recall,
            average_precision: average_precision(&relevant, &scores)?,
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

    // Expected values below were printed by sentence-transformers 6.3's two functions
    // (`BinaryClassificationEvaluator.find_best_{acc,f1}_and_threshold`) with sklearn 1.9.1's
    // average_precision_score; tests/fixtures/st6-parity/ holds more, made by its script.

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
    fn a_tie_is_one_step_and_the_last_row_is_a_candidate() {
        // Rows .8(1) .5(0) .5(1) .2(1): the tie at .5 is one step; "everything positive" (the
        // last row) is best for both: accuracy 3/4 and F1 6/7 (P 3/4, R 1) at the score .2.
        let metrics =
            BinaryClassificationMetrics::compute(&[0.5, 0.5, 0.2, 0.8], &[0, 1, 1, 1]).unwrap();
        assert_close(metrics.accuracy, 0.75, "accuracy");
        assert_eq!(metrics.accuracy_threshold, 0.2);
        assert_close(metrics.f1, 6.0 / 7.0, "f1");
        assert_eq!(metrics.f1_threshold, 0.2);
        assert_close(metrics.average_precision, 0.8055555555555556, "ap");
        // All tied: one step, which is the last row (every pair positive).
        let best = find_best_f1_and_threshold(&[0.5; 3], &[1, 0, 1]).unwrap();
        assert_eq!(
            (best.precision, best.recall, best.threshold),
            (2.0 / 3.0, 1.0, 0.5)
        );
        let (accuracy, threshold) = find_best_acc_and_threshold(&[0.5; 3], &[1, 0, 1]).unwrap();
        assert_close(accuracy, 2.0 / 3.0, "tied accuracy");
        assert_eq!(threshold, 0.5);
    }

    #[test]
    fn thresholds_are_placed_in_the_scores_type() {
        // f32 1 + 2^-23 (positive) above 1.0 (negative): the midpoint rounds onto 1.0, so the
        // threshold is the score itself, 1.0000001192092896 as ST prints it.
        let top = 1.0f32.next_up();
        let (accuracy, threshold) =
            find_best_acc_and_threshold(&[top, 1.0f32, 0.25], &[1, 0, 0]).unwrap();
        assert_eq!((accuracy, threshold), (1.0, 1.000_000_119_209_289_6));
        // In f64 the same two values have a midpoint between them.
        let (_, threshold) =
            find_best_acc_and_threshold(&[f64::from(top), 1.0, 0.25], &[1, 0, 0]).unwrap();
        assert!(threshold > 1.0 && threshold < f64::from(top), "{threshold}");
    }

    #[test]
    fn degenerate_inputs_follow_st() {
        // No positive: everything negative is right (accuracy 1 at the next float above the top
        // score, 0.30000000000000004); F1 0 at threshold 0; AP 0.
        let metrics = BinaryClassificationMetrics::compute(&[0.3, 0.1], &[0, 0]).unwrap();
        assert_close(metrics.accuracy, 1.0, "accuracy");
        assert_eq!(metrics.accuracy_threshold, 0.30000000000000004);
        assert_eq!((metrics.f1, metrics.f1_threshold), (0.0, 0.0));
        assert_eq!(metrics.average_precision, 0.0);
        // One row: it is the last row, so it is a step of its own.
        assert_eq!(
            find_best_acc_and_threshold(&[0.7], &[1]).unwrap(),
            (1.0, 0.7)
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
