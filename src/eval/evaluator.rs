//! The [`Evaluator`] trait: score a model on held-out data and return named metrics, as
//! sentence-transformers' CrossEncoder evaluators do, plus [`write_csv`] for their CSV logs.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil::create_dir_all;
use crate::model::PairScorer;

/// Something that scores a cross-encoder on held-out data.
///
/// Evaluators load and check their data when they are built, so [`Evaluator::evaluate`] fails
/// only on model problems (a wrong label count, NaN scores). They hold data, not models: the
/// trainer calls `evaluate` with the student of the moment.
pub trait Evaluator: Send {
    /// The evaluator's name, unique in a run: metrics are logged as `eval/<name>/<metric>` and
    /// the CSV file is named after it.
    fn name(&self) -> &str;

    /// Score `model` on the evaluator's data and return the metrics under sentence-transformers'
    /// names, without the name prefix (`map`, `mrr@10`, `ndcg@10`, `spearman`, ...). Values are
    /// NaN where a metric is undefined (e.g. a correlation of constant scores).
    ///
    /// Errors when the model does not fit the data (label count) or produces NaN scores.
    fn evaluate(&self, model: &dyn PairScorer) -> Result<BTreeMap<String, f64>> {
        self.evaluate_with_progress(model, &mut |_| {})
    }

    /// [`Evaluator::evaluate`], calling `progress` with the number of pairs scored after each
    /// batch (for a progress bar; they add up to [`Evaluator::pair_count`]).
    fn evaluate_with_progress(
        &self,
        model: &dyn PairScorer,
        progress: &mut dyn FnMut(usize),
    ) -> Result<BTreeMap<String, f64>>;

    /// How many (query, document) pairs an evaluation scores.
    fn pair_count(&self) -> usize;

    /// The key in [`Evaluator::evaluate`]'s map that says how good the model is (higher is
    /// better), e.g. `ndcg@10`; best-checkpoint selection and the model card use it.
    fn primary_metric(&self) -> &str;

    /// The keys [`Evaluator::evaluate`] returns (without the name prefix), known before any
    /// evaluation, so that `train.metric_for_best_model` is checked before training. Empty: not
    /// known (then it is checked at the first evaluation).
    fn metric_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// sentence-transformers' description of the task, e.g. "Cross Encoder Reranking" (the
    /// model card's table title and the model-index task name).
    fn description(&self) -> &str {
        "Cross Encoder Evaluation"
    }

    /// The evaluator's settings for the model card, as ST's `get_config_dict` (an empty object
    /// when there is nothing to show).
    fn config(&self) -> serde_json::Value {
        serde_json::Value::Object(serde_json::Map::new())
    }
}

/// Scores of `pairs` under the model's default activation (sigmoid for one label, as ST's
/// `predict`), one row of `num_labels` values per pair, in input order.
pub(crate) fn model_scores(
    model: &dyn PairScorer,
    pairs: &[(&str, &str)],
    batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Vec<f64>>> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let activation = model.default_activation();
    let logits = model.predict_logits(pairs, batch_size, progress)?;
    Ok(logits
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|x| f64::from(activation.apply(x)))
                .collect()
        })
        .collect())
}

/// [`model_scores`] for a one-label model: the single score of each pair. `what` names the
/// evaluator in the error when the model has several labels.
pub(crate) fn single_scores(
    model: &dyn PairScorer,
    pairs: &[(&str, &str)],
    batch_size: usize,
    what: &str,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<f64>> {
    if model.num_labels() != 1 {
        return Err(Error::invalid(format!(
            "{what} needs a model with one output (a relevance score), but this model has {} labels",
            model.num_labels()
        ))
        .with_hint("use the classification evaluator for multi-label models"));
    }
    Ok(model_scores(model, pairs, batch_size, progress)?
        .into_iter()
        .map(|row| row[0])
        .collect())
}

/// Check a batch size given to an evaluator.
pub(crate) fn check_batch_size(batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(Error::invalid(
            "evaluation batch_size is 0; it must be at least 1",
        ));
    }
    Ok(())
}

/// The CSV file of evaluator `name` in `dir`: `{name}_results.csv`, with every character
/// other than ASCII letters, digits, `-`, `_` and `.` replaced by `_`.
pub fn csv_path(dir: &Path, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{safe}_results.csv"))
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn csv_number(value: f64) -> String {
    if value.is_nan() {
        // What Python's csv module writes for float('nan'); pandas reads it back as NaN.
        "nan".to_string()
    } else {
        value.to_string()
    }
}

/// Append one row of `metrics` at `step` to evaluator `name`'s CSV in `dir` (see [`csv_path`]),
/// as sentence-transformers' evaluators do: the header `step,<metric>,...` (metrics in key order)
/// is written when the file is created, later calls append. Creates `dir` when missing and
/// returns the file's path.
///
/// Errors when the file exists with other columns (the metric set changed, or another evaluator
/// wrote it), or on I/O failure.
pub fn write_csv(
    dir: &Path,
    name: &str,
    step: u64,
    metrics: &BTreeMap<String, f64>,
) -> Result<PathBuf> {
    let path = csv_path(dir, name);
    let header: String = std::iter::once("step".to_string())
        .chain(metrics.keys().map(|key| csv_field(key)))
        .collect::<Vec<_>>()
        .join(",");
    let exists = path.is_file();
    if exists {
        let file = std::fs::File::open(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        let mut first_line = String::new();
        std::io::BufReader::new(file)
            .read_line(&mut first_line)
            .map_err(|e| Error::io("cannot read", &path, e))?;
        if first_line.trim_end() != header {
            return Err(Error::input(
                &path,
                Some(1),
                format!(
                    "the file has the columns {:?} but evaluator {name:?} writes {header:?}",
                    first_line.trim_end()
                ),
            )
            .with_hint("move the old file away, or give the evaluator another name"));
        }
    } else {
        create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io("cannot open", &path, e))?;
    let row: String = std::iter::once(step.to_string())
        .chain(metrics.values().map(|&value| csv_number(value)))
        .collect::<Vec<_>>()
        .join(",");
    let text = if exists {
        format!("{row}\n")
    } else {
        format!("{header}\n{row}\n")
    };
    // Synced like metrics.jsonl: a checkpoint records how many lines the file had, and a resumed
    // run cuts it back to them.
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io("cannot write", &path, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_writes_the_header_once_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let csv_dir = dir.path().join("eval");
        let first = BTreeMap::from([("ndcg@10".to_string(), 0.5), ("map".to_string(), 0.25)]);
        let second = BTreeMap::from([("ndcg@10".to_string(), 0.75), ("map".to_string(), f64::NAN)]);
        let path = write_csv(&csv_dir, "dev/ms marco", 100, &first).unwrap();
        assert_eq!(path, csv_dir.join("dev_ms_marco_results.csv"));
        write_csv(&csv_dir, "dev/ms marco", 200, &second).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "step,map,ndcg@10\n100,0.25,0.5\n200,nan,0.75\n"
        );
    }

    #[test]
    fn csv_with_other_columns_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = csv_path(dir.path(), "dev");
        std::fs::write(&path, "step,pearson\n1,0.5\n").unwrap();
        let metrics = BTreeMap::from([("map".to_string(), 0.5)]);
        let err = write_csv(dir.path(), "dev", 2, &metrics)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dev_results.csv:1: the file has the columns \"step,pearson\"")
                && err.contains("\"step,map\""),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "step,pearson\n1,0.5\n",
            "the old file is left alone"
        );
    }

    #[test]
    fn csv_quotes_fields_that_need_it() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("ndcg@10"), "ndcg@10");
    }
}
