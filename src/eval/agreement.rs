//! How well a student's scores agree with its teacher's: Spearman's rho and Kendall's tau-b.
//!
//! Kendall's tau-b is `scipy.stats.kendalltau(x, y)` (its default variant):
//! `(concordant − discordant) / sqrt((n0 − ties_x) · (n0 − ties_y))` with `n0 = n(n−1)/2` and
//! `ties_x`, `ties_y` the pairs tied in `x` (resp. `y`), joint ties included. It is computed in
//! O(n log n) (Knight's method, as scipy), so it scales to whole evaluation sets. When one side is
//! constant it is undefined and NaN, as in scipy.
//!
//! Two views: [`agreement`] over one flat list of pairs, and [`mean_query_agreement`], the mean
//! of the per-query coefficients, which is what a reranker is judged on (only the order within a
//! query matters). Metric names: `spearman`, `kendall_tau`.

use std::collections::BTreeMap;

use super::correlation::{average_ranks, pearson_unchecked};
use crate::error::{Error, Result};

fn check_pair(student: &[f64], teacher: &[f64]) -> Result<()> {
    if student.len() != teacher.len() {
        return Err(Error::invalid(format!(
            "agreement: {} student scores but {} teacher scores; need one of each per pair",
            student.len(),
            teacher.len()
        )));
    }
    for (side, values) in [("student", student), ("teacher", teacher)] {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "agreement: {side} score {i} is {}; scores must be finite",
                values[i]
            )));
        }
    }
    Ok(())
}

/// Dense 0-based ranks (equal values share a rank, no gaps).
fn dense_ranks(values: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0; values.len()];
    let mut rank = 0;
    for (position, &i) in order.iter().enumerate() {
        if position > 0 && values[i] != values[order[position - 1]] {
            rank += 1;
        }
        ranks[i] = rank;
    }
    ranks
}

/// Pairs tied within each run of equal keys in an already sorted sequence.
fn tied_pairs<T: PartialEq>(sorted: impl IntoIterator<Item = T>) -> u64 {
    let mut total = 0u64;
    let mut run = 0u64;
    let mut previous: Option<T> = None;
    for item in sorted {
        if previous.as_ref() == Some(&item) {
            run += 1;
        } else {
            total += run * run.saturating_sub(1) / 2;
            run = 1;
        }
        previous = Some(item);
    }
    total + run * run.saturating_sub(1) / 2
}

/// Kendall's tau-b of `x` and `y` (scipy's `kendalltau(x, y).statistic`); NaN when either side
/// is constant or there are fewer than 2 values.
///
/// Errors when the lengths differ or a value is not finite.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Result<f64> {
    check_pair(x, y)?;
    Ok(kendall_tau_b_unchecked(x, y))
}

fn kendall_tau_b_unchecked(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len();
    if n < 2 {
        return f64::NAN;
    }
    let x_ranks = dense_ranks(x);
    let y_ranks = dense_ranks(y);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (x_ranks[i], y_ranks[i]));

    let total_pairs = (n as u64) * (n as u64 - 1) / 2;
    let x_ties = tied_pairs(order.iter().map(|&i| x_ranks[i]));
    let joint_ties = tied_pairs(order.iter().map(|&i| (x_ranks[i], y_ranks[i])));
    let mut y_sorted: Vec<usize> = y_ranks.clone();
    y_sorted.sort_unstable();
    let y_ties = tied_pairs(y_sorted);
    if x_ties == total_pairs || y_ties == total_pairs {
        return f64::NAN;
    }

    // Discordant pairs: x_i < x_j and y_i > y_j. Walk x groups in ascending order; each element
    // counts the earlier (strictly smaller x) elements with a larger y, via a Fenwick tree.
    let y_levels = y_ranks.iter().max().map_or(0, |m| m + 1);
    let mut tree = vec![0u64; y_levels + 1];
    let mut inserted = 0u64;
    let mut discordant = 0u64;
    let mut start = 0;
    while start < n {
        let group_x = x_ranks[order[start]];
        let end = start
            + order[start..]
                .iter()
                .take_while(|&&i| x_ranks[i] == group_x)
                .count();
        for &i in &order[start..end] {
            // Elements inserted so far with y rank <= y_ranks[i].
            let mut at_most = 0u64;
            let mut position = y_ranks[i] + 1;
            while position > 0 {
                at_most += tree[position];
                position &= position - 1;
            }
            discordant += inserted - at_most;
        }
        for &i in &order[start..end] {
            let mut position = y_ranks[i] + 1;
            while position <= y_levels {
                tree[position] += 1;
                position += position & position.wrapping_neg();
            }
            inserted += 1;
        }
        start = end;
    }

    // concordant − discordant = n0 − ties_x − ties_y + joint ties − 2·discordant.
    let difference = total_pairs as f64 - x_ties as f64 - y_ties as f64 + joint_ties as f64
        - 2.0 * discordant as f64;
    // scipy divides by the two square roots one after the other; keep its order of operations.
    let tau = difference
        / ((total_pairs - x_ties) as f64).sqrt()
        / ((total_pairs - y_ties) as f64).sqrt();
    tau.clamp(-1.0, 1.0)
}

