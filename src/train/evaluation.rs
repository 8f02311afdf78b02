//! Evaluation during training: run every `[[eval]]` evaluator on the student and write its CSV.

use std::collections::BTreeMap;
use std::path::Path;

use super::plan::Plan;
use super::progress::TrainProgress;
use crate::card::EvalResult;
use crate::error::Result;

/// Run every evaluator; returns `eval/<name>/<metric>` values and the per-evaluator results.
pub fn evaluate(
    plan: &Plan,
    step: usize,
    output_dir: &Path,
    progress: &mut dyn TrainProgress,
) -> Result<(BTreeMap<String, f64>, Vec<EvalResult>)> {
    let mut flat = BTreeMap::new();
    let mut results = Vec::new();
    for evaluator in &plan.evaluators {
        let (name, total) = (evaluator.name(), evaluator.pair_count());
        let mut done = 0;
        progress.evaluating(name, done, total);
        let metrics = evaluator.evaluate_with_progress(&plan.student, &mut |n| {
            done += n;
            progress.evaluating(name, done, total);
        })?;
        crate::eval::write_csv(
            &output_dir.join("eval"),
            evaluator.name(),
            step as u64,
            &metrics,
        )?;
        for (metric, value) in &metrics {
            flat.insert(format!("eval/{}/{metric}", evaluator.name()), *value);
        }
        results.push(EvalResult {
            name: evaluator.name().to_string(),
            description: evaluator.description().to_string(),
            primary_metric: Some(evaluator.primary_metric().to_string()),
            config: evaluator.config(),
            metrics,
        });
    }
    Ok((flat, results))
}
