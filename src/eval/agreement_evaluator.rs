//! How closely a student ranks like its teacher: Spearman's rho and Kendall's tau-b between the
//! student's scores and the teacher's, per query (the default) or over all pairs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::json;

use super::agreement::{agreement, mean_query_agreement};
use super::eval_data::{read_labelled_pairs, LabelColumn};
use super::evaluator::{check_batch_size, single_scores, Evaluator};
use crate::error::{Error, Result};
use crate::model::PairScorer;
use crate::teacher::Teacher;

/// Teacher-score columns tried, in order, when the column is not named.
pub const TEACHER_SCORE_CANDIDATES: &[&str] = &[
    "teacher_score",
    "teacher_scores",
    "score",
    "scores",
    "label",
    "labels",
];

/// Student–teacher agreement: metrics `spearman` (primary) and `kendall_tau`.
///
/// With `per_query` (the default), pairs are grouped by their first text (the query) and the
/// metrics are the means of each query's coefficients; queries where they are undefined (one
/// document, or constant scores) are left out. Otherwise they are computed over all pairs at once.
#[derive(Debug, Clone)]
pub struct AgreementEvaluator {
    name: String,
    pairs: Vec<(String, String)>,
    teacher_scores: Vec<f64>,
    per_query: bool,
    batch_size: usize,
}

impl AgreementEvaluator {
    /// An evaluator over `pairs` with the teacher's scores of them.
    ///
    /// Errors when the counts differ, there are fewer than 2 pairs, a teacher score is not
    /// finite, or `batch_size` is 0.
    pub fn new(
        name: impl Into<String>,
        pairs: Vec<(String, String)>,
        teacher_scores: Vec<f64>,
        per_query: bool,
        batch_size: usize,
    ) -> Result<Self> {
        let name = name.into();
        if pairs.len() != teacher_scores.len() {
            return Err(Error::invalid(format!(
                "agreement evaluator {name:?}: {} pairs but {} teacher scores; need one per pair",
                pairs.len(),
                teacher_scores.len()
            )));
        }
        if pairs.len() < 2 {
            return Err(Error::invalid(format!(
                "agreement evaluator {name:?} has {} pair(s); a rank correlation needs at least 2",
                pairs.len()
            )));
        }
        if let Some(i) = teacher_scores.iter().position(|s| !s.is_finite()) {
            return Err(Error::invalid(format!(
                "agreement evaluator {name:?}: teacher score {i} is {}; scores must be finite",
                teacher_scores[i]
            )));
        }
        check_batch_size(batch_size)?;
        if per_query {
            let mut seen = std::collections::HashSet::new();
            if pairs.iter().all(|(query, _)| seen.insert(query.as_str())) {
                return Err(Error::invalid(format!(
                    "agreement evaluator {name:?}: every query has one document, so per-query \
                     rank correlations are undefined"
                ))
                .with_hint(
                    "give several documents per query, or compare over all pairs (recipe: \
                     per_query = false; eval command: --agreement-flat)",
                ));
            }
        }
        Ok(AgreementEvaluator {
            name,
            pairs,
            teacher_scores,
            per_query,
            batch_size,
        })
    }

    /// An evaluator whose teacher scores are computed now, once, by `teacher`.
    pub fn from_teacher(
        name: impl Into<String>,
        pairs: Vec<(String, String)>,
        teacher: &mut dyn Teacher,
        per_query: bool,
        batch_size: usize,
    ) -> Result<Self> {
        let borrowed: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let scores = teacher.score(&borrowed)?;
        if scores.len() != pairs.len() {
            return Err(Error::invalid(format!(
                "teacher {} returned {} scores for {} pairs",
                teacher.describe(),
                scores.len(),
                pairs.len()
            )));
        }
        let scores = scores.into_iter().map(f64::from).collect();
        Self::new(name, pairs, scores, per_query, batch_size)
    }

    /// An evaluator over a JSONL file whose rows hold the teacher's scores (see
    /// [`read_labelled_pairs`](super::read_labelled_pairs)); `teacher_column = None` takes the
    /// first of [`TEACHER_SCORE_CANDIDATES`].
    pub fn from_jsonl(
        name: impl Into<String>,
        path: &Path,
        columns: Option<[&str; 2]>,
        teacher_column: Option<&str>,
        per_query: bool,
        batch_size: usize,
    ) -> Result<Self> {
        let label = teacher_column.map_or(
            LabelColumn::FirstOf(TEACHER_SCORE_CANDIDATES),
            LabelColumn::Named,
        );
        let data = read_labelled_pairs(path, columns, label)?;
        Self::new(name, data.pairs, data.labels, per_query, batch_size)
    }

