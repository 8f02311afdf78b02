//! The mined negatives as a dataset in one of sentence-transformers' output formats (the
//! `output_format` of `mine_hard_negatives` in `util/hard_negatives.py`),
//! with the scores sentence-transformers' statistics count for that format.

use super::options::OutputFormat;
use super::pairs::Grouped;
use super::select::Slot;
use super::table::{Column, Table, Values};
use crate::error::Result;

/// A built output: the table and the numbers for the report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Built {
    pub table: Table,
    /// Negative scores as the format counts them.
    pub negative_scores: Vec<f32>,
    /// Positive minus negative score, per counted negative.
    pub difference_scores: Vec<f32>,
    /// Rows the table could have had with every negative found.
    pub maximum_possible_samples: usize,
}

/// What the builder needs besides the grouped dataset.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape<'a> {
    pub format: OutputFormat,
    pub output_scores: bool,
    pub num_negatives: usize,
    pub anchor_column: &'a str,
    pub positive_column: &'a str,
}

/// Build the output. `positive_scores` are per (query, positive) pair in grouped order;
/// `negatives[q]` are query `q`'s slots, best first.
pub(crate) fn build(
    grouped: &Grouped,
    positive_scores: &[f32],
    negatives: &[Vec<Slot>],
    shape: &Shape,
) -> Result<Built> {
    let text = |i: usize| grouped.corpus[i].clone();
    let mut anchors: Vec<String> = Vec::new();
    let mut seconds: Vec<String> = Vec::new();
    let mut negative_scores = Vec::new();
    let mut difference_scores = Vec::new();
    let mut pair = 0;
    let num_pairs = grouped.num_pairs();
    let columns = match shape.format {
        OutputFormat::Triplet => {
            let mut third = Vec::new();
            let mut scores = Vec::new();
            for (q, query) in grouped.queries.iter().enumerate() {
                for &positive in &grouped.positives[q] {
                    let positive_score = positive_scores[pair];
                    pair += 1;
                    for &(negative, score) in negatives[q].iter().flatten() {
                        anchors.push(query.clone());
                        seconds.push(text(positive));
                        third.push(text(negative));
                        scores.push(vec![positive_score, score]);
                        negative_scores.push(score);
                        difference_scores.push(positive_score - score);
                    }
                }
            }
            let mut columns = vec![
                Column::new(shape.anchor_column, Values::Text(anchors)),
                Column::new(shape.positive_column, Values::Text(seconds)),
                Column::new("negative", Values::Text(third)),
            ];
            if shape.output_scores {
                columns.push(Column::new("scores", Values::FloatList(scores)));
            }
            columns
        }
        OutputFormat::LabeledPair => {
            let mut labels = Vec::new();
            let mut scores = Vec::new();
            for (q, query) in grouped.queries.iter().enumerate() {
                let valid: Vec<(usize, f32)> = negatives[q].iter().flatten().copied().collect();
                for &positive in &grouped.positives[q] {
                    let positive_score = positive_scores[pair];
                    pair += 1;
                    anchors.push(query.clone());
                    seconds.push(text(positive));
                    labels.push(1);
                    scores.push(positive_score);
                    // Counted per positive, as sentence-transformers repeats the negatives.
                    for &(_, score) in &valid {
                        negative_scores.push(score);
                        difference_scores.push(positive_score - score);
                    }
                }
                for &(negative, score) in &valid {
                    anchors.push(query.clone());
                    seconds.push(text(negative));
                    labels.push(0);
                    scores.push(score);
                }
            }
            vec![
                Column::new(shape.anchor_column, Values::Text(anchors)),
                Column::new(shape.positive_column, Values::Text(seconds)),
                if shape.output_scores {
                    Column::new("score", Values::Float(scores))
                } else {
                    Column::new("label", Values::Int(labels))
                },
            ]
        }
        OutputFormat::NTuple => {
            let mut negative_columns: Vec<Vec<String>> = vec![Vec::new(); shape.num_negatives];
            let mut scores = Vec::new();
            for (q, query) in grouped.queries.iter().enumerate() {
                let complete: Option<Vec<(usize, f32)>> = negatives[q].iter().copied().collect();
                for &positive in &grouped.positives[q] {
                    let positive_score = positive_scores[pair];
                    pair += 1;
                    let Some(complete) = &complete else { continue };
                    anchors.push(query.clone());
                    seconds.push(text(positive));
                    let mut row_scores = vec![positive_score];
                    for (column, &(negative, score)) in negative_columns.iter_mut().zip(complete) {
                        column.push(text(negative));
                        row_scores.push(score);
                        negative_scores.push(score);
                        difference_scores.push(positive_score - score);
                    }
                    scores.push(row_scores);
                }
            }
            let mut columns = vec![
                Column::new(shape.anchor_column, Values::Text(anchors)),
                Column::new(shape.positive_column, Values::Text(seconds)),
            ];
            for (i, column) in negative_columns.into_iter().enumerate() {
                columns.push(Column::new(
                    format!("negative_{}", i + 1),
                    Values::Text(column),
                ));
            }
            if shape.output_scores {
                columns.push(Column::new("scores", Values::FloatList(scores)));
            }
            columns
        }
        OutputFormat::LabeledList => {
            let mut documents = Vec::new();
            let mut labels = Vec::new();
            let mut scores = Vec::new();
            for (q, query) in grouped.queries.iter().enumerate() {
                let valid: Vec<(usize, f32)> = negatives[q].iter().flatten().copied().collect();
                for &positive in &grouped.positives[q] {
                    let positive_score = positive_scores[pair];
                    pair += 1;
                    if valid.is_empty() {
                        continue;
                    }
                    anchors.push(query.clone());
                    let mut row_documents = vec![text(positive)];
                    let mut row_labels = vec![1];
                    let mut row_scores = vec![positive_score];
                    for &(negative, score) in &valid {
                        row_documents.push(text(negative));
                        row_labels.push(0);
                        row_scores.push(score);
                        negative_scores.push(score);
                        difference_scores.push(positive_score - score);
                    }
                    documents.push(row_documents);
                    labels.push(row_labels);
                    scores.push(row_scores);
                }
            }
            vec![
                Column::new(shape.anchor_column, Values::Text(anchors)),
                Column::new(shape.positive_column, Values::TextList(documents)),
                if shape.output_scores {
                    Column::new("scores", Values::FloatList(scores))
                } else {
                    Column::new("labels", Values::IntList(labels))
                },
            ]
        }
    };
    let maximum_possible_samples = match shape.format {
        OutputFormat::Triplet => num_pairs * shape.num_negatives,
        // sentence-transformers adds len(dataset); duplicate rows collapse here, so the
        // distinct pairs are what the output can hold.
        OutputFormat::LabeledPair => grouped.queries.len() * shape.num_negatives + num_pairs,
        OutputFormat::NTuple | OutputFormat::LabeledList => num_pairs,
    };
    Ok(Built {
        table: Table::new(columns)?,
        negative_scores,
        difference_scores,
        maximum_possible_samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// q1 has positives a, b; q2 has c. Corpus: a b c x y z.
    fn grouped() -> Grouped {
        Grouped {
            queries: vec!["q1".into(), "q2".into()],
            corpus: ["a", "b", "c", "x", "y", "z"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            positives: vec![vec![0, 1], vec![2]],
            max_positives: 2,
        }
    }

    /// q1 found x (0.5) and y (0.4); q2 found only z (0.3).
    fn negatives() -> Vec<Vec<Slot>> {
        vec![
            vec![Some((3, 0.5)), Some((4, 0.4))],
            vec![Some((5, 0.3)), None],
        ]
    }

    const POSITIVE_SCORES: [f32; 3] = [0.9, 0.8, 0.7];

    fn rows(format: OutputFormat, output_scores: bool) -> (Vec<serde_json::Value>, Built) {
        let shape = Shape {
            format,
            output_scores,
            num_negatives: 2,
            anchor_column: "query",
            positive_column: "answer",
        };
        let built = build(&grouped(), &POSITIVE_SCORES, &negatives(), &shape).unwrap();
        let rows = (0..built.table.num_rows())
            .map(|r| built.table.json_row(r))
            .collect();
        (rows, built)
    }

    #[test]
    fn triplets_are_one_row_per_valid_negative_of_each_pair() {
        let (rows, built) = rows(OutputFormat::Triplet, true);
        assert_eq!(
            built.table.column_names(),
            vec!["query", "answer", "negative", "scores"]
        );
        let triples: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| {
                (
                    r["query"].as_str().unwrap().into(),
                    r["answer"].as_str().unwrap().into(),
                    r["negative"].as_str().unwrap().into(),
                )
            })
            .collect();
        let expected = [
            ("q1", "a", "x"),
            ("q1", "a", "y"),
            ("q1", "b", "x"),
            ("q1", "b", "y"),
            ("q2", "c", "z"),
        ];
        assert_eq!(
            triples,
            expected
                .iter()
                .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
                .collect::<Vec<_>>()
        );
        assert_eq!(rows[2]["scores"], json!([0.8f32, 0.5f32]));
        assert_eq!(built.maximum_possible_samples, 6);
        assert_eq!(built.negative_scores, vec![0.5, 0.4, 0.5, 0.4, 0.3]);
        let (plain, _) = self::rows(OutputFormat::Triplet, false);
        assert!(plain[0].get("scores").is_none());
    }

    #[test]
    fn n_tuples_drop_pairs_without_all_negatives() {
        let (rows, built) = rows(OutputFormat::NTuple, true);
        assert_eq!(
            built.table.column_names(),
            vec!["query", "answer", "negative_1", "negative_2", "scores"]
        );
        assert_eq!(
            rows,
            vec![
                json!({"query": "q1", "answer": "a", "negative_1": "x", "negative_2": "y", "scores": [0.9f32, 0.5f32, 0.4f32]}),
                json!({"query": "q1", "answer": "b", "negative_1": "x", "negative_2": "y", "scores": [0.8f32, 0.5f32, 0.4f32]}),
            ]
        );
        assert_eq!(built.maximum_possible_samples, 3);
    }

    #[test]
    fn labeled_pairs_list_positives_then_negatives_once_per_query() {
        let (rows, built) = rows(OutputFormat::LabeledPair, false);
        assert_eq!(built.table.column_names(), vec!["query", "answer", "label"]);
        let got: Vec<(&str, &str, i64)> = rows
            .iter()
            .map(|r| {
                (
                    r["query"].as_str().unwrap(),
                    r["answer"].as_str().unwrap(),
                    r["label"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("q1", "a", 1),
                ("q1", "b", 1),
                ("q1", "x", 0),
                ("q1", "y", 0),
                ("q2", "c", 1),
                ("q2", "z", 0)
            ]
        );
        // 2 queries × 2 negatives + 3 positives.
        assert_eq!(built.maximum_possible_samples, 7);
        let (scored, built) = self::rows(OutputFormat::LabeledPair, true);
        assert_eq!(built.table.column_names(), vec!["query", "answer", "score"]);
        assert_eq!(scored[2]["score"], json!(0.5f32));
    }

    #[test]
    fn labeled_lists_hold_the_positive_then_valid_negatives() {
        let (rows, built) = rows(OutputFormat::LabeledList, false);
        assert_eq!(
            built.table.column_names(),
            vec!["query", "answer", "labels"]
        );
        assert_eq!(
            rows,
            vec![
                json!({"query": "q1", "answer": ["a", "x", "y"], "labels": [1, 0, 0]}),
                json!({"query": "q1", "answer": ["b", "x", "y"], "labels": [1, 0, 0]}),
                json!({"query": "q2", "answer": ["c", "z"], "labels": [1, 0]}),
            ]
        );
        let (scored, built) = self::rows(OutputFormat::LabeledList, true);
        assert_eq!(
            built.table.column_names(),
            vec!["query", "answer", "scores"]
        );
        assert_eq!(scored[2]["scores"], json!([0.7f32, 0.3f32]));
        assert_eq!(built.difference_scores.len(), 5);
    }
}
