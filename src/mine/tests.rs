//! End-to-end mining with the tiny fixture model as embedder: every output is checked against a
//! brute-force computation (all query × document dot products of the same embeddings, sorted
//! by hand), and every conversion against mining straight into the target format.

use std::path::{Path, PathBuf};

use super::pairs::Grouped;
use super::*;
use crate::data::DataSource;
use crate::model::bi_encoder::{BiEncoder, BiEncoderOptions, EncodeOptions};
use crate::model::{CrossEncoder, LoadOptions};
use crate::teacher::{CandleTeacher, Teacher};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn embedder() -> BiEncoder {
    BiEncoder::load(
        fixture("tiny-bert-ce").to_str().unwrap(),
        None,
        &BiEncoderOptions::default(),
    )
    .unwrap()
}

/// Four queries; "what is python" has two positives.
fn dataset() -> PairDataset {
    let pairs = [
        ("what is python", "Python is a programming language."),
        ("capital of france", "Paris is the capital of France."),
        ("what is python", "Python was created by Guido van Rossum."),
        ("how tall is everest", "Mount Everest is 8,849 metres high."),
        ("best pizza topping", "Many people love mushrooms on pizza."),
    ];
    PairDataset::new(
        "query",
        "answer",
        pairs
            .iter()
            .map(|(a, p)| (a.to_string(), p.to_string()))
            .collect(),
    )
    .unwrap()
}