    /// The pairs the model scores.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.pairs
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect()
    }

    /// The teacher's scores, one per pair.
    pub fn teacher_scores(&self) -> &[f64] {
        &self.teacher_scores
    }

    /// `spearman` and `kendall_tau` of student `scores` (one per pair) against the teacher's.
    pub fn metrics_from_scores(&self, scores: &[f64]) -> Result<BTreeMap<String, f64>> {
        if scores.len() != self.pairs.len() {
            return Err(Error::invalid(format!(
                "agreement evaluator {:?}: {} scores for {} pairs; need one per pair",
                self.name,
                scores.len(),
                self.pairs.len()
            )));
        }
        if !self.per_query {
            return agreement(scores, &self.teacher_scores);
        }
        // Group by query text, queries in order of first appearance.
        let mut groups: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
        let mut group_of: HashMap<&str, usize> = HashMap::new();
        for (i, (query, _)) in self.pairs.iter().enumerate() {
            let group = *group_of.entry(query.as_str()).or_insert_with(|| {
                groups.push((Vec::new(), Vec::new()));
                groups.len() - 1
            });
            groups[group].0.push(scores[i]);
            groups[group].1.push(self.teacher_scores[i]);
        }
        mean_query_agreement(
            groups
                .iter()
                .map(|(student, teacher)| (student.as_slice(), teacher.as_slice())),
        )
    }
}

impl Evaluator for AgreementEvaluator {
    fn name(&self) -> &str {
        &self.name
    }

    fn evaluate_with_progress(
        &self,
        model: &dyn PairScorer,
        progress: &mut dyn FnMut(usize),
    ) -> Result<BTreeMap<String, f64>> {
        let what = format!("agreement evaluator {:?}", self.name);
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
        "Teacher Agreement"
    }

    fn config(&self) -> serde_json::Value {
        json!({ "per_query": self.per_query })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(spec: &[(&str, &str)]) -> Vec<(String, String)> {
        spec.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn hand_checked_per_query_and_flat() {
        // Query a: student (1, 2, 3) vs teacher (10, 20, 30): same order → 1 and 1.
        // Query b: student (1, 2) vs teacher (5, 4): reversed → -1 and -1. Per query: mean 0.
        // Flat over the 5 pairs: student 1 2 3 1 2, teacher 10 20 30 5 4 — tau-b by hand:
        // 10 pairs; x ties (1,1),(2,2) = 2, no y ties; concordant 6, discordant 2 →
        // (6 − 2) / sqrt(8 · 10) = 0.4472135954999579.
        let evaluator = AgreementEvaluator::new(
            "agree",
            pairs(&[("a", "1"), ("a", "2"), ("b", "1"), ("a", "3"), ("b", "2")]),
            vec![10.0, 20.0, 5.0, 30.0, 4.0],
            true,
            32,
        )
        .unwrap();
        let student = [1.0, 2.0, 1.0, 3.0, 2.0];
        let metrics = evaluator.metrics_from_scores(&student).unwrap();
        assert!(metrics["spearman"].abs() < 1e-12, "{metrics:?}");
        assert!(metrics["kendall_tau"].abs() < 1e-12, "{metrics:?}");
        let flat = AgreementEvaluator::new(
            "agree",
            evaluator.pairs.clone(),
            evaluator.teacher_scores.clone(),
            false,
            32,
        )
        .unwrap();
        let metrics = flat.metrics_from_scores(&student).unwrap();
        assert!((metrics["kendall_tau"] - 0.4472135954999579).abs() < 1e-12);
    }

    struct Fixed(Vec<f32>);

    impl Teacher for Fixed {
        fn score(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
            Ok(self.0[..pairs.len()].to_vec())
        }
        fn fingerprint(&self) -> String {
            "fixed".into()
        }
        fn describe(&self) -> String {
            "fixed scores".into()
        }
    }

    #[test]
    fn per_query_needs_a_query_with_several_documents() {
        let err = AgreementEvaluator::new(
            "agree",
            pairs(&[("a", "1"), ("b", "1")]),
            vec![1.0, 2.0],
            true,
            32,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("every query has one document") && err.contains("per_query = false"),
            "{err}"
        );
        assert!(AgreementEvaluator::new(
            "agree",
            pairs(&[("a", "1"), ("b", "1")]),
            vec![1.0, 2.0],
            false,
            32
        )
        .is_ok());
    }

    #[test]
    fn teacher_scores_are_computed_once_at_construction() {
        let mut teacher = Fixed(vec![0.5, 0.25]);
        let evaluator = AgreementEvaluator::from_teacher(
            "agree",
            pairs(&[("q", "x"), ("q", "y")]),
            &mut teacher,
            true,
            8,
        )
        .unwrap();
        assert_eq!(evaluator.teacher_scores(), [0.5, 0.25]);
        let metrics = evaluator.metrics_from_scores(&[0.0, 1.0]).unwrap();
        assert!((metrics["spearman"] + 1.0).abs() < 1e-12, "{metrics:?}");
    }
}