fn spearman_unchecked(x: &[f64], y: &[f64]) -> f64 {
    if x.len() < 2 {
        return f64::NAN;
    }
    pearson_unchecked(&average_ranks(x), &average_ranks(y))
}

/// Spearman's rho and Kendall's tau-b between `student` and `teacher` scores over one flat list
/// of pairs, as `{"spearman": .., "kendall_tau": ..}` (NaN where undefined: constant scores).
///
/// Errors when the lengths differ, there are fewer than 2 pairs, or a score is not finite.
pub fn agreement(student: &[f64], teacher: &[f64]) -> Result<BTreeMap<String, f64>> {
    check_pair(student, teacher)?;
    if student.len() < 2 {
        return Err(Error::invalid(format!(
            "agreement: {} scored pair(s); a rank correlation needs at least 2",
            student.len()
        )));
    }
    Ok(BTreeMap::from([
        ("spearman".to_string(), spearman_unchecked(student, teacher)),
        (
            "kendall_tau".to_string(),
            kendall_tau_b_unchecked(student, teacher),
        ),
    ]))
}

/// The mean over queries of each query's Spearman and Kendall tau-b between `student` and
/// `teacher` scores of its documents; each item is one query's `(student, teacher)` scores.
///
/// A query where the coefficients are undefined (fewer than 2 documents, or constant scores on
/// either side) is left out of both means; when no query is left the means are NaN.
/// Errors when a query's two lists differ in length or hold a non-finite score.
pub fn mean_query_agreement<'a>(
    queries: impl IntoIterator<Item = (&'a [f64], &'a [f64])>,
) -> Result<BTreeMap<String, f64>> {
    let (mut spearman_sum, mut kendall_sum, mut counted) = (0.0, 0.0, 0usize);
    for (index, (student, teacher)) in queries.into_iter().enumerate() {
        check_pair(student, teacher).map_err(|e| Error::invalid(format!("query {index}: {e}")))?;
        let kendall = kendall_tau_b_unchecked(student, teacher);
        if kendall.is_nan() {
            continue;
        }
        spearman_sum += spearman_unchecked(student, teacher);
        kendall_sum += kendall;
        counted += 1;
    }
    let count = counted as f64;
    Ok(BTreeMap::from([
        ("spearman".to_string(), spearman_sum / count),
        ("kendall_tau".to_string(), kendall_sum / count),
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

    /// The O(n²) definition, to check the O(n log n) count.
    fn kendall_by_pairs(x: &[f64], y: &[f64]) -> f64 {
        let (mut concordant, mut discordant, mut x_ties, mut y_ties) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..x.len() {
            for j in i + 1..x.len() {
                let dx = x[i] - x[j];
                let dy = y[i] - y[j];
                if dx == 0.0 {
                    x_ties += 1.0;
                }
                if dy == 0.0 {
                    y_ties += 1.0;
                }
                if dx * dy > 0.0 {
                    concordant += 1.0;
                } else if dx * dy < 0.0 {
                    discordant += 1.0;
                }
            }
        }
        let n0 = (x.len() * (x.len() - 1) / 2) as f64;
        (concordant - discordant) / ((n0 - x_ties) * (n0 - y_ties)).sqrt()
    }

    #[test]
    fn kendall_without_ties() {
        // x = 1..5, y = [3,1,2,5,4]: discordant pairs (3,1) (3,2) (5,4) -> (7 − 3) / 10 = 0.4;
        // scipy 1.17.1 kendalltau printed 0.39999999999999997.
        let tau = kendall_tau_b(&[1.0, 2.0, 3.0, 4.0, 5.0], &[3.0, 1.0, 2.0, 5.0, 4.0]).unwrap();
        assert!((tau - 0.4).abs() < 1e-15, "{tau}");
    }

    #[test]
    fn kendall_tau_b_with_ties() {
        // x = [1,2,2,3,4,4], y = [1,3,2,2,5,5]: n0 = 15, x ties 2, y ties 2, joint ties 1,
        // discordant 1 -> (15 − 2 − 2 + 1 − 2) / sqrt(13 · 13) = 10/13 (scipy: 0.7692307692307694).
        let x = [1.0, 2.0, 2.0, 3.0, 4.0, 4.0];
        let y = [1.0, 3.0, 2.0, 2.0, 5.0, 5.0];
        assert_close(kendall_tau_b(&x, &y).unwrap(), 10.0 / 13.0, "tau-b");
        let metrics = agreement(&x, &y).unwrap();
        assert_close(metrics["kendall_tau"], 0.7692307692307694, "scipy tau");
        assert_close(metrics["spearman"], 0.8636363636363634, "scipy spearman");
    }

    #[test]
    fn kendall_matches_scipy_and_pair_count_on_many_ties() {
        // numpy default_rng(7): x = integers(0,5,40), y = x + integers(0,4,40); scipy 1.17.1
        // printed kendalltau 0.6138747448502123, spearmanr 0.7358429640132934.
        let x = [
            4, 3, 3, 4, 2, 3, 4, 1, 0, 1, 1, 4, 4, 0, 2, 4, 0, 3, 0, 2, 4, 1, 1, 1, 3, 1, 4, 2, 2,
            2, 2, 2, 2, 4, 4, 3, 3, 3, 1, 4,
        ]
        .map(f64::from);
        let y = [
            5, 3, 6, 4, 5, 5, 4, 1, 1, 1, 1, 6, 7, 1, 5, 7, 3, 5, 1, 4, 5, 2, 2, 1, 6, 1, 4, 2, 5,
            4, 5, 2, 4, 5, 5, 3, 5, 6, 3, 4,
        ]
        .map(f64::from);
        let metrics = agreement(&x, &y).unwrap();
        assert_close(metrics["kendall_tau"], 0.6138747448502123, "scipy tau");
        assert_close(
            metrics["kendall_tau"],
            kendall_by_pairs(&x, &y),
            "pair count",
        );
        assert_close(metrics["spearman"], 0.7358429640132934, "scipy spearman");
        // Reversing one side negates tau.
        let reversed: Vec<f64> = y.iter().map(|v| -v).collect();
        assert_close(
            kendall_tau_b(&x, &reversed).unwrap(),
            -0.6138747448502123,
            "negated",
        );
    }

    #[test]
    fn undefined_cases_are_nan_or_errors() {
        assert!(kendall_tau_b(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0])
            .unwrap()
            .is_nan());
        assert!(kendall_tau_b(&[1.0], &[2.0]).unwrap().is_nan());
        let err = agreement(&[1.0], &[1.0]).unwrap_err().to_string();
        assert!(err.contains("at least 2"), "{err}");
        let err = agreement(&[1.0, 2.0], &[1.0, f64::INFINITY])
            .unwrap_err()
            .to_string();
        assert!(err.contains("teacher score 1 is inf"), "{err}");
    }

    #[test]
    fn per_query_mean_skips_undefined_queries() {
        // scipy per query: tau [1, −1, nan], spearman [1, −1, nan]; the constant query drops out.
        let queries: [(&[f64], &[f64]); 3] = [
            (&[0.1, 0.5, 0.3], &[1.0, 3.0, 2.0]),
            (&[1.0, 2.0], &[2.0, 1.0]),
            (&[1.0, 1.0], &[0.0, 1.0]),
        ];
        let metrics = mean_query_agreement(queries).unwrap();
        assert_close(metrics["kendall_tau"], 0.0, "tau");
        assert_close(metrics["spearman"], 0.0, "spearman");
        let none: [(&[f64], &[f64]); 0] = [];
        assert!(mean_query_agreement(none).unwrap()["spearman"].is_nan());
        let bad: [(&[f64], &[f64]); 1] = [(&[1.0, 2.0], &[1.0])];
        let err = mean_query_agreement(bad).unwrap_err().to_string();
        assert!(
            err.contains("query 0: agreement: 2 student scores but 1 teacher"),
            "{err}"
        );
    }
}
