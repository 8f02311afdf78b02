//! Ranking metrics of sentence-transformers' `CrossEncoderRerankingEvaluator`
//! (`cross_encoder/evaluation/reranking.py`, `compute_metrics`).
//!
//! Per query, over a candidate list with binary relevance and one score per candidate:
//!
//! * **MRR@k** ([`mrr_at_k`]): `1 / rank` of the first relevant candidate among the `k`
//!   best-scored, else 0. ST sorts with `np.argsort(scores)[::-1]`, whose order among tied scores
//!   depends on numpy's (SIMD) sort; we break ties as the reverse of a *stable* ascending sort
//!   (the later candidate first), which is what numpy's scalar sort gives. That choice is also
//!   pessimistic: a model that scores everything the same does not get MRR 1 from the positives
//!   being listed first.
//! * **NDCG@k** ([`ndcg_at_k`]): `sklearn.metrics.ndcg_score([gains], [scores], k=k)`: linear
//!   gains, discount `1 / log2(rank + 1)`, and candidates with tied scores share the average gain
//!   of their group (sklearn's `ignore_ties=False`). The ideal DCG sorts the gains; if it is 0 the
//!   NDCG is 0. sklearn refuses lists of one candidate; we return the value of the same formula.
//! * **AP** ([`average_precision`]): `sklearn.metrics.average_precision_score(relevant, scores)`
//!   over the whole list (no cut-off): `Σ (R_n − R_{n−1}) · P_n` over the distinct score
//!   thresholds, tied candidates entering together. No relevant candidate gives 0.
//!
//! [`RerankingSample`] is the evaluator's sample (`query`, `positive`, and `documents` or
//! `negative`); [`RerankingSample::to_query`] builds the list to score exactly as ST does, and
//! [`RerankingMetrics`] averages the per-query values into ST's metric names.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The candidates of one reranking sample, as in ST's sample dict.
#[derive(Debug, Clone, PartialEq)]
pub enum Candidates {
    /// `"documents"`: a first-stage ranking, best first, that may contain positives. Enables the
    /// `base_*` metrics (the quality of this input order).
    Documents(Vec<String>),
    /// `"negative"`: documents known to be irrelevant; the scored list is `positive + negative`.
    Negative(Vec<String>),
}

/// One sample of the reranking evaluator: a query, its relevant documents, and the candidates.
///
/// Documents are matched to positives by exact text equality, as ST does (`doc in positive`).
#[derive(Debug, Clone, PartialEq)]
pub struct RerankingSample {
    /// The query text.
    pub query: String,
    /// The relevant documents (ST's `"positive"`).
    pub positive: Vec<String>,
    /// The candidates (ST's `"documents"` or `"negative"`).
    pub candidates: Candidates,
}

/// What to score for one sample and how each scored document is judged.
///
/// Built by [`RerankingSample::to_query`]; the caller scores `(query, docs[i])` for every `i`
/// (only when [`RerankingQuery::needs_scores`]) and passes the scores to [`RerankingMetrics::add`].
#[derive(Debug, Clone, PartialEq)]
pub struct RerankingQuery<'a> {
    /// The query text.
    pub query: &'a str,
    /// The documents to score, in ST's order.
    pub docs: Vec<&'a str>,
    /// `relevant[i]`: whether `docs[i]` is a positive.
    pub relevant: Vec<bool>,
    /// Documents mode only: the relevance of the first-stage order, with one `true` appended per
    /// positive the first stage missed (ranked last), exactly as ST builds `base_is_relevant`. It
    /// is `Some` but holds no `true` when the first stage retrieved no positive; the base metrics
    /// of such a query are 0.
    pub base_relevant: Option<Vec<bool>>,
}

