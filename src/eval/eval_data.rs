//! The evaluators' JSONL files: reranking samples and labelled text pairs.
//!
//! * [`read_reranking_samples`]: one sentence-transformers reranking sample per line,
//!   `{"query": str, "positive": str | [str], "documents": [str]}` or with `"negative": [str]`
//!   instead of `"documents"` (exactly one of the two).
//! * [`read_labelled_pairs`]: text pairs and one number per pair, for the correlation,
//!   classification and agreement evaluators. A line is `{"<a>": str, "<b>": str, "<label>": x}`,
//!   or `{"<a>": str, "<b>": [str, ...], "<label>": [x, ...]}` for a query with several documents
//!   (one pair per document). Labels are JSON numbers or booleans (`true` = 1).
//!
//! Blank lines are skipped. Every malformed line is an error naming the file and the line, what
//! was expected and what was found.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::metrics::{Candidates, RerankingSample};
use crate::error::{Error, Result};

/// Text-column pairs tried, in order, when a file's columns are not named: the first pair whose
/// two keys are both in the first row wins.
pub const PAIR_COLUMN_CANDIDATES: &[[&str; 2]] = &[
    ["query", "passage"],
    ["query", "document"],
    ["query", "documents"],
    ["sentence1", "sentence2"],
    ["text1", "text2"],
    ["anchor", "positive"],
];

/// Label columns tried, in order, when a file's label column is not named (the recipe's default
/// label names).
pub const LABEL_CANDIDATES: &[&str] = &["label", "labels", "score", "scores"];

/// The non-blank lines of a JSONL file, each parsed as a JSON object, with 1-based line numbers.
///
/// Errors: the file cannot be read; a line is not JSON or not an object (file and line); the
/// file holds no row.
pub fn read_jsonl_objects(path: &Path) -> Result<Vec<(usize, Map<String, Value>)>> {
    let mut rows = Vec::new();
    for line in crate::data::numbered_lines(path)? {
        let (line_number, line) = line?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line).map_err(|e| {
            Error::input(path, Some(line_number), format!("invalid JSON: {e}"))
                .with_hint("each line must be one JSON object")
        })?;
        match value {
            Value::Object(object) => rows.push((line_number, object)),
            other => {
                return Err(Error::input(
                    path,
                    Some(line_number),
                    format!("expected a JSON object, found {}", short(&other)),
                ))
            }
        }
    }
    if rows.is_empty() {
        return Err(Error::input(
            path,
            None,
            "no rows found; expected one JSON object per line",
        ));
    }
    Ok(rows)
}

/// A JSON value cut to 60 characters for messages.
pub(crate) fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(57) {
        Some((cut, _)) if text.len() > 60 => format!("{}...", &text[..cut]),
        _ => text,
    }
}

fn keys(object: &Map<String, Value>) -> Vec<&str> {
    object.keys().map(String::as_str).collect()
}

fn string_field(
    path: &Path,
    line: usize,
    object: &Map<String, Value>,
    key: &str,
) -> Result<String> {
    match object.get(key) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(Error::input(
            path,
            Some(line),
            format!("`{key}` must be a string, found {}", short(other)),
        )),
        None => Err(Error::input(
            path,
            Some(line),
            format!("missing `{key}`; found the keys {:?}", keys(object)),
        )),
    }
}

fn string_list(path: &Path, line: usize, key: &str, value: &Value) -> Result<Vec<String>> {
    let not_list = || {
        Error::input(
            path,
            Some(line),
            format!("`{key}` must be a list of strings, found {}", short(value)),
        )
    };
    value
        .as_array()
        .ok_or_else(not_list)?
        .iter()
        .map(|item| item.as_str().map(str::to_string).ok_or_else(not_list))
        .collect()
}

/// Read sentence-transformers reranking samples (see the module docs).
///
/// Errors name the file and line of a row without `query` or `positive`, with both or neither
/// of `documents` and `negative`, or with a value of the wrong type.
pub fn read_reranking_samples(path: &Path) -> Result<Vec<RerankingSample>> {
    read_jsonl_objects(path)?
        .into_iter()
        .map(|(line, object)| reranking_sample(path, line, &object))
        .collect()
}

