//! Pearson and Spearman correlation, as `CrossEncoderCorrelationEvaluator` computes them with
//! `scipy.stats.pearsonr` and `scipy.stats.spearmanr` (sentence-transformers
//! `cross_encoder/evaluation/correlation.py`, `__call__`).
//!
//! Spearman is Pearson over the ranks, with tied values sharing their average rank. When one
//! side is constant the coefficient is undefined: scipy returns NaN (with a warning) and so do
//! we. Fewer than two values or lists of different lengths are errors (scipy raises too).

use std::collections::BTreeMap;

use crate::error::{Error, Result};

fn check_pair(what: &str, x: &[f64], y: &[f64]) -> Result<()> {
    if x.len() != y.len() {
        return Err(Error::invalid(format!(
            "{what}: the two score lists have {} and {} values; they must have the same length",
            x.len(),
            y.len()
        )));
    }
    if x.len() < 2 {
        return Err(Error::invalid(format!(
            "{what}: {} value(s); a correlation needs at least 2",
            x.len()
        )));
    }
    for (side, values) in [("first", x), ("second", y)] {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "{what}: value {i} of the {side} list is {}; values must be finite",
                values[i]
            )));
        }
    }
    Ok(())
}

/// Pearson's r of `x` and `y` (scipy's `pearsonr(x, y)[0]`), NaN when either is constant.
///
/// Errors when the lengths differ, there are fewer than 2 values, or a value is not finite.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64> {
    check_pair("Pearson correlation", x, y)?;
    Ok(pearson_unchecked(x, y))
}

/// Pearson over checked inputs: scale by the largest magnitude, centre, normalise, dot, clip
/// to [-1, 1] (scipy's order). The scaling (which leaves r unchanged) keeps values near
/// `f64::MAX`, such as a label of 1e308, from overflowing the sums to infinity.
pub(crate) fn pearson_unchecked(x: &[f64], y: &[f64]) -> f64 {
    let scaled = |values: &[f64]| -> Vec<f64> {
        let largest = values.iter().fold(0.0f64, |max, v| max.max(v.abs()));
        if largest > 0.0 && largest.is_finite() {
            values.iter().map(|v| v / largest).collect()
        } else {
            values.to_vec()
        }
    };
    let (x, y) = (&scaled(x)[..], &scaled(y)[..]);
    let n = x.len() as f64;
    let mean_x = x.iter().sum::<f64>() / n;
    let mean_y = y.iter().sum::<f64>() / n;
    let centred_x: Vec<f64> = x.iter().map(|v| v - mean_x).collect();
    let centred_y: Vec<f64> = y.iter().map(|v| v - mean_y).collect();
    let norm_x = centred_x.iter().map(|v| v * v).sum::<f64>().sqrt();
    let norm_y = centred_y.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm_x == 0.0 || norm_y == 0.0 {
        return f64::NAN;
    }
    let r: f64 = centred_x
        .iter()
        .zip(&centred_y)
        .map(|(a, b)| (a / norm_x) * (b / norm_y))
        .sum();
    r.clamp(-1.0, 1.0)
}

/// 1-based ranks of `values`, ties sharing their average rank (`scipy.stats.rankdata`,
/// method `"average"`). NaN sorts last.
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let value = values[order[start]];
        let end = start
            + order[start..]
                .iter()
                .take_while(|&&i| values[i] == value)
                .count()
                .max(1);
        // Positions start..end hold ranks start+1..=end; their mean is (start + 1 + end) / 2.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Spearman's rho of `x` and `y` (scipy's `spearmanr(x, y)[0]`): Pearson over average ranks,
/// NaN when either side is constant.
///
/// Errors when the lengths differ, there are fewer than 2 values, or a value is not finite.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    check_pair("Spearman correlation", x, y)?;
    Ok(pearson_unchecked(&average_ranks(x), &average_ranks(y)))
}

/// The correlation evaluator's metrics between gold `labels` and model `predictions`, under ST's
/// names `pearson` and `spearman` (without the evaluator-name prefix).
pub fn correlation_metrics(labels: &[f64], predictions: &[f64]) -> Result<BTreeMap<String, f64>> {
    Ok(BTreeMap::from([
        ("pearson".to_string(), pearson(labels, predictions)?),
        ("spearman".to_string(), spearman(labels, predictions)?),
    ]))
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

    #[test]
    fn pearson_of_values_near_the_f64_limit() {
        // Without scaling the sums overflow to infinity and r came out 0. scipy 1.17.1 (which
        // scales by the largest magnitude too): pearsonr([1e308, 1, 2, 3], [4, 1, 2, 3]) =
        // 0.7745966692414832, pearsonr([1e308, 5e307, 2.5e307], [4, 2, 1]) = 0.9999999999999998.
        let r = pearson(&[1e308, 1.0, 2.0, 3.0], &[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_close(r, 0.7745966692414832, "scipy");
        let big = pearson(&[1e308, 5e307, 2.5e307], &[4.0, 2.0, 1.0]).unwrap();
        assert_close(big, 0.9999999999999998, "scipy");
    }

    #[test]
    fn pearson_by_hand_and_scipy() {
        // x = [1,2,3,4], y = [2,4,5,9]: centred x = [-1.5,-.5,.5,1.5], centred y =
        // [-3,-1,0,4]; r = 11 / sqrt(5 * 26). scipy 1.17.1 pearsonr printed the same.
        let r = pearson(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 5.0, 9.0]).unwrap();
        assert_close(r, 11.0 / (5.0f64 * 26.0).sqrt(), "by hand");
        assert_close(r, 0.9647638212377322, "scipy");
        assert_close(
            pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap(),
            -1.0,
            "reversed",
        );
    }

    #[test]
    fn spearman_averages_tied_ranks() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 10.0, 30.0]),
            vec![1.5, 3.0, 1.5, 4.0]
        );
        // scipy 1.17.1: spearmanr([1,2,2,3,4], [1,3,2,2,5]) = 0.7631578947368421.
        // By hand: ranks [1,2.5,2.5,4,5] and [1,4,2.5,2.5,5], centred [-2,-.5,-.5,1,2] and
        // [-2,1,-.5,-.5,2]: r = 7.25 / sqrt(9.5 * 9.5).
        let rho = spearman(&[1.0, 2.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 2.0, 5.0]).unwrap();
        assert_close(rho, 7.25 / 9.5, "by hand");
        assert_close(rho, 0.7631578947368421, "scipy");
    }

    #[test]
    fn constant_input_is_nan_like_scipy() {
        assert!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0])
            .unwrap()
            .is_nan());
        assert!(spearman(&[1.0, 2.0, 3.0], &[5.0, 5.0, 5.0])
            .unwrap()
            .is_nan());
    }

    #[test]
    fn metric_names_and_errors() {
        let metrics = correlation_metrics(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]).unwrap();
        assert_eq!(metrics.keys().collect::<Vec<_>>(), ["pearson", "spearman"]);
        assert_close(metrics["spearman"], 0.5, "spearman of one swap");
        let err = pearson(&[1.0, 2.0], &[1.0]).unwrap_err().to_string();
        assert!(err.contains("2 and 1 values"), "{err}");
        let err = spearman(&[1.0], &[1.0]).unwrap_err().to_string();
        assert!(err.contains("at least 2"), "{err}");
        let err = pearson(&[1.0, f64::NAN], &[1.0, 2.0])
            .unwrap_err()
            .to_string();
        assert!(err.contains("value 1 of the first list is NaN"), "{err}");
    }
}