impl RerankingSample {
    /// The documents to score and their relevance, as ST's evaluator builds them:
    ///
    /// * `Negative`: `docs = positive + negative`.
    /// * `Documents` with `always_rerank_positives`: `docs = positive + [d in documents not in
    ///   positive]`, so every positive is scored, retrieved or not.
    /// * `Documents` without it: `docs = documents`; positives the first stage missed are not
    ///   scored and cost nothing (ST's behaviour, which the spec records).
    ///
    /// An empty `Documents` list is treated as documents mode with nothing retrieved (ST would
    /// crash on it).
    pub fn to_query(&self, always_rerank_positives: bool) -> RerankingQuery<'_> {
        let is_positive = |doc: &str| self.positive.iter().any(|p| p == doc);
        let positives = self.positive.iter().map(String::as_str);
        match &self.candidates {
            Candidates::Negative(negative) => RerankingQuery {
                query: &self.query,
                docs: positives
                    .chain(negative.iter().map(String::as_str))
                    .collect(),
                relevant: std::iter::repeat_n(true, self.positive.len())
                    .chain(std::iter::repeat_n(false, negative.len()))
                    .collect(),
                base_relevant: None,
            },
            Candidates::Documents(documents) => {
                let mut base_relevant: Vec<bool> =
                    documents.iter().map(|d| is_positive(d)).collect();
                let retrieved = base_relevant.iter().filter(|&&r| r).count();
                if retrieved > 0 {
                    // `len(positive) - sum(...)`: a negative count (a positive retrieved twice)
                    // appends nothing in Python, hence the saturating subtraction.
                    let missed = self.positive.len().saturating_sub(retrieved);
                    base_relevant.extend(std::iter::repeat_n(true, missed));
                }
                let (docs, relevant) = if always_rerank_positives {
                    let docs: Vec<&str> = positives
                        .chain(
                            documents
                                .iter()
                                .map(String::as_str)
                                .filter(|d| !is_positive(d)),
                        )
                        .collect();
                    let relevant = (0..docs.len()).map(|i| i < self.positive.len()).collect();
                    (docs, relevant)
                } else {
                    let docs: Vec<&str> = documents.iter().map(String::as_str).collect();
                    let relevant = docs.iter().map(|d| is_positive(d)).collect();
                    (docs, relevant)
                };
                RerankingQuery {
                    query: &self.query,
                    docs,
                    relevant,
                    base_relevant: Some(base_relevant),
                }
            }
        }
    }
}

impl RerankingQuery<'_> {
    /// False when no scored document is relevant: ST then scores nothing and counts all three
    /// metrics as 0 for this query. The caller may skip the model for such queries.
    pub fn needs_scores(&self) -> bool {
        self.relevant.iter().any(|&r| r)
    }
}

/// The three per-query values the reranking evaluator averages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryMetrics {
    /// MRR@k.
    pub mrr: f64,
    /// NDCG@k.
    pub ndcg: f64,
    /// Average precision over the whole list.
    pub average_precision: f64,
}

impl QueryMetrics {
    /// All zero: ST's value for a query without a relevant document.
    pub const ZERO: QueryMetrics = QueryMetrics {
        mrr: 0.0,
        ndcg: 0.0,
        average_precision: 0.0,
    };

    /// ST's `compute_metrics(y_true, y_pred)`: MRR@k, NDCG@k and AP of one scored list.
    ///
    /// Errors when the lengths differ, the list is empty, a score is NaN or `k` is 0.
    pub fn compute(relevant: &[bool], scores: &[f64], k: usize) -> Result<Self> {
        let gains: Vec<f64> = relevant.iter().map(|&r| f64::from(u8::from(r))).collect();
        Ok(QueryMetrics {
            mrr: mrr_at_k(relevant, scores, k)?,
            ndcg: ndcg_at_k(&gains, scores, k)?,
            average_precision: average_precision(relevant, scores)?,
        })
    }
}

fn check_scores(what: &str, labels_len: usize, scores: &[f64]) -> Result<()> {
    if labels_len != scores.len() {
        return Err(Error::invalid(format!(
            "{what}: {labels_len} relevance labels but {} scores; need one score per document",
            scores.len()
        )));
    }
    if scores.is_empty() {
        return Err(Error::invalid(format!(
            "{what}: the document list is empty; need at least one scored document"
        )));
    }
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(
            Error::invalid(format!("{what}: score {i} is NaN; scores must be numbers"))
                .with_hint("check the model output (a diverged student produces NaN)"),
        );
    }
    Ok(())
}