fn reranking_sample(
    path: &Path,
    line: usize,
    object: &Map<String, Value>,
) -> Result<RerankingSample> {
    let query =
        string_field(path, line, object, "query").map_err(|e| e.with_hint(RERANKING_ROW_HINT))?;
    let positive = match object.get("positive") {
        Some(Value::String(text)) => vec![text.clone()],
        Some(value) => string_list(path, line, "positive", value)?,
        None => {
            return Err(Error::input(
                path,
                Some(line),
                format!("missing `positive`; found the keys {:?}", keys(object)),
            )
            .with_hint(RERANKING_ROW_HINT))
        }
    };
    let candidates =
        match (object.get("documents"), object.get("negative")) {
            (Some(documents), None) => {
                Candidates::Documents(string_list(path, line, "documents", documents)?)
            }
            (None, Some(negative)) => {
                Candidates::Negative(string_list(path, line, "negative", negative)?)
            }
            (Some(_), Some(_)) => return Err(Error::input(
                path,
                Some(line),
                "found both `documents` and `negative`; a sample has exactly one of them",
            )
            .with_hint(
                "`documents` is a first-stage ranking (may contain positives), `negative` a list \
                 of irrelevant documents",
            )),
            (None, None) => {
                return Err(Error::input(
                    path,
                    Some(line),
                    format!(
                        "expected `documents` or `negative`, found the keys {:?}",
                        keys(object)
                    ),
                )
                .with_hint(RERANKING_ROW_HINT))
            }
        };
    Ok(RerankingSample {
        query,
        positive,
        candidates,
    })
}

const RERANKING_ROW_HINT: &str =
    "each line must look like {\"query\": \"...\", \"positive\": [\"...\"], \"documents\": [\"...\", ...]}";

/// Which column holds the labels of [`read_labelled_pairs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelColumn<'a> {
    /// This column, required in every row.
    Named(&'a str),
    /// The first of these that the first row has; then required in every row.
    FirstOf(&'a [&'a str]),
    /// No labels are read.
    Absent,
}

/// Text pairs with one label each, read by [`read_labelled_pairs`].
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledPairs {
    /// The file read.
    pub path: PathBuf,
    /// The two text columns used.
    pub columns: [String; 2],
    /// The label column used (`None` for [`LabelColumn::Absent`]).
    pub label_column: Option<String>,
    /// (first text, second text), in file order; a row with a list of documents gives one pair
    /// per document.
    pub pairs: Vec<(String, String)>,
    /// `labels[i]` belongs to `pairs[i]`; empty without a label column.
    pub labels: Vec<f64>,
    /// `lines[i]`: the 1-based line that `pairs[i]` came from.
    pub lines: Vec<usize>,
}

