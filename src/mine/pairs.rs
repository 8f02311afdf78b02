//! The input of mining: (anchor, positive) pairs, and how they group into queries with one or
//! more positives over a deduplicated corpus (the column choice, `max_positives` and corpus
//! deduplication of `mine_hard_negatives`, sentence-transformers `util/hard_negatives.py`).

use std::collections::HashMap;

use crate::data::{DataSource, Field};
use crate::error::{Error, Result};

/// (anchor, positive) pairs in dataset order, with the column names the output keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct PairDataset {
    /// Name of the anchor column (output column 0).
    pub anchor_column: String,
    /// Name of the positive column (output column 1).
    pub positive_column: String,
    /// The pairs, in dataset order. A repeated anchor is one query with several positives.
    pub pairs: Vec<(String, String)>,
}

impl PairDataset {
    /// Pairs with the given column names; at least one pair.
    pub fn new(
        anchor_column: impl Into<String>,
        positive_column: impl Into<String>,
        pairs: Vec<(String, String)>,
    ) -> Result<Self> {
        let anchor_column = anchor_column.into();
        let positive_column = positive_column.into();
        if pairs.is_empty() {
            return Err(Error::invalid(
                "the dataset is empty; mining needs at least one (anchor, positive) pair",
            ));
        }
        if anchor_column == positive_column {
            return Err(Error::invalid(format!(
                "the anchor and positive columns are both `{anchor_column}`; expected two different columns"
            )));
        }
        Ok(Self {
            anchor_column,
            positive_column,
            pairs,
        })
    }

    /// Read the pairs from a data file. The anchor column is `anchor_column` or the first input
    /// column; the positive column is `positive_column` or the next input column (label columns
    /// such as `label`/`score` are never inputs). Every cell must be text.
    pub fn read(
        source: &DataSource,
        anchor_column: Option<&str>,
        positive_column: Option<&str>,
    ) -> Result<Self> {
        let probe = source.open()?;
        let inputs = probe.input_columns().to_vec();
        let path = probe.path().to_path_buf();
        drop(probe);
        let anchor = match anchor_column {
            Some(name) => name.to_string(),
            None => inputs.first().cloned().ok_or_else(|| {
                Error::input(
                    &path,
                    None,
                    "no input columns; expected (anchor, positive) columns",
                )
            })?,
        };
        let positive = match positive_column {
            Some(name) => name.to_string(),
            None => inputs
                .iter()
                .find(|name| **name != anchor)
                .cloned()
                .ok_or_else(|| {
                    Error::input(
                        &path,
                        None,
                        format!(
                            "only one input column ({}); expected (anchor, positive) columns",
                            inputs.join(", ")
                        ),
                    )
                    .with_hint("give the file an anchor and a positive column")
                })?,
        };
        for (flag, name) in [
            ("--anchor-column-name", anchor_column),
            ("--positive-column-name", positive_column),
        ] {
            if let Some(name) = name.filter(|name| !inputs.iter().any(|input| input == name)) {
                return Err(Error::input(
                    &path,
                    None,
                    format!(
                        "{flag} `{name}` is not an input column of this file; the input columns are: {}",
                        inputs.join(", ")
                    ),
                )
                .with_hint(format!("pass {flag} with one of those columns")));
            }
        }
        let selected = DataSource {
            columns: Some(vec![anchor.clone(), positive.clone()]),
            ..source.clone()
        };
        let mut pairs = Vec::new();
        for row in selected.open()? {
            let row = row?;
            let mut texts = row.fields.into_iter().map(|field| match field {
                Field::Text(text) => Ok(text),
                Field::List(list) => Err(Error::input(
                    &path,
                    Some(row.line),
                    format!(
                        "expected text in the anchor and positive columns, found a list of {} texts",
                        list.len()
                    ),
                )
                .with_hint("mining takes (anchor, positive) pairs of texts")),
            });
            let (Some(anchor_text), Some(positive_text)) = (texts.next(), texts.next()) else {
                unreachable!("the reader yields one field per selected column (two)");
            };
            pairs.push((anchor_text?, positive_text?));
        }
        Self::new(anchor, positive, pairs)
    }