fn check_k(what: &str, k: usize) -> Result<()> {
    if k == 0 {
        return Err(Error::invalid(format!(
            "{what}: k is 0; the cut-off must be at least 1"
        )));
    }
    Ok(())
}

/// Document indices best first, ties broken as `np.argsort(scores)[::-1]` with a stable sort:
/// among equal scores, the later document first. Scores must not be NaN.
pub fn descending_order(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Stable ascending, then reversed.
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    order.reverse();
    order
}

/// MRR@k of one query: `1 / (r + 1)` for the 0-based rank `r < k` of the first relevant document
/// in [`descending_order`], else 0 (ST's `compute_metrics`).
pub fn mrr_at_k(relevant: &[bool], scores: &[f64], k: usize) -> Result<f64> {
    check_scores("MRR", relevant.len(), scores)?;
    check_k("MRR", k)?;
    let order = descending_order(scores);
    Ok(order
        .iter()
        .take(k)
        .position(|&i| relevant[i])
        .map_or(0.0, |rank| 1.0 / (rank as f64 + 1.0)))
}

/// sklearn's discount `1 / log2(i + 2)` for 0-based position `i`, zero from position `k` on.
fn discount(i: usize, k: usize) -> f64 {
    if i >= k {
        0.0
    } else {
        // sklearn: 1 / (np.log(i + 2) / np.log(2)).
        1.0 / ((i as f64 + 2.0).ln() / 2f64.ln())
    }
}

/// NDCG@k of one query, `sklearn.metrics.ndcg_score([gains], [scores], k=k)` with its default
/// tie handling: documents with equal scores form a group that spans consecutive ranks, and each
/// of them contributes the group's mean gain times the group's summed discount. The ideal DCG
/// ranks the gains in descending order; when it is 0 (nothing relevant) the NDCG is 0.
///
/// `gains` are graded relevances (ST passes 0/1). Errors when lengths differ, the list is
/// empty, a gain is negative or not finite, a score is NaN, or `k` is 0.
pub fn ndcg_at_k(gains: &[f64], scores: &[f64], k: usize) -> Result<f64> {
    check_scores("NDCG", gains.len(), scores)?;
    check_k("NDCG", k)?;
    if let Some(i) = gains.iter().position(|g| !g.is_finite() || *g < 0.0) {
        return Err(Error::invalid(format!(
            "NDCG: gain {i} is {}; gains must be finite and >= 0",
            gains[i]
        )));
    }
    let dcg = tie_averaged_dcg(gains, scores, k);
    let mut ideal_gains = gains.to_vec();
    ideal_gains.sort_by(|a, b| b.total_cmp(a));
    let ideal: f64 = ideal_gains
        .iter()
        .enumerate()
        .map(|(i, g)| g * discount(i, k))
        .sum();
    Ok(if ideal == 0.0 { 0.0 } else { dcg / ideal })
}

/// sklearn's `_tie_averaged_dcg`.
fn tie_averaged_dcg(gains: &[f64], scores: &[f64], k: usize) -> f64 {
    let order = descending_order(scores);
    let mut dcg = 0.0;
    let mut start = 0;
    while start < order.len() {
        let score = scores[order[start]];
        let end = start
            + order[start..]
                .iter()
                .take_while(|&&i| scores[i] == score)
                .count();
        let mean_gain =
            order[start..end].iter().map(|&i| gains[i]).sum::<f64>() / (end - start) as f64;
        let discount_sum: f64 = (start..end).map(|i| discount(i, k)).sum();
        dcg += mean_gain * discount_sum;
        start = end;
    }
    dcg
}

