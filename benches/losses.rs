//! Forward + backward time of every built-in loss on the tiny BERT fixture: 32 queries × 16
//! documents (512 student pairs per step) for each loss family.
//!
//!   cargo bench --bench losses
//!
//! Prints a Markdown table (median of 5 runs after one warm-up).

use std::time::Instant;

use crossdistill::data::{Field, Label, Row};
use crossdistill::loss::{LossInput, LossRegistry, LossValue};
use crossdistill::model::{CrossEncoder, Dropout, LoadOptions};

const QUERIES: usize = 32;
const DOCS: usize = 16;

fn text(kind: &str, q: usize, d: usize) -> String {
    format!(
        "{kind} {q} passage {d} about topic {} with some words",
        (q * 7 + d) % 11
    )
}

/// Rows and labels in the layout each loss family takes.
fn batch(kind: &str) -> (Vec<Row>, Vec<Vec<f32>>, &'static str) {
    let query = |q: usize| format!("query number {q} about topic {}", q % 11);
    match kind {
        "mse" | "binary_cross_entropy" | "cross_entropy" => {
            // 512 (query, document) rows.
            let rows = (0..QUERIES * DOCS)
                .map(|i| Row {
                    line: i + 1,
                    fields: vec![
                        Field::Text(query(i / DOCS)),
                        Field::Text(text("doc", i / DOCS, i % DOCS)),
                    ],
                    label: Some(Label::Scalar(0.0)),
                })
                .collect::<Vec<_>>();
            let labels = (0..rows.len())
                .map(|i| {
                    vec![if kind == "cross_entropy" {
                        (i % 2) as f32
                    } else {
                        (i % 5) as f32 / 4.0
                    }]
                })
                .collect();
            (rows, labels, "512 (query, doc) rows")
        }
        "margin_mse" => {
            let rows = (0..QUERIES)
                .map(|q| Row {
                    line: q + 1,
                    fields: std::iter::once(Field::Text(query(q)))
                        .chain((0..DOCS).map(|d| Field::Text(text("doc", q, d))))
                        .collect(),
                    label: None,
                })
                .collect::<Vec<_>>();
            let labels = (0..QUERIES)
                .map(|q| (0..DOCS).map(|d| ((q + d) % 7) as f32).collect())
                .collect();
            (rows, labels, "32 × (query, pos, 15 negs)")
        }
        "multiple_negatives_ranking" | "cached_multiple_negatives_ranking" => {
            // 32 anchors × (positive + 14 hard negatives) + 1 in-batch negative = 16 pairs each.
            let rows = (0..QUERIES)
                .map(|q| Row {
                    line: q + 1,
                    fields: std::iter::once(Field::Text(query(q)))
                        .chain((0..DOCS - 1).map(|d| Field::Text(text("doc", q, d))))
                        .collect(),
                    label: None,
                })
                .collect::<Vec<_>>();
            (rows, Vec::new(), "32 anchors × 16 candidates")
        }
        _ => {
            let rows = (0..QUERIES)
                .map(|q| Row {
                    line: q + 1,
                    fields: vec![
                        Field::Text(query(q)),
                        Field::List((0..DOCS).map(|d| text("doc", q, d)).collect()),
                    ],
                    label: None,
                })
                .collect::<Vec<_>>();
            let labels = (0..QUERIES)
                .map(|q| (0..DOCS).map(|d| ((q + d) % 4) as f32).collect())
                .collect();
            (rows, labels, "32 × (query, [16 docs])")
        }
    }
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let registry = LossRegistry::default();
    println!("| loss | batch | forward + backward (ms, median of 5) |\n| --- | --- | --- |");
    for kind in crossdistill::loss::kinds().iter().copied() {
        let num_labels = if kind == "cross_entropy" { 2 } else { 1 };
        let options = LoadOptions {
            max_length: Some(64),
            num_labels: Some(num_labels),
            ..LoadOptions::default()
        };
        let model = CrossEncoder::load(
            root.join("tests/fixtures/tiny-bert-ce").to_str().unwrap(),
            None,
            &options,
        )
        .expect("fixture");
        let params: toml::Table = match kind {
            "multiple_negatives_ranking" => "num_negatives = 1".parse().unwrap(),
            "cached_multiple_negatives_ranking" => {
                "num_negatives = 1\nmini_batch_size = 64".parse().unwrap()
            }
            _ => toml::Table::new(),
        };
        let mut loss = registry
            .build(kind, &params, num_labels)
            .expect("loss builds");
        let (rows, labels, shape) = batch(kind);
        let mut times = Vec::new();
        for run in 0..6 {
            let started = Instant::now();
            let input = LossInput {
                examples: &rows,
                labels: (!labels.is_empty()).then_some(labels.as_slice()),
                seed: run,
            };
            match loss
                .compute(&model, &input, &mut Dropout::new(run))
                .expect("loss computes")
            {
                LossValue::Graph(value) => {
                    value.backward().expect("backward");
                }
                LossValue::Backpropagated { .. } => {}
            }
            if run > 0 {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        times.sort_by(f64::total_cmp);
        println!("| `{kind}` | {shape} | {:.1} |", times[times.len() / 2]);
    }
}
