//! The best-model policy: which metric `train.metric_for_best_model` names, and whether a new
//! value beats the best so far. Decisions only; the trainer saves and loads the model.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::eval::Evaluator;

/// The full `eval/<name>/<metric>` key that `metric_for_best_model` names: accepted as written,
/// without the `eval/` prefix, or as a bare metric when only one evaluator reports it.
pub fn best_metric_key(wanted: &str, available: &BTreeMap<String, f64>) -> Result<String> {
    for candidate in [wanted.to_string(), format!("eval/{wanted}")] {
        if available.contains_key(&candidate) {
            return Ok(candidate);
        }
    }
    let matches: Vec<&String> = available
        .keys()
        .filter(|k| k.ends_with(&format!("/{wanted}")))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        _ => Err(Error::invalid(format!(
            "train.metric_for_best_model = {wanted:?} matches {} of the evaluation metrics; expected exactly one of {}",
            matches.len(),
            available.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
        .with_hint("write it as \"<eval name>/<metric>\", e.g. \"dev/ndcg@10\"")),
    }
}

/// Whether `value` beats `best` for metric `key` (losses are minimised, everything else maximised).
pub fn is_better(key: &str, value: f64, best: Option<f64>) -> bool {
    match best {
        None => value.is_finite(),
        Some(best) if key.contains("loss") => value < best,
        Some(best) => value > best,
    }
}

/// `metric_for_best_model` must name exactly one metric of the evaluators (see
/// [`best_metric_key`] for the accepted spellings). Evaluators that cannot tell their metrics
/// before evaluating leave the check to the first evaluation.
pub fn check_best_metric(wanted: &str, evaluators: &[Box<dyn Evaluator>]) -> Result<()> {
    if evaluators.is_empty() {
        return Err(Error::invalid(format!(
            "train.metric_for_best_model = {wanted:?}, but the recipe has no [[eval]] to measure it"
        ))
        .with_hint("add an [[eval]] section, or remove train.metric_for_best_model"));
    }
    let mut available = BTreeMap::new();
    for evaluator in evaluators {
        let names = evaluator.metric_names();
        if names.is_empty() {
            return Ok(());
        }
        for metric in names {
            available.insert(format!("eval/{}/{metric}", evaluator.name()), 0.0);
        }
    }
    best_metric_key(wanted, &available).map(|_| ())
}