/// Average precision of one query, `sklearn.metrics.average_precision_score(relevant, scores)`:
/// `Σ_n (R_n − R_{n−1}) · P_n` over the distinct scores in descending order, where `P_n` and
/// `R_n` are the precision and recall of "score >= threshold n" (so tied documents enter
/// together). No relevant document gives 0, as sklearn (which also warns).
pub fn average_precision(relevant: &[bool], scores: &[f64]) -> Result<f64> {
    check_scores("average precision", relevant.len(), scores)?;
    let total_relevant = relevant.iter().filter(|&&r| r).count();
    if total_relevant == 0 {
        return Ok(0.0);
    }
    let order = descending_order(scores);
    let (mut true_positives, mut seen, mut previous_true_positives) = (0usize, 0usize, 0usize);
    let mut ap = 0.0;
    for (position, &i) in order.iter().enumerate() {
        seen += 1;
        true_positives += usize::from(relevant[i]);
        let group_ends = order
            .get(position + 1)
            .is_none_or(|&next| scores[next] != scores[i]);
        if group_ends {
            let recall_gain =
                (true_positives - previous_true_positives) as f64 / total_relevant as f64;
            ap += recall_gain * (true_positives as f64 / seen as f64);
            previous_true_positives = true_positives;
        }
    }
    Ok(ap)
}

/// Averages per-query reranking metrics into ST's result dict.
///
/// Every query added counts in the mean, including queries without a relevant document (they
/// count 0, as in ST, which divides by the number of samples). The `base_*` metrics average over
/// the documents-mode queries only and appear only when there was at least one.
#[derive(Debug, Clone, PartialEq)]
pub struct RerankingMetrics {
    at_k: usize,
    reranked: Vec<QueryMetrics>,
    base: Vec<QueryMetrics>,
}

impl RerankingMetrics {
    /// An empty accumulator for cut-off `at_k` (ST's default is 10). Errors when `at_k` is 0.
    pub fn new(at_k: usize) -> Result<Self> {
        check_k("reranking evaluation", at_k)?;
        Ok(RerankingMetrics {
            at_k,
            reranked: Vec::new(),
            base: Vec::new(),
        })
    }

    /// The cut-off of MRR and NDCG.
    pub fn at_k(&self) -> usize {
        self.at_k
    }

    /// The number of queries added.
    pub fn num_queries(&self) -> usize {
        self.reranked.len()
    }

    /// Add one query: its reranked metrics from `scores` (one per `query.docs`, ignored when
    /// `!query.needs_scores()`, so they may be empty then) and, in documents mode, its base
    /// metrics (the first-stage order scored `n, n−1, …, 1`).
    pub fn add(&mut self, query: &RerankingQuery<'_>, scores: &[f64]) -> Result<()> {
        let reranked = if query.needs_scores() {
            if scores.len() != query.docs.len() {
                return Err(Error::invalid(format!(
                    "query {:?} has {} documents to score but {} scores were given",
                    query.query,
                    query.docs.len(),
                    scores.len()
                )));
            }
            QueryMetrics::compute(&query.relevant, scores, self.at_k)?
        } else {
            QueryMetrics::ZERO
        };
        if let Some(base_relevant) = &query.base_relevant {
            self.add_base(base_relevant)?;
        }
        self.reranked.push(reranked);
        Ok(())
    }

    /// Add the reranked metrics of one query given directly by relevance and scores; no relevant
    /// document counts as 0 without looking at the scores.
    pub fn add_scored(&mut self, relevant: &[bool], scores: &[f64]) -> Result<()> {
        let metrics = if relevant.iter().any(|&r| r) {
            QueryMetrics::compute(relevant, scores, self.at_k)?
        } else {
            QueryMetrics::ZERO
        };
        self.reranked.push(metrics);
        Ok(())
    }

    /// Add the base metrics of one documents-mode query from `base_relevant` (see
    /// [`RerankingQuery::base_relevant`]); no relevant entry counts as 0.
    pub fn add_base(&mut self, base_relevant: &[bool]) -> Result<()> {
        let metrics = if base_relevant.iter().any(|&r| r) {
            let n = base_relevant.len();
            let scores: Vec<f64> = (0..n).map(|i| (n - i) as f64).collect();
            QueryMetrics::compute(base_relevant, &scores, self.at_k)?
        } else {
            QueryMetrics::ZERO
        };
        self.base.push(metrics);
        Ok(())
    }