fn corpus() -> Vec<String> {
    [
        "Pythons are large snakes found in Africa and Asia.",
        "Java is another programming language.",
        "Lyon is a city in France.",
        "The Eiffel tower is in Paris.",
        "K2 is the second highest mountain.",
        "Pineapple on pizza divides opinion.",
        "Rust is a systems programming language.",
        "Berlin is the capital of Germany.",
        "Cheese is made from milk.",
        "Mountains are tall.",
        "Snakes shed their skin.",
        "The Alps are in Europe.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Every query's documents by the embeddings' dot product, best first (ties by index).
struct Brute {
    grouped: Grouped,
    ranked: Vec<Vec<(usize, f32)>>,
    positive_scores: Vec<Vec<f32>>,
}

fn brute(dataset: &PairDataset, corpus: Option<&[String]>) -> Brute {
    let grouped = Grouped::new(dataset, corpus);
    let model = embedder();
    let encode = |texts: &[String]| {
        model
            .encode(
                texts,
                &EncodeOptions {
                    batch_size: 4,
                    prompt: None,
                    normalize: true,
                },
                &mut |_| {},
            )
            .unwrap()
    };
    let queries = encode(&grouped.queries);
    let documents = encode(&grouped.corpus);
    let dot = |q: usize, d: usize| -> f32 {
        queries
            .row(q)
            .iter()
            .zip(documents.row(d))
            .map(|(a, b)| a * b)
            .sum()
    };
    let ranked = (0..grouped.queries.len())
        .map(|q| {
            let mut all: Vec<(usize, f32)> =
                (0..grouped.corpus.len()).map(|d| (d, dot(q, d))).collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            all
        })
        .collect();
    let positive_scores = grouped
        .positives
        .iter()
        .enumerate()
        .map(|(q, ps)| ps.iter().map(|&p| dot(q, p)).collect())
        .collect();
    Brute {
        grouped,
        ranked,
        positive_scores,
    }
}

impl Brute {
    /// Query `q`'s non-positive documents passing `keep(score, min positive score)`, best
    /// first.
    fn negatives(&self, q: usize, keep: impl Fn(f32, f32) -> bool) -> Vec<(usize, f32)> {
        let reference = self.positive_scores[q]
            .iter()
            .copied()
            .fold(f32::INFINITY, f32::min);
        self.ranked[q]
            .iter()
            .copied()
            .filter(|(d, s)| !self.grouped.positives[q].contains(d) && keep(*s, reference))
            .collect()
    }

    fn text(&self, d: usize) -> &str {
        &self.grouped.corpus[d]
    }
}

fn mine(options: &MineOptions) -> Mined {
    mine_hard_negatives(
        &dataset(),
        Some(&corpus()),
        &embedder(),
        None,
        options,
        &mut Silent,
    )
    .unwrap()
}

fn texts(values: &Values) -> &[String] {
    match values {
        Values::Text(v) => v,
        other => panic!("expected a text column, found {other:?}"),
    }
}

fn float_lists(values: &Values) -> &[Vec<f32>] {
    match values {
        Values::FloatList(v) => v,
        other => panic!("expected a list-of-numbers column, found {other:?}"),
    }
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-5
}

/// The rows a triplet output must have for `expected[q]` negatives: per query, per positive,
/// per negative.
fn expected_triplets(brute: &Brute, expected: &[Vec<(usize, f32)>]) -> Vec<[String; 3]> {
    let mut rows = Vec::new();
    for (q, negatives) in expected.iter().enumerate() {
        for &p in &brute.grouped.positives[q] {
            for &(n, _) in negatives {
                rows.push([
                    brute.grouped.queries[q].clone(),
                    brute.text(p).to_string(),
                    brute.text(n).to_string(),
                ]);
            }
        }
    }
    rows
}

fn triplet_rows(table: &Table) -> Vec<[String; 3]> {
    let a = texts(table.column("query").unwrap());
    let p = texts(table.column("answer").unwrap());
    let n = texts(table.column("negative").unwrap());
    (0..table.num_rows())
        .map(|i| [a[i].clone(), p[i].clone(), n[i].clone()])
        .collect()
}

#[test]
fn top_triplets_match_brute_force_with_multiple_positives() {
    let brute = brute(&dataset(), Some(&corpus()));
    let options = MineOptions {
        num_negatives: 2,
        output_scores: true,
        ..MineOptions::default()
    };
    let mined = mine(&options);
    // The two positives of "what is python" are one query: 4 queries, 5 pairs.
    assert_eq!((mined.report.num_queries, mined.report.num_pairs), (4, 5));
    // Default window: range_min + num_negatives + max_positives = 0 + 2 + 2.
    assert_eq!(mined.report.range_max, 4);
    let expected: Vec<Vec<(usize, f32)>> = (0..4)
        .map(|q| {
            brute
                .negatives(q, |_, _| true)
                .into_iter()
                .take(2)
                .collect()
        })
        .collect();
    assert_eq!(
        triplet_rows(&mined.table),
        expected_triplets(&brute, &expected)
    );
    // scores = [positive, negative] similarities.
    let scores = float_lists(mined.table.column("scores").unwrap());
    let mut row = 0;
    for (q, negatives) in expected.iter().enumerate() {
        for &p_score in &brute.positive_scores[q] {
            for &(_, n_score) in negatives {
                assert!(close(scores[row][0], p_score) && close(scores[row][1], n_score));
                row += 1;
            }
        }
    }
    assert_eq!(mined.report.missing_samples(), 0);
    assert_eq!(mined.report.negative.count, 10);
}

#[test]
fn every_format_has_its_columns_and_the_brute_force_negatives() {
    let brute = brute(&dataset(), Some(&corpus()));
    let expected: Vec<Vec<(usize, f32)>> = (0..4)
        .map(|q| {
            brute
                .negatives(q, |_, _| true)
                .into_iter()
                .take(3)
                .collect()
        })
        .collect();
    let run = |format, output_scores| {
        mine(&MineOptions {
            output_format: format,
            output_scores,
            ..MineOptions::default()
        })
        .table
    };

    let n_tuple = run(OutputFormat::NTuple, true);
    assert_eq!(
        n_tuple.column_names(),
        [
            "query",
            "answer",
            "negative_1",
            "negative_2",
            "negative_3",
            "scores"
        ]
    );
    assert_eq!(n_tuple.num_rows(), 5);
    let mut row = 0;
    for (q, negatives) in expected.iter().enumerate() {
        for (i, &p) in brute.grouped.positives[q].iter().enumerate() {
            assert_eq!(texts(n_tuple.column("answer").unwrap())[row], brute.text(p));
            for (k, &(n, score)) in negatives.iter().enumerate() {
                let column = format!("negative_{}", k + 1);
                assert_eq!(texts(n_tuple.column(&column).unwrap())[row], brute.text(n));
                assert!(close(
                    float_lists(n_tuple.column("scores").unwrap())[row][k + 1],
                    score
                ));
            }
            assert!(close(
                float_lists(n_tuple.column("scores").unwrap())[row][0],
                brute.positive_scores[q][i]
            ));
            row += 1;
        }
    }
    assert_eq!(run(OutputFormat::NTuple, false).column_names().len(), 5);

    let pairs = run(OutputFormat::LabeledPair, false);
    assert_eq!(pairs.column_names(), ["query", "answer", "label"]);
    let mut want: Vec<(String, String, i64)> = Vec::new();
    for (q, negatives) in expected.iter().enumerate() {
        let query = &brute.grouped.queries[q];
        for &p in &brute.grouped.positives[q] {
            want.push((query.clone(), brute.text(p).into(), 1));
        }
        for &(n, _) in negatives {
            want.push((query.clone(), brute.text(n).into(), 0));
        }
    }
    let Values::Int(labels) = pairs.column("label").unwrap() else {
        panic!("labels are integers")
    };
    let got: Vec<(String, String, i64)> = (0..pairs.num_rows())
        .map(|i| {
            (
                texts(pairs.column("query").unwrap())[i].clone(),
                texts(pairs.column("answer").unwrap())[i].clone(),
                labels[i],
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        run(OutputFormat::LabeledPair, true).column_names(),
        ["query", "answer", "score"]
    );

    let lists = run(OutputFormat::LabeledList, false);
    assert_eq!(lists.column_names(), ["query", "answer", "labels"]);
    let Values::TextList(documents) = lists.column("answer").unwrap() else {
        panic!("documents are lists")
    };
    assert_eq!(documents.len(), 5);
    assert_eq!(documents[1][0], brute.text(brute.grouped.positives[0][1]));
    assert_eq!(
        documents[1][1..],
        expected[0]
            .iter()
            .map(|&(n, _)| brute.text(n).to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        lists.column("labels").unwrap(),
        &Values::IntList(vec![vec![1, 0, 0, 0]; 5])
    );
    assert_eq!(
        run(OutputFormat::LabeledList, true).column_names(),
        ["query", "answer", "scores"]
    );
}

/// Each filter alone, with a window wide enough not to cut: the negatives are exactly the
/// brute-force survivors of that filter's inequality (the `absolute_margin`, `relative_margin`,
/// `max_score` and `min_score` filters of `mine_hard_negatives`, `util/hard_negatives.py`).
#[test]
fn each_filter_keeps_exactly_the_brute_force_survivors() {
    let brute = brute(&dataset(), Some(&corpus()));
    // A threshold inside the observed range so that every filter drops something.
    let median = {
        let mut all: Vec<f32> = brute.ranked.iter().flatten().map(|&(_, s)| s).collect();
        all.sort_by(f32::total_cmp);
        // Halfway between two observed scores, so no score sits on the threshold (matmul and
        // the brute-force sum may differ in the last bit).
        let middle = all.len() / 2;
        (all[middle] + all[middle + 1]) / 2.0
    };
    type Keep = Box<dyn Fn(f32, f32) -> bool>;
    let cases: Vec<(MineOptions, Keep, &str)> = vec![
        (
            MineOptions {
                absolute_margin: Some(0.05),
                ..MineOptions::default()
            },
            Box::new(|s, p| s + 0.05 <= p),
            "absolute_margin",
        ),
        (
            MineOptions {
                relative_margin: Some(0.1),
                ..MineOptions::default()
            },
            Box::new(|s, p| s <= p - p.abs() * 0.1),
            "relative_margin",
        ),
        (
            MineOptions {
                max_score: Some(median),
                ..MineOptions::default()
            },
            Box::new(move |s, _| s <= median),
            "max_score",
        ),
        (
            MineOptions {
                min_score: Some(median),
                ..MineOptions::default()
            },
            Box::new(move |s, _| s >= median),
            "min_score",
        ),
    ];
    for (options, keep, name) in cases {
        let options = MineOptions {
            num_negatives: 3,
            range_max: Some(16),
            output_format: OutputFormat::LabeledList,
            ..options
        };
        let mined = mine(&options);
        let Values::TextList(documents) = mined.table.column("answer").unwrap() else {
            panic!("lists")
        };
        let mut row = 0;
        for q in 0..4 {
            let survivors: Vec<String> = brute
                .negatives(q, &keep)
                .into_iter()
                .take(3)
                .map(|(n, _)| brute.text(n).to_string())
                .collect();
            for _ in &brute.grouped.positives[q] {
                if survivors.is_empty() {
                    continue;
                }
                assert_eq!(documents[row][1..], survivors, "{name}, query {q}");
                row += 1;
            }
        }
        assert_eq!(row, mined.table.num_rows(), "{name}");
        assert!(
            mined.report.skipped.iter().any(|s| s.filter == name),
            "{name}: {:?}",
            mined.report.skipped
        );
    }
}

#[test]
fn range_min_skips_the_best_candidates() {
    let brute = brute(&dataset(), Some(&corpus()));
    let mined = mine(&MineOptions {
        range_min: 2,
        num_negatives: 2,
        ..MineOptions::default()
    });
    let expected: Vec<Vec<(usize, f32)>> = (0..4)
        .map(|q| brute.negatives(q, |_, _| true)[2..4].to_vec())
        .collect();
    assert_eq!(
        triplet_rows(&mined.table),
        expected_triplets(&brute, &expected)
    );
}

#[test]
fn missing_negatives_are_counted_and_incomplete_tuples_dropped() {
    let brute = brute(&dataset(), Some(&corpus()));
    // max_score between the best and second best negative of query 0 leaves it few options;
    // a window of 5 then cannot fill 3 slots everywhere.
    let threshold = brute.negatives(0, |_, _| true)[1].1;
    let options = MineOptions {
        num_negatives: 3,
        range_max: Some(5),
        max_score: Some(threshold),
        output_format: OutputFormat::NTuple,
        ..MineOptions::default()
    };
    let mined = mine(&options);
    let mut complete_pairs = 0;
    let mut triplets = 0;
    for q in 0..4 {
        // The window holds the 5 best candidates (positives included), then max_score filters.
        // k = range_max + max_positives = 7 candidates per query.
        let window: Vec<(usize, f32)> = brute.ranked[q][..7]
            .iter()
            .copied()
            .filter(|(d, s)| !brute.grouped.positives[q].contains(d) && *s <= threshold)
            .take(3)
            .collect();
        let found = window.len().min(3);
        let positives = brute.grouped.positives[q].len();
        if found == 3 {
            complete_pairs += positives;
        }
        triplets += positives * found;
    }
    assert_eq!(mined.table.num_rows(), complete_pairs);
    assert_eq!(mined.report.maximum_possible_samples, 5);
    assert_eq!(mined.report.missing_samples(), 5 - complete_pairs);
    assert!(mined.report.missing_samples() > 0);
    let text = mined.report.to_string();
    assert!(
        text.contains(&format!(
            "Could not find enough negatives for {} samples",
            5 - complete_pairs
        )),
        "{text}"
    );
    assert!(
        text.contains("range_max and max_score parameters"),
        "{text}"
    );
    let as_triplets = mine(&MineOptions {
        output_format: OutputFormat::Triplet,
        ..options
    });
    assert_eq!(as_triplets.table.num_rows(), triplets);
    assert_eq!(as_triplets.report.missing_samples(), 15 - triplets);

    // No negative at all: an empty table, every sample missing.
    let none = mine(&MineOptions {
        min_score: Some(2.0),
        ..MineOptions::default()
    });
    assert_eq!(none.table.num_rows(), 0);
    assert_eq!(none.report.missing_samples(), 15);
}

#[test]
fn random_sampling_is_deterministic_and_draws_from_the_window() {
    let brute = brute(&dataset(), Some(&corpus()));
    let options = MineOptions {
        num_negatives: 2,
        range_max: Some(8),
        sampling_strategy: SamplingStrategy::Random,
        seed: 11,
        ..MineOptions::default()
    };
    let first = mine(&options);
    assert_eq!(first.table, mine(&options).table);
    let others: Vec<Mined> = (0..6)
        .map(|seed| {
            mine(&MineOptions {
                seed,
                ..options.clone()
            })
        })
        .collect();
    assert!(
        others.iter().any(|m| m.table != first.table),
        "seeds must matter"
    );
    for mined in others.iter().chain([&first]) {
        let rows = triplet_rows(&mined.table);
        for row in rows.chunks(2) {
            let q = brute
                .grouped
                .queries
                .iter()
                .position(|q| *q == row[0][0])
                .unwrap();
            // The window: the 8 best non-positive ones of the k = 8 + 2 candidates.
            let window: Vec<&str> = brute.ranked[q][..10]
                .iter()
                .filter(|(d, _)| !brute.grouped.positives[q].contains(d))
                .take(8)
                .map(|&(d, _)| brute.text(d))
                .collect();
            let a = window.iter().position(|t| *t == row[0][2]).unwrap();
            let b = window.iter().position(|t| *t == row[1][2]).unwrap();
            assert!(a < b, "sampled negatives are sorted best first");
        }
    }
}

#[test]
fn include_positives_ranks_positives_among_the_candidates() {
    let brute = brute(&dataset(), Some(&corpus()));
    let mined = mine(&MineOptions {
        include_positives: true,
        num_negatives: 4,
        output_format: OutputFormat::Triplet,
        ..MineOptions::default()
    });
    assert_eq!(mined.table.column_names().len(), 6, "forced to n-tuple");
    assert!(mined.report.notes.iter().any(|n| n.contains("n-tuple")));
    let negative_1 = texts(mined.table.column("negative_1").unwrap());
    let mut row = 0;
    for q in 0..4 {
        let best = brute.text(brute.ranked[q][0].0);
        for _ in &brute.grouped.positives[q] {
            // The top candidate, positive or not, comes first.
            assert_eq!(negative_1[row], best);
            row += 1;
        }
    }
    let any_positive_listed = (0..mined.table.num_rows()).any(|r| {
        (1..=4).any(|k| {
            let column = texts(mined.table.column(&format!("negative_{k}")).unwrap());
            brute
                .grouped
                .positives
                .iter()
                .flatten()
                .any(|&p| column[r] == brute.text(p))
        })
    });
    assert!(any_positive_listed);
}

#[test]
fn a_teacher_rescores_candidates_and_positives_when_a_filter_asks() {
    let load = || {
        CrossEncoder::load(
            fixture("tiny-bert-ce").to_str().unwrap(),
            None,
            &LoadOptions::default(),
        )
        .unwrap()
    };
    let model = load();
    let activation = model.default_activation();
    let mut teacher = CandleTeacher::new(model, 8, activation).unwrap();
    let mut reference = CandleTeacher::new(load(), 8, activation).unwrap();
    let options = MineOptions {
        max_score: Some(1.0), // sigmoid scores: keeps everything, but asks for rescoring
        num_negatives: 2,
        output_scores: true,
        ..MineOptions::default()
    };
    let mined = mine_hard_negatives(
        &dataset(),
        Some(&corpus()),
        &embedder(),
        Some(&mut teacher),
        &options,
        &mut Silent,
    )
    .unwrap();
    assert!(mined.report.rescored);
    let rows = triplet_rows(&mined.table);
    let scores = float_lists(mined.table.column("scores").unwrap());
    for (row, scores) in rows.iter().zip(scores) {
        let expected = reference
            .score(&[
                (row[0].as_str(), row[1].as_str()),
                (row[0].as_str(), row[2].as_str()),
            ])
            .unwrap();
        assert!(close(scores[0], expected[0]) && close(scores[1], expected[1]));
    }
    // Negatives are in descending teacher score.
    for pair in rows.chunks(2).zip(scores.chunks(2)) {
        assert!(pair.1[0][1] >= pair.1[1][1]);
    }
    // Without a filter the teacher is not used (as sentence-transformers).
    let unused = mine_hard_negatives(
        &dataset(),
        Some(&corpus()),
        &embedder(),
        Some(&mut teacher),
        &MineOptions::default(),
        &mut Silent,
    )
    .unwrap();
    assert!(!unused.report.rescored);
    assert!(unused
        .report
        .notes
        .iter()
        .any(|n| n.contains("was not used")));
}

#[test]
fn embeddings_are_cached_by_model_prompt_and_texts() {
    let dir = tempfile::tempdir().unwrap();
    let options = MineOptions {
        cache_folder: Some(dir.path().to_path_buf()),
        ..MineOptions::default()
    };
    let first = mine(&options);
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(first
        .report
        .notes
        .iter()
        .any(|n| n.starts_with("saved corpus")));
    let second = mine(&options);
    assert!(second
        .report
        .notes
        .iter()
        .any(|n| n.starts_with("loaded 17 corpus")));
    assert!(second
        .report
        .notes
        .iter()
        .any(|n| n.starts_with("loaded 4 query")));
    assert_eq!(first.table, second.table);
    // Another prompt is another cache entry.
    mine(&MineOptions {
        query_prompt: Some("query: ".into()),
        ..options
    });
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
}

#[test]
fn without_a_corpus_the_positives_are_the_candidates() {
    let mined = mine_hard_negatives(
        &dataset(),
        None,
        &embedder(),
        None,
        &MineOptions {
            num_negatives: 1,
            ..MineOptions::default()
        },
        &mut Silent,
    )
    .unwrap();
    assert_eq!(mined.report.corpus_size, 5);
    let positives: Vec<String> = dataset().pairs.into_iter().map(|(_, p)| p).collect();
    let rows = triplet_rows(&mined.table);
    assert_eq!(rows.len(), 5);
    for row in rows {
        assert!(positives.contains(&row[2]));
        assert_ne!(row[1], row[2]);
    }
}

/// Write `table` and convert the file from `from` to `to`.
fn convert_table(table: &Table, from: ConvertFormat, to: ConvertFormat, scores: bool) -> Table {
    let dir = tempfile::tempdir().unwrap();
    table.write(&dir.path().join("in.jsonl")).unwrap();
    let source = DataSource::new("in.jsonl", dir.path());
    convert(&source, from, to, scores, 0).unwrap().0
}

/// Converting a mined dataset gives what mining straight into the target format gives, for
/// every pair of formats (no sample misses a negative here, so nothing is dropped).
#[test]
fn conversions_commute_with_mining() {
    let formats = [
        (OutputFormat::Triplet, ConvertFormat::Triplet),
        (OutputFormat::NTuple, ConvertFormat::NTuple),
        (OutputFormat::LabeledPair, ConvertFormat::LabeledPair),
        (OutputFormat::LabeledList, ConvertFormat::LabeledList),
    ];
    for output_scores in [false, true] {
        let mined: Vec<Table> = formats
            .iter()
            .map(|(format, _)| {
                mine(&MineOptions {
                    output_format: *format,
                    output_scores,
                    ..MineOptions::default()
                })
                .table
            })
            .collect();
        for (i, (_, from)) in formats.iter().enumerate() {
            for (j, (_, to)) in formats.iter().enumerate() {
                // Scored labeled pairs carry no labels: they convert to labeled lists only.
                let from_scored_pairs = output_scores && *from == ConvertFormat::LabeledPair;
                if from_scored_pairs && *to != ConvertFormat::LabeledList {
                    continue;
                }
                // Labeled pairs tie negatives to the anchor only: what they convert to is
                // grouped per anchor, which equals the mined layout only for labeled pairs.
                if *to == ConvertFormat::LabeledList && *from == ConvertFormat::LabeledPair {
                    continue;
                }
                let converted = convert_table(&mined[i], *from, *to, output_scores);
                let mut got = converted.clone();
                let mut want = mined[j].clone();
                if output_scores
                    && *to != ConvertFormat::LabeledPair
                    && *to != ConvertFormat::LabeledList
                {
                    // Scores go through JSON as f32 and back: compare them with a tolerance.
                    let strip = |t: &Table| {
                        Table::new(
                            t.columns()
                                .iter()
                                .filter(|c| c.name != "scores")
                                .cloned()
                                .collect(),
                        )
                        .unwrap()
                    };
                    let (a, b) = (
                        float_lists(got.column("scores").unwrap()).to_vec(),
                        float_lists(want.column("scores").unwrap()).to_vec(),
                    );
                    assert_eq!(a.len(), b.len());
                    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
                        assert!(close(*x, *y));
                    }
                    got = strip(&got);
                    want = strip(&want);
                }
                assert_eq!(got, want, "{from} → {to}, scores {output_scores}");
            }
        }
    }
}

#[test]
fn labeled_pairs_become_per_anchor_lists() {
    let mined = mine(&MineOptions {
        output_format: OutputFormat::LabeledPair,
        ..MineOptions::default()
    })
    .table;
    let lists = convert_table(
        &mined,
        ConvertFormat::LabeledPair,
        ConvertFormat::LabeledList,
        false,
    );
    // One row per query: "what is python" holds both positives, then its three negatives.
    assert_eq!(lists.num_rows(), 4);
    assert_eq!(
        lists.column("labels").unwrap(),
        &Values::IntList(vec![
            vec![1, 1, 0, 0, 0],
            vec![1, 0, 0, 0],
            vec![1, 0, 0, 0],
            vec![1, 0, 0, 0]
        ])
    );
    // And back: the same labeled pairs.
    let back = convert_table(
        &lists,
        ConvertFormat::LabeledList,
        ConvertFormat::LabeledPair,
        false,
    );
    assert_eq!(back, mined);
}

#[test]
fn n_tuple_conversion_rejects_ragged_groups_and_graded_labels() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lists.jsonl"),
        "{\"q\": \"a\", \"docs\": [\"p\", \"n1\", \"n2\"], \"labels\": [1, 0, 0]}\n\
         {\"q\": \"b\", \"docs\": [\"p\", \"n1\"], \"labels\": [1, 0]}\n",
    )
    .unwrap();
    let source = DataSource::new("lists.jsonl", dir.path());
    let error = convert(
        &source,
        ConvertFormat::LabeledList,
        ConvertFormat::NTuple,
        false,
        0,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("has 1 negatives but earlier anchors have 2"),
        "{error}"
    );
    // Triplets take any count.
    let (triplets, _) = convert(
        &source,
        ConvertFormat::LabeledList,
        ConvertFormat::Triplet,
        false,
        0,
    )
    .unwrap();
    assert_eq!(triplets.num_rows(), 3);
    assert_eq!(triplets.column_names(), ["q", "docs", "negative"]);

    std::fs::write(
        dir.path().join("lists.jsonl"),
        "{\"q\": \"a\", \"docs\": [\"p\", \"n1\"], \"labels\": [2, 0]}\n",
    )
    .unwrap();
    let error = convert(
        &source,
        ConvertFormat::LabeledList,
        ConvertFormat::Triplet,
        false,
        0,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("has label 2"), "{error}");
    // Graded labels survive labeled-list ↔ labeled-pair.
    let (pairs, _) = convert(
        &source,
        ConvertFormat::LabeledList,
        ConvertFormat::LabeledPair,
        false,
        0,
    )
    .unwrap();
    assert_eq!(pairs.column("label").unwrap(), &Values::Int(vec![2, 0]));
}

#[test]
fn class_pairs_become_triplets_with_same_class_positives_and_other_class_negatives() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        ("s1", "t1", 0),
        ("s2", "t2", 0),
        ("s3", "t3", 0),
        ("s4", "t4", 1),
        ("s5", "t5", 1),
        ("s6", "t6", 2),
        ("only", "only", 3), // its class has no text but the anchor: left out
    ];
    let text: String = rows
        .iter()
        .map(|(a, b, c)| {
            format!("{{\"sentence_A\": \"{a}\", \"sentence_B\": \"{b}\", \"label\": {c}}}\n")
        })
        .collect();
    std::fs::write(dir.path().join("pairs.jsonl"), text).unwrap();
    let source = DataSource::new("pairs.jsonl", dir.path());
    let class_of = |text: &str| {
        rows.iter()
            .find(|(_, b, _)| *b == text)
            .map(|(_, _, c)| *c)
            .unwrap()
    };
    let (first, notes) = convert(
        &source,
        ConvertFormat::PairClass,
        ConvertFormat::Triplet,
        false,
        5,
    )
    .unwrap();
    assert_eq!(first.column_names(), ["anchor", "positive", "negative"]);
    assert_eq!(first.num_rows(), 6);
    assert!(notes.lines[0].contains("left out 1 rows"));
    for seed in 0..10 {
        let (table, _) = convert(
            &source,
            ConvertFormat::PairClass,
            ConvertFormat::Triplet,
            false,
            seed,
        )
        .unwrap();
        let anchors = texts(table.column("anchor").unwrap());
        let positives = texts(table.column("positive").unwrap());
        let negatives = texts(table.column("negative").unwrap());
        for i in 0..table.num_rows() {
            let class = rows.iter().find(|(a, _, _)| *a == anchors[i]).unwrap().2;
            assert_eq!(class_of(&positives[i]), class);
            assert_ne!(class_of(&negatives[i]), class);
        }
    }
    let (again, _) = convert(
        &source,
        ConvertFormat::PairClass,
        ConvertFormat::Triplet,
        false,
        5,
    )
    .unwrap();
    assert_eq!(again, first, "seeded");
    let error = convert(
        &source,
        ConvertFormat::PairClass,
        ConvertFormat::NTuple,
        false,
        5,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("pair-class converts to triplet"), "{error}");
}