/// Read text pairs and their labels (see the module docs).
///
/// `columns`: the two text columns, or `None` for the first of [`PAIR_COLUMN_CANDIDATES`] that
/// the first row has. Errors name the file and line of a row that lacks a column, has a value of
/// the wrong type, or a document list and label list of different lengths.
pub fn read_labelled_pairs(
    path: &Path,
    columns: Option<[&str; 2]>,
    label: LabelColumn<'_>,
) -> Result<LabelledPairs> {
    let rows = read_jsonl_objects(path)?;
    let (first_line, first) = &rows[0];
    let columns = match columns {
        Some(columns) => columns,
        None => *PAIR_COLUMN_CANDIDATES
            .iter()
            .find(|[a, b]| first.contains_key(*a) && first.contains_key(*b))
            .ok_or_else(|| {
                Error::input(
                    path,
                    Some(*first_line),
                    format!(
                        "found none of the text-column pairs {} among the keys {:?}",
                        PAIR_COLUMN_CANDIDATES
                            .iter()
                            .map(|[a, b]| format!("({a}, {b})"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        keys(first)
                    ),
                )
                .with_hint("name the two text columns, e.g. columns = [\"question\", \"answer\"]")
            })?,
    };
    let label_column = match label {
        LabelColumn::Named(name) => Some(name),
        LabelColumn::Absent => None,
        LabelColumn::FirstOf(candidates) => Some(
            *candidates
                .iter()
                .find(|name| first.contains_key(**name))
                .ok_or_else(|| {
                    Error::input(
                        path,
                        Some(*first_line),
                        format!(
                            "found no label column: none of {candidates:?} among the keys {:?}",
                            keys(first)
                        ),
                    )
                    .with_hint("name the label column, e.g. label = \"relevance\"")
                })?,
        ),
    };
    let mut out = LabelledPairs {
        path: path.to_path_buf(),
        columns: columns.map(str::to_string),
        label_column: label_column.map(str::to_string),
        pairs: Vec::new(),
        labels: Vec::new(),
        lines: Vec::new(),
    };
    for (line, object) in &rows {
        let line = *line;
        let first_text = string_field(path, line, object, columns[0])?;
        let label = match label_column {
            Some(name) => Some(object.get(name).ok_or_else(|| {
                Error::input(
                    path,
                    Some(line),
                    format!(
                        "missing the label `{name}`; found the keys {:?}",
                        keys(object)
                    ),
                )
            })?),
            None => None,
        };
        match object.get(columns[1]) {
            Some(Value::String(second)) => {
                if let (Some(name), Some(value)) = (label_column, label) {
                    out.labels.push(label_value(path, line, name, value)?);
                }
                out.pairs.push((first_text, second.clone()));
                out.lines.push(line);
            }
            Some(Value::Array(_)) => {
                let documents = string_list(path, line, columns[1], &object[columns[1]])?;
                if let (Some(name), Some(value)) = (label_column, label) {
                    let values = value.as_array().ok_or_else(|| {
                        Error::input(
                            path,
                            Some(line),
                            format!(
                                "`{}` is a list, so `{name}` must be a list of {} numbers, found {}",
                                columns[1],
                                documents.len(),
                                short(value)
                            ),
                        )
                    })?;
                    if values.len() != documents.len() {
                        return Err(Error::input(
                            path,
                            Some(line),
                            format!(
                                "`{}` has {} documents but `{name}` has {} values; need one per document",
                                columns[1],
                                documents.len(),
                                values.len()
                            ),
                        ));
                    }
                    for value in values {
                        out.labels.push(label_value(path, line, name, value)?);
                    }
                }
                for document in documents {
                    out.pairs.push((first_text.clone(), document));
                    out.lines.push(line);
                }
            }
            Some(other) => {
                return Err(Error::input(
                    path,
                    Some(line),
                    format!(
                        "`{}` must be a string or a list of strings, found {}",
                        columns[1],
                        short(other)
                    ),
                ))
            }
            None => {
                return Err(Error::input(
                    path,
                    Some(line),
                    format!(
                        "missing `{}`; found the keys {:?}",
                        columns[1],
                        keys(object)
                    ),
                ))
            }
        }
    }
    Ok(out)
}

fn label_value(path: &Path, line: usize, name: &str, value: &Value) -> Result<f64> {
    match value {
        Value::Number(number) => number.as_f64().ok_or_else(|| {
            Error::input(
                path,
                Some(line),
                format!("`{name}` is {number}, which is not a finite number"),
            )
        }),
        Value::Bool(flag) => Ok(f64::from(u8::from(*flag))),
        other => Err(Error::input(
            path,
            Some(line),
            format!("`{name}` must be a number, found {}", short(other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("data.jsonl");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reranking_samples_in_both_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "{\"query\": \"q1\", \"positive\": \"p\", \"negative\": [\"n1\", \"n2\"]}\n\n\
             {\"query\": \"q2\", \"positive\": [\"a\", \"b\"], \"documents\": [\"b\", \"c\"], \"id\": 7}\n",
        );
        let samples = read_reranking_samples(&path).unwrap();
        assert_eq!(
            samples,
            vec![
                RerankingSample {
                    query: "q1".into(),
                    positive: vec!["p".into()],
                    candidates: Candidates::Negative(vec!["n1".into(), "n2".into()]),
                },
                RerankingSample {
                    query: "q2".into(),
                    positive: vec!["a".into(), "b".into()],
                    candidates: Candidates::Documents(vec!["b".into(), "c".into()]),
                },
            ]
        );
    }

    #[test]
    fn reranking_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = "{\"query\": \"q\", \"positive\": \"p\", \"negative\": [\"n\"]}\n";
        let cases = [
            ("{\"positive\": \"p\", \"negative\": []}", "missing `query`"),
            ("{\"query\": \"q\", \"negative\": []}", "missing `positive`"),
            (
                "{\"query\": \"q\", \"positive\": \"p\"}",
                "expected `documents` or `negative`",
            ),
            (
                "{\"query\": \"q\", \"positive\": \"p\", \"negative\": [], \"documents\": []}",
                "found both `documents` and `negative`",
            ),
            (
                "{\"query\": \"q\", \"positive\": \"p\", \"negative\": [1]}",
                "`negative` must be a list of strings, found [1]",
            ),
            ("{\"query\": 3}", "`query` must be a string, found 3"),
            ("{oops", "invalid JSON"),
            ("[1]", "expected a JSON object, found [1]"),
        ];
        for (row, message) in cases {
            let path = write(dir.path(), &format!("{good}{row}\n"));
            let err = read_reranking_samples(&path).unwrap_err().to_string();
            assert!(
                err.contains("data.jsonl:2: ") && err.contains(message),
                "{row}: {err}"
            );
        }
        let path = write(dir.path(), "\n\n");
        let err = read_reranking_samples(&path).unwrap_err().to_string();
        assert!(err.contains("no rows found"), "{err}");
    }

    #[test]
    fn labelled_pairs_detect_columns_and_expand_lists() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"score\": 0.5}\n\
             {\"sentence1\": \"c\", \"sentence2\": [\"d\", \"e\"], \"score\": [1, true]}\n",
        );
        let pairs =
            read_labelled_pairs(&path, None, LabelColumn::FirstOf(LABEL_CANDIDATES)).unwrap();
        assert_eq!(pairs.columns, ["sentence1", "sentence2"]);
        assert_eq!(pairs.label_column.as_deref(), Some("score"));
        assert_eq!(
            pairs.pairs,
            [("a", "b"), ("c", "d"), ("c", "e")].map(|(x, y)| (x.to_string(), y.to_string()))
        );
        assert_eq!(pairs.labels, [0.5, 1.0, 1.0]);
        assert_eq!(pairs.lines, [1, 2, 2]);

        let unlabelled =
            read_labelled_pairs(&path, Some(["sentence2", "sentence1"]), LabelColumn::Absent);
        let err = unlabelled.unwrap_err().to_string();
        assert!(
            err.contains("data.jsonl:2: `sentence2` must be a string, found [\"d\",\"e\"]"),
            "first column must be a string: {err}"
        );
    }

    #[test]
    fn labelled_pair_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = "{\"query\": \"q\", \"passage\": \"p\", \"label\": 1}\n";
        let cases = [
            (
                "{\"query\": \"q\", \"passage\": \"p\"}",
                "missing the label `label`",
            ),
            ("{\"query\": \"q\", \"label\": 1}", "missing `passage`"),
            (
                "{\"query\": \"q\", \"passage\": \"p\", \"label\": \"high\"}",
                "`label` must be a number, found \"high\"",
            ),
            (
                "{\"query\": \"q\", \"passage\": [\"p\", \"r\"], \"label\": [1]}",
                "has 2 documents but `label` has 1 values",
            ),
            (
                "{\"query\": \"q\", \"passage\": [\"p\"], \"label\": 1}",
                "`label` must be a list of 1 numbers",
            ),
            (
                "{\"query\": \"q\", \"passage\": 5, \"label\": 1}",
                "`passage` must be a string or a list of strings, found 5",
            ),
        ];
        for (row, message) in cases {
            let path = write(dir.path(), &format!("{good}{row}\n"));
            let err = read_labelled_pairs(&path, None, LabelColumn::FirstOf(LABEL_CANDIDATES))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("data.jsonl:2: ") && err.contains(message),
                "{row}: {err}"
            );
        }
        let path = write(dir.path(), "{\"a\": \"x\", \"b\": \"y\"}\n");
        let err = read_labelled_pairs(&path, None, LabelColumn::Absent)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("data.jsonl:1: found none of the text-column pairs")
                && err.contains("columns = ["),
            "{err}"
        );
        let err = read_labelled_pairs(&path, Some(["a", "b"]), LabelColumn::FirstOf(&["y"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("found no label column"), "{err}");
    }
}