    /// The means under ST's names, `map`, `mrr@{k}`, `ndcg@{k}`, plus `base_map`,
    /// `base_mrr@{k}`, `base_ndcg@{k}` when base metrics were added (without the evaluator-name
    /// prefix, which the caller adds). With no query added the means are NaN, as `np.mean([])`.
    pub fn finish(&self) -> BTreeMap<String, f64> {
        let k = self.at_k;
        let mut out = BTreeMap::new();
        let mut put = |prefix: &str, metrics: &[QueryMetrics]| {
            out.insert(
                format!("{prefix}map"),
                mean(metrics.iter().map(|m| m.average_precision)),
            );
            out.insert(
                format!("{prefix}mrr@{k}"),
                mean(metrics.iter().map(|m| m.mrr)),
            );
            out.insert(
                format!("{prefix}ndcg@{k}"),
                mean(metrics.iter().map(|m| m.ndcg)),
            );
        };
        put("", &self.reranked);
        if !self.base.is_empty() {
            put("base_", &self.base);
        }
        out
    }

    /// The whole evaluation at once: `scores[i]` belongs to `queries[i]` (see [`Self::add`]).
    /// Errors when the counts differ, there is no query, or a query's scores are invalid.
    pub fn compute(
        at_k: usize,
        queries: &[RerankingQuery<'_>],
        scores: &[Vec<f64>],
    ) -> Result<BTreeMap<String, f64>> {
        if queries.len() != scores.len() {
            return Err(Error::invalid(format!(
                "{} reranking queries but {} score lists; need one score list per query",
                queries.len(),
                scores.len()
            )));
        }
        if queries.is_empty() {
            return Err(Error::invalid(
                "the reranking evaluation has no samples; need at least one query",
            ));
        }
        let mut metrics = RerankingMetrics::new(at_k)?;
        for (query, query_scores) in queries.iter().zip(scores) {
            metrics.add(query, query_scores)?;
        }
        Ok(metrics.finish())
    }
}

fn mean(values: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = values.len();
    values.sum::<f64>() / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-12;

    fn assert_close(actual: f64, expected: f64, what: &str) {
        assert!(
            (actual - expected).abs() < EPS,
            "{what}: got {actual}, expected {expected}"
        );
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ties_are_averaged_in_ndcg_and_grouped_in_ap() {
        // relevant = [1,0,1,0,0], scores = [0.5,0.9,0.5,0.1,0.9].
        // By hand: order (ties: later first) is [4,1,2,0,3]; the first relevant document sits at
        // rank 3, so MRR = 1/3. NDCG@3: the 0.9 group (gain 0) fills ranks 1-2, the 0.5 group
        // (mean gain 1) ranks 3-4, of which only rank 3 is inside k: DCG = 1/log2(4) = 0.5,
        // IDCG = 1 + 1/log2(3). AP: at 0.9 no hit; at 0.5 recall 1 with precision 2/4 -> 0.5.
        // sklearn 1.9.1 (ndcg_score, average_precision_score) printed the same values.
        let relevant = [true, false, true, false, false];
        let scores = [0.5, 0.9, 0.5, 0.1, 0.9];
        let at3 = QueryMetrics::compute(&relevant, &scores, 3).unwrap();
        assert_close(at3.mrr, 1.0 / 3.0, "mrr@3");
        assert_close(at3.ndcg, 0.5 / (1.0 + 1.0 / 3f64.log2()), "ndcg@3 by hand");
        assert_close(at3.ndcg, 0.30657359638272924, "ndcg@3 sklearn");
        assert_close(at3.average_precision, 0.5, "ap");
        let at10 = QueryMetrics::compute(&relevant, &scores, 10).unwrap();
        assert_close(at10.mrr, 1.0 / 3.0, "mrr@10");
        assert_close(at10.ndcg, 0.57064171895532, "ndcg@10 sklearn");
    }

    #[test]
    fn graded_ndcg_matches_sklearn() {
        // sklearn 1.9.1: ndcg_score([[3,2,0,1]], [[0.1,0.4,0.4,0.3]], k=2) and without k.
        let gains = [3.0, 2.0, 0.0, 1.0];
        let scores = [0.1, 0.4, 0.4, 0.3];
        assert_close(
            ndcg_at_k(&gains, &scores, 2).unwrap(),
            0.3826803184943109,
            "k=2",
        );
        assert_close(
            ndcg_at_k(&gains, &scores, 4).unwrap(),
            0.7188283112210906,
            "k=4",
        );
        // By hand for k=2: the tied group {2.0, 0.0} (mean 1) fills ranks 1-2:
        // DCG = 1 + 1/log2(3); IDCG = 3 + 2/log2(3).
        let by_hand = (1.0 + 1.0 / 3f64.log2()) / (3.0 + 2.0 / 3f64.log2());
        assert_close(
            ndcg_at_k(&gains, &scores, 2).unwrap(),
            by_hand,
            "k=2 by hand",
        );
    }

    #[test]
    fn perfect_ranking_scores_one() {
        let metrics =
            QueryMetrics::compute(&[true, true, false, false], &[4.0, 3.0, 2.0, 1.0], 10).unwrap();
        assert_eq!(
            metrics,
            QueryMetrics {
                mrr: 1.0,
                ndcg: 1.0,
                average_precision: 1.0
            }
        );
        // One document: sklearn refuses it; the same formula gives 1 for a relevant one.
        assert_eq!(ndcg_at_k(&[1.0], &[0.3], 10).unwrap(), 1.0);
    }

    #[test]
    fn worst_ranking_and_k_cutoff() {
        // The one relevant document ranked last of 4. By hand: MRR@10 = 1/4, MRR@3 = 0 (outside
        // k), NDCG@10 = 1/log2(5), NDCG@3 = 0, AP = precision at rank 4 = 1/4 (sklearn agrees).
        let relevant = [true, false, false, false];
        let scores = [1.0, 2.0, 3.0, 4.0];
        let at3 = QueryMetrics::compute(&relevant, &scores, 3).unwrap();
        assert_eq!(at3.mrr, 0.0);
        assert_eq!(at3.ndcg, 0.0);
        assert_close(at3.average_precision, 0.25, "ap");
        let at10 = QueryMetrics::compute(&relevant, &scores, 10).unwrap();
        assert_close(at10.mrr, 0.25, "mrr@10");
        assert_close(at10.ndcg, 1.0 / 5f64.log2(), "ndcg@10");
        assert_close(at10.ndcg, 0.4306765580733929, "ndcg@10 sklearn");
    }

    #[test]
    fn all_tied_scores_break_mrr_ties_later_first() {
        // Constant scores: MRR takes the reversed stable order (the relevant first document comes
        // last), NDCG gives every rank the mean gain 1/4: (1 + 1/log2 3 + 1/2 + 1/log2 5) / 4
        // (sklearn: 0.6404015779112125), AP = 1/4 (everything enters at one threshold).
        let metrics = QueryMetrics::compute(&[true, false, false, false], &[7.0; 4], 10).unwrap();
        assert_close(metrics.mrr, 0.25, "mrr");
        assert_close(metrics.ndcg, 0.6404015779112125, "ndcg");
        assert_close(metrics.average_precision, 0.25, "ap");
        assert_eq!(descending_order(&[1.0, 2.0, 1.0, 2.0]), vec![3, 1, 2, 0]);
    }

    #[test]
    fn no_relevant_document_gives_zero() {
        // sklearn: average_precision_score([0,0,0], ...) = 0.0 (with a warning),
        // ndcg_score([[0,0,0]], ...) = 0.0.
        assert_eq!(
            average_precision(&[false; 3], &[0.1, 0.2, 0.3]).unwrap(),
            0.0
        );
        assert_eq!(ndcg_at_k(&[0.0; 3], &[0.1, 0.2, 0.3], 10).unwrap(), 0.0);
        assert_eq!(mrr_at_k(&[false; 3], &[0.1, 0.2, 0.3], 10).unwrap(), 0.0);
    }

    #[test]
    fn bad_inputs_are_errors_with_values() {
        let err = mrr_at_k(&[true, false], &[1.0], 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 relevance labels but 1 scores"), "{err}");
        let err = average_precision(&[true, false], &[1.0, f64::NAN])
            .unwrap_err()
            .to_string();
        assert!(err.contains("score 1 is NaN"), "{err}");
        let err = ndcg_at_k(&[1.0, -1.0], &[1.0, 2.0], 3)
            .unwrap_err()
            .to_string();
        assert!(err.contains("gain 1 is -1"), "{err}");
        let err = RerankingMetrics::new(0).unwrap_err().to_string();
        assert!(err.contains("k is 0"), "{err}");
        let err = ndcg_at_k(&[], &[], 3).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
    }

    /// Scores of the (query, document) pairs used by the evaluator tests below; the same table
    /// drives the Python replica of ST's `CrossEncoderRerankingEvaluator.__call__` (its loop with
    /// `model.predict` replaced by this table, sklearn 1.9.1, numpy 2.4.6, stable argsort) that
    /// printed the expected dicts.
    fn table(query: &str, doc: &str) -> f64 {
        match (query, doc) {
            ("q1", "p1") => 0.2,
            ("q1", "p2") => 0.9,
            ("q1", "d1") => 0.5,
            ("q1", "d2") => 0.1,
            ("q1", "d3") => 0.3,
            ("q2", "p3") => 0.4,
            ("q2", "d4") => 0.6,
            ("q2", "d5") => 0.4,
            ("q3", "d6") => 0.1,
            ("q3", "d7") => 0.2,
            ("q3", "p9") => 0.05,
            _ => panic!("no score for ({query}, {doc})"),
        }
    }

    fn evaluate(samples: &[RerankingSample], at_k: usize, always: bool) -> BTreeMap<String, f64> {
        let queries: Vec<RerankingQuery> = samples.iter().map(|s| s.to_query(always)).collect();
        let scores: Vec<Vec<f64>> = queries
            .iter()
            .map(|q| {
                if q.needs_scores() {
                    q.docs.iter().map(|d| table(q.query, d)).collect()
                } else {
                    Vec::new()
                }
            })
            .collect();
        RerankingMetrics::compute(at_k, &queries, &scores).unwrap()
    }

    fn assert_metrics(actual: &BTreeMap<String, f64>, expected: &[(&str, f64)]) {
        let keys: Vec<&str> = actual.keys().map(String::as_str).collect();
        let mut expected_keys: Vec<&str> = expected.iter().map(|(k, _)| *k).collect();
        expected_keys.sort_unstable();
        assert_eq!(keys, expected_keys);
        for (key, value) in expected {
            assert_close(actual[*key], *value, key);
        }
    }

    fn documents_samples() -> Vec<RerankingSample> {
        vec![
            // p2 was missed by the first stage.
            RerankingSample {
                query: "q1".into(),
                positive: strings(&["p1", "p2"]),
                candidates: Candidates::Documents(strings(&["d1", "p1", "d2", "d3"])),
            },
            RerankingSample {
                query: "q2".into(),
                positive: strings(&["p3"]),
                candidates: Candidates::Documents(strings(&["d4", "d5", "p3"])),
            },
            // No positive retrieved: base metrics 0; reranked only with always_rerank_positives.
            RerankingSample {
                query: "q3".into(),
                positive: strings(&["p9"]),
                candidates: Candidates::Documents(strings(&["d6", "d7"])),
            },
        ]
    }

    #[test]
    fn documents_mode_builds_lists_like_st() {
        let samples = documents_samples();
        let query = samples[0].to_query(true);
        assert_eq!(query.docs, vec!["p1", "p2", "d1", "d2", "d3"]);
        assert_eq!(query.relevant, vec![true, true, false, false, false]);
        // First-stage order d1 p1 d2 d3, then the missed p2 appended as relevant.
        assert_eq!(
            query.base_relevant,
            Some(vec![false, true, false, false, true])
        );
        let query = samples[0].to_query(false);
        assert_eq!(query.docs, vec!["d1", "p1", "d2", "d3"]);
        assert_eq!(query.relevant, vec![false, true, false, false]);
        let query = samples[2].to_query(false);
        assert!(!query.needs_scores());
        assert_eq!(query.base_relevant, Some(vec![false, false]));
    }

    #[test]
    fn documents_mode_matches_st_evaluator() {
        // Expected dicts printed by the Python replica (see `table`).
        let samples = documents_samples();
        assert_metrics(
            &evaluate(&samples, 10, true),
            &[
                ("map", 0.47222222222222215),
                ("mrr@10", 0.5555555555555555),
                ("ndcg@10", 0.6475600640412593),
                ("base_map", 0.2611111111111111),
                ("base_mrr@10", 0.27777777777777773),
                ("base_ndcg@10", 0.3746835066679459),
            ],
        );
        assert_metrics(
            &evaluate(&samples, 2, true),
            &[
                ("map", 0.47222222222222215),
                ("mrr@2", 0.3333333333333333),
                ("ndcg@2", 0.3095373565170624),
                ("base_map", 0.2611111111111111),
                ("base_mrr@2", 0.16666666666666666),
                ("base_ndcg@2", 0.12895093574484717),
            ],
        );
        assert_metrics(
            &evaluate(&samples, 10, false),
            &[
                ("map", 0.2222222222222222),
                ("mrr@10", 0.27777777777777773),
                ("ndcg@10", 0.35515495892857624),
                ("base_map", 0.2611111111111111),
                ("base_mrr@10", 0.27777777777777773),
                ("base_ndcg@10", 0.3746835066679459),
            ],
        );
        // Base of q1 by hand: relevance [0,1,0,0,1] -> MRR 1/2, AP (1/2)(1/2) + (1/2)(2/5) = 0.45;
        // q2 [0,0,1] -> MRR 1/3, AP 1/3; q3 -> 0. Means: MRR (1/2+1/3)/3, AP (0.45+1/3)/3.
        assert_close(
            evaluate(&samples, 10, true)["base_mrr@10"],
            (0.5 + 1.0 / 3.0) / 3.0,
            "base mrr by hand",
        );
        assert_close(
            evaluate(&samples, 10, true)["base_map"],
            (0.45 + 1.0 / 3.0) / 3.0,
            "base map by hand",
        );
    }

    #[test]
    fn negative_mode_counts_a_query_without_positive_as_zero() {
        let samples = vec![
            RerankingSample {
                query: "q1".into(),
                positive: strings(&["p1", "p2"]),
                candidates: Candidates::Negative(strings(&["d1", "d2", "d3"])),
            },
            RerankingSample {
                query: "q2".into(),
                positive: strings(&["p3"]),
                candidates: Candidates::Negative(strings(&["d4", "d5"])),
            },
            RerankingSample {
                query: "q3".into(),
                positive: Vec::new(),
                candidates: Candidates::Negative(strings(&["d6", "d7"])),
            },
        ];
        // Python replica; no base_* keys in negative mode. By hand, q1 ranks p2 d1 d3 p1 d2:
        // MRR 1, AP (1 + 2/4)/2 = 0.75; q2 ranks d4, then p3 and d5 tied at 0.4 (d5 first):
        // MRR 1/3, AP 1/3 (both enter at 0.4: precision 1/3); q3 counts 0.
        let metrics = evaluate(&samples, 10, true);
        assert_metrics(
            &metrics,
            &[
                ("map", 0.3611111111111111),
                ("mrr@10", 0.4444444444444444),
                ("ndcg@10", 0.48089339737459263),
            ],
        );
        assert_close(metrics["map"], (0.75 + 1.0 / 3.0) / 3.0, "map by hand");
        assert_close(metrics["mrr@10"], (1.0 + 1.0 / 3.0) / 3.0, "mrr by hand");
    }

    #[test]
    fn score_count_mismatch_is_an_error() {
        let samples = documents_samples();
        let query = samples[0].to_query(true);
        let mut metrics = RerankingMetrics::new(10).unwrap();
        let err = metrics.add(&query, &[1.0, 2.0]).unwrap_err().to_string();
        assert!(err.contains("5 documents to score but 2 scores"), "{err}");
        let err = RerankingMetrics::compute(10, &[], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no samples"), "{err}");
    }
}