    /// Number of pairs (rows).
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Always false: a dataset has at least one pair.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Queries with their positives, over the deduplicated corpus.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grouped {
    /// Unique anchors, in order of first appearance.
    pub queries: Vec<String>,
    /// `dedup(corpus + positives)`, order kept (the corpus defaults to the positives).
    pub corpus: Vec<String>,
    /// Per query, the corpus indices of its distinct positives, in dataset order.
    pub positives: Vec<Vec<usize>>,
    /// The largest number of rows one anchor has (duplicates counted, as sentence-transformers'
    /// `groupby().count()`); it sizes the candidate list.
    pub max_positives: usize,
}

impl Grouped {
    /// Group `dataset` over `corpus` (or over its positives when there is none).
    pub(crate) fn new(dataset: &PairDataset, corpus: Option<&[String]>) -> Self {
        let mut corpus_index: HashMap<&str, usize> = HashMap::new();
        let mut corpus_texts: Vec<String> = Vec::new();
        let extra = corpus.unwrap_or(&[]);
        for text in extra
            .iter()
            .map(String::as_str)
            .chain(dataset.pairs.iter().map(|(_, positive)| positive.as_str()))
        {
            corpus_index.entry(text).or_insert_with(|| {
                corpus_texts.push(text.to_string());
                corpus_texts.len() - 1
            });
        }
        let mut query_index: HashMap<&str, usize> = HashMap::new();
        let mut queries: Vec<String> = Vec::new();
        let mut positives: Vec<Vec<usize>> = Vec::new();
        let mut rows_per_query: Vec<usize> = Vec::new();
        for (anchor, positive) in &dataset.pairs {
            let query = *query_index.entry(anchor.as_str()).or_insert_with(|| {
                queries.push(anchor.clone());
                positives.push(Vec::new());
                rows_per_query.push(0);
                queries.len() - 1
            });
            rows_per_query[query] += 1;
            let document = corpus_index[positive.as_str()];
            if !positives[query].contains(&document) {
                positives[query].push(document);
            }
        }
        Grouped {
            queries,
            corpus: corpus_texts,
            positives,
            max_positives: rows_per_query.into_iter().max().unwrap_or(0),
        }
    }

    /// Number of distinct (query, positive) pairs.
    pub(crate) fn num_pairs(&self) -> usize {
        self.positives.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> PairDataset {
        PairDataset::new(
            "query",
            "answer",
            list.iter()
                .map(|(a, p)| (a.to_string(), p.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn repeated_anchors_are_one_query_with_several_positives() {
        let dataset = pairs(&[
            ("q1", "a"),
            ("q2", "b"),
            ("q1", "c"),
            ("q1", "a"), // a duplicate row: counted for max_positives, deduplicated as a positive
        ]);
        let corpus = vec!["x".to_string(), "c".to_string()];
        let grouped = Grouped::new(&dataset, Some(&corpus));
        assert_eq!(grouped.queries, vec!["q1", "q2"]);
        assert_eq!(grouped.corpus, vec!["x", "c", "a", "b"]);
        assert_eq!(grouped.positives, vec![vec![2, 1], vec![3]]);
        assert_eq!(grouped.max_positives, 3);
        assert_eq!(grouped.num_pairs(), 3);
        let without_corpus = Grouped::new(&dataset, None);
        assert_eq!(without_corpus.corpus, vec!["a", "b", "c"]);
    }

    #[test]
    fn reads_named_or_leading_columns_and_rejects_lists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairs.jsonl");
        std::fs::write(
            &path,
            "{\"id\": \"1\", \"question\": \"q\", \"answer\": \"a\", \"label\": 1}\n\
             {\"id\": \"2\", \"question\": \"r\", \"answer\": \"b\", \"label\": 0}\n",
        )
        .unwrap();
        let source = DataSource::new("pairs.jsonl", dir.path());
        let leading = PairDataset::read(&source, None, None).unwrap();
        assert_eq!(
            (
                leading.anchor_column.as_str(),
                leading.positive_column.as_str()
            ),
            ("id", "question")
        );
        let named = PairDataset::read(&source, Some("question"), Some("answer")).unwrap();
        assert_eq!(named.pairs[1], ("r".to_string(), "b".to_string()));

        std::fs::write(&path, "{\"q\": \"q\", \"docs\": [\"a\", \"b\"]}\n").unwrap();
        let error = PairDataset::read(&source, None, None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("pairs.jsonl:1"), "{error}");
        assert!(error.contains("found a list of 2 texts"), "{error}");
    }
}
