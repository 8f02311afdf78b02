//! The evaluators on the tiny fixture model, and `crossdistill eval` end to end.
//!
//! Expected metrics come from the model's own scores (`CrossEncoder::predict`) fed to the pure
//! metric functions of `crossdistill::eval`, which are pinned to sentence-transformers, scipy and
//! sklearn numbers in their unit tests; the agreement check uses torch's logits of the same
//! model (`expected.jsonl`, made by sentence-transformers) as the teacher.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crossdistill::eval::{
    agreement, correlation_metrics, AgreementEvaluator, BinaryClassificationMetrics, Candidates,
    ClassificationEvaluator, CorrelationEvaluator, Evaluator, RerankingEvaluator, RerankingMetrics,
    RerankingOptions, RerankingSample,
};
use crossdistill::model::{CrossEncoder, LoadOptions, ScoreActivation};
use serde_json::{json, Value};

use crate::common::{crossdistill, expected_rows, fixture, stderr};

const BATCH_SIZE: usize = 4;

fn model() -> CrossEncoder {
    CrossEncoder::load(
        fixture("tiny-bert-ce").to_str().unwrap(),
        None,
        &LoadOptions::default(),
    )
    .unwrap()
}

/// (query, passage) of the fixture rows.
fn fixture_pairs() -> Vec<(String, String)> {
    expected_rows("tiny-bert-ce")
        .iter()
        .map(|r| {
            (
                r["query"].as_str().unwrap().to_string(),
                r["passage"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// One sample per fixture row: its passage is the positive; the next three rows' passages are
/// the negatives (negative mode) or, with the positive in third place, the first-stage
/// documents (documents mode).
fn samples(documents_mode: bool) -> Vec<RerankingSample> {
    let pairs = fixture_pairs();
    let n = pairs.len();
    (0..n)
        .map(|i| {
            let others: Vec<String> = (1..=3).map(|k| pairs[(i + k) % n].1.clone()).collect();
            let positive = pairs[i].1.clone();
            let candidates = if documents_mode {
                let mut documents = others;
                documents.insert(2, positive.clone());
                Candidates::Documents(documents)
            } else {
                Candidates::Negative(others)
            };
            RerankingSample {
                query: pairs[i].0.clone(),
                positive: vec![positive],
                candidates,
            }
        })
        .collect()
}

fn write_jsonl(path: &Path, rows: &[Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn sample_json(sample: &RerankingSample) -> Value {
    match &sample.candidates {
        Candidates::Documents(documents) => {
            json!({"query": sample.query, "positive": sample.positive, "documents": documents})
        }
        Candidates::Negative(negative) => {
            json!({"query": sample.query, "positive": sample.positive, "negative": negative})
        }
    }
}

/// Gold labels for the fixture pairs: graded 0..3 for correlation, 0/1 for classification.
fn graded_labels() -> Vec<f64> {
    (0..fixture_pairs().len()).map(|i| (i % 4) as f64).collect()
}

fn binary_labels() -> Vec<u32> {
    (0..fixture_pairs().len())
        .map(|i| (i % 3 == 0) as u32)
        .collect()
}

/// Metrics computed from the model's own scores with the pure functions.
fn expected_reranking(model: &CrossEncoder, documents_mode: bool) -> BTreeMap<String, f64> {
    let samples = samples(documents_mode);
    let queries: Vec<_> = samples.iter().map(|s| s.to_query(true)).collect();
    let scores: Vec<Vec<f64>> = queries
        .iter()
        .map(|q| {
            let pairs: Vec<(&str, &str)> = q.docs.iter().map(|&d| (q.query, d)).collect();
            model
                .predict(&pairs, BATCH_SIZE, ScoreActivation::Sigmoid)
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect()
        })
        .collect();
    RerankingMetrics::compute(10, &queries, &scores).unwrap()
}

fn own_scores(model: &CrossEncoder) -> Vec<f64> {
    model
        .predict(&fixture_pairs(), BATCH_SIZE, ScoreActivation::Sigmoid)
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

fn assert_metrics_close(actual: &BTreeMap<String, f64>, expected: &BTreeMap<String, f64>) {
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (key, want) in expected {
        // Scores of one pair differ by float noise between batchings (≤ 1e-6); rank metrics are
        // then equal and correlations within 1e-5.
        assert!(
            (actual[key] - want).abs() < 1e-5,
            "{key}: got {}, expected {want}",
            actual[key]
        );
    }
}

#[test]
fn evaluators_match_the_metrics_of_the_models_own_scores() {
    let model = model();
    for documents_mode in [false, true] {
        let evaluator = RerankingEvaluator::new(
            "rerank",
            samples(documents_mode),
            RerankingOptions {
                batch_size: BATCH_SIZE,
                ..RerankingOptions::default()
            },
        )
        .unwrap();
        let metrics = evaluator.evaluate(&model).unwrap();
        assert_metrics_close(&metrics, &expected_reranking(&model, documents_mode));
        assert_eq!(metrics.contains_key("base_map"), documents_mode);
    }
    // In documents mode the positive is third of four: base MRR@10 = 1/3 for every query.
    let evaluator =
        RerankingEvaluator::new("r", samples(true), RerankingOptions::default()).unwrap();
    assert!((evaluator.evaluate(&model).unwrap()["base_mrr@10"] - 1.0 / 3.0).abs() < 1e-12);

    let scores = own_scores(&model);
    let correlation =
        CorrelationEvaluator::new("sts", fixture_pairs(), graded_labels(), BATCH_SIZE).unwrap();
    assert_metrics_close(
        &correlation.evaluate(&model).unwrap(),
        &correlation_metrics(&graded_labels(), &scores).unwrap(),
    );

    let classification =
        ClassificationEvaluator::new("cls", fixture_pairs(), binary_labels(), 1, BATCH_SIZE)
            .unwrap();
    assert_metrics_close(
        &classification.evaluate(&model).unwrap(),
        &BinaryClassificationMetrics::compute(&scores, &binary_labels())
            .unwrap()
            .to_map(),
    );
    let three_labels =
        ClassificationEvaluator::new("cls", fixture_pairs(), binary_labels(), 3, BATCH_SIZE)
            .unwrap();
    let err = three_labels.evaluate(&model).unwrap_err().to_string();
    assert!(
        err.contains("built for 3 label(s) but the model has 1"),
        "{err}"
    );
}

#[test]
fn agreement_with_torch_scores_of_the_same_model_is_perfect() {
    // Teacher: sentence-transformers' logits of this very model; the student's sigmoid scores
    // are a monotone function of the same logits, so both rank correlations are 1 (the fixture's
    // logits are at least 1e-3 apart, far above the 1e-5 float noise between the two).
    let model = model();
    let torch: Vec<f64> = expected_rows("tiny-bert-ce")
        .iter()
        .map(|r| r["logit_st_predict"].as_f64().unwrap())
        .collect();
    let evaluator =
        AgreementEvaluator::new("agree", fixture_pairs(), torch.clone(), false, BATCH_SIZE)
            .unwrap();
    let metrics = evaluator.evaluate(&model).unwrap();
    assert_metrics_close(&metrics, &agreement(&own_scores(&model), &torch).unwrap());
    assert!((metrics["spearman"] - 1.0).abs() < 1e-12, "{metrics:?}");
    assert!((metrics["kendall_tau"] - 1.0).abs() < 1e-12, "{metrics:?}");
}

struct EvalFiles {
    _dir: tempfile::TempDir,
    root: PathBuf,
    reranking: PathBuf,
    correlation: PathBuf,
    classification: PathBuf,
    beir: PathBuf,
}

fn eval_files() -> EvalFiles {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let reranking = root.join("rerank.jsonl");
    write_jsonl(
        &reranking,
        &samples(true).iter().map(sample_json).collect::<Vec<_>>(),
    );
    let pairs = fixture_pairs();
    let correlation = root.join("sts.jsonl");
    let rows: Vec<Value> = pairs
        .iter()
        .zip(graded_labels())
        .map(|((q, p), label)| json!({"sentence1": q, "sentence2": p, "score": label}))
        .collect();
    write_jsonl(&correlation, &rows);
    let classification = root.join("cls.jsonl");
    let torch_logits = expected_rows("tiny-bert-ce")
        .iter()
        .map(|r| r["logit_st_predict"].clone())
        .collect::<Vec<_>>();
    let rows: Vec<Value> = pairs
        .iter()
        .zip(binary_labels())
        .zip(torch_logits)
        .map(|(((q, p), label), teacher)| {
            json!({"query": q, "passage": p, "label": label, "teacher_score": teacher})
        })
        .collect();
    write_jsonl(&classification, &rows);

    // A BEIR folder: document i answers query i.
    let beir = root.join("beir");
    std::fs::create_dir_all(beir.join("qrels")).unwrap();
    let corpus: Vec<Value> = pairs
        .iter()
        .enumerate()
        .map(|(i, (_, p))| json!({"_id": format!("d{i}"), "title": "", "text": p}))
        .collect();
    write_jsonl(&beir.join("corpus.jsonl"), &corpus);
    let queries: Vec<Value> = pairs
        .iter()
        .enumerate()
        .map(|(i, (q, _))| json!({"_id": format!("q{i}"), "text": q}))
        .collect();
    write_jsonl(&beir.join("queries.jsonl"), &queries);
    let qrels: String = (0..pairs.len())
        .map(|i| format!("q{i}\td{i}\t1\n"))
        .collect();
    std::fs::write(
        beir.join("qrels/test.tsv"),
        format!("query-id\tcorpus-id\tscore\n{qrels}"),
    )
    .unwrap();
    EvalFiles {
        _dir: dir,
        root,
        reranking,
        correlation,
        classification,
        beir,
    }
}

fn metrics_of(value: &Value) -> BTreeMap<String, f64> {
    value
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .collect()
}

#[test]
fn eval_json_reports_st_metric_names_and_values() {
    let files = eval_files();
    let model_dir = fixture("tiny-bert-ce");
    let csv_dir = files.root.join("csv");
    let run = crossdistill(&[
        "eval",
        "--model",
        model_dir.to_str().unwrap(),
        "--reranking",
        files.reranking.to_str().unwrap(),
        "--correlation",
        files.correlation.to_str().unwrap(),
        "--classification",
        files.classification.to_str().unwrap(),
        "--agreement",
        files.classification.to_str().unwrap(),
        "--agreement-flat",
        "--beir",
        files.beir.to_str().unwrap(),
        "--batch-size",
        &BATCH_SIZE.to_string(),
        "--csv-dir",
        csv_dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    let output: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        output.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "reranking",
            "correlation",
            "classification",
            "agreement",
            "beir"
        ]
    );

    let model = model();
    assert_metrics_close(
        &metrics_of(&output["reranking"]),
        &expected_reranking(&model, true),
    );
    let scores = own_scores(&model);
    assert_metrics_close(
        &metrics_of(&output["correlation"]),
        &correlation_metrics(&graded_labels(), &scores).unwrap(),
    );
    assert_metrics_close(
        &metrics_of(&output["classification"]),
        &BinaryClassificationMetrics::compute(&scores, &binary_labels())
            .unwrap()
            .to_map(),
    );
    // The teacher column holds torch's logits of this model: perfect agreement.
    let agreement = metrics_of(&output["agreement"]);
    assert!((agreement["spearman"] - 1.0).abs() < 1e-12, "{agreement:?}");
    assert!(
        (agreement["kendall_tau"] - 1.0).abs() < 1e-12,
        "{agreement:?}"
    );
    let beir = metrics_of(&output["beir"]);
    assert_eq!(
        beir.keys().collect::<Vec<_>>(),
        [
            "base_map",
            "base_mrr@10",
            "base_ndcg@10",
            "map",
            "mrr@10",
            "ndcg@10"
        ]
    );
    assert!(beir.values().all(|v| (0.0..=1.0).contains(v)), "{beir:?}");

    let csv = std::fs::read_to_string(csv_dir.join("correlation_results.csv")).unwrap();
    assert!(csv.starts_with("step,pearson,spearman\n0,"), "{csv}");
    assert_eq!(csv.lines().count(), 2);
    assert!(csv_dir.join("reranking_results.csv").is_file());
}

#[test]
fn eval_prints_a_table_without_json() {
    let files = eval_files();
    let run = crossdistill(&[
        "eval",
        "--model",
        fixture("tiny-bert-ce").to_str().unwrap(),
        "--reranking",
        files.reranking.to_str().unwrap(),
        "--at-k",
        "3",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert!(
        stdout.starts_with("reranking (Cross Encoder Reranking)\n"),
        "{stdout}"
    );
    let primary = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("ndcg@3"))
        .unwrap_or_else(|| panic!("an ndcg@3 line: {stdout}"));
    assert!(
        primary.ends_with('*'),
        "the primary metric is marked: {primary}"
    );
}

#[test]
fn eval_bad_input_exits_2_with_file_and_line() {
    let files = eval_files();
    let model_dir = fixture("tiny-bert-ce");
    let bad = files.root.join("bad.jsonl");
    let good_row = "{\"query\": \"q\", \"positive\": [\"p\"], \"negative\": [\"n\"]}";
    let cases: [(&str, &str, String); 5] = [
        (
            "--reranking",
            "bad.jsonl:2: invalid JSON",
            format!("{good_row}\n{{not json\n"),
        ),
        (
            "--reranking",
            "bad.jsonl:2: expected `documents` or `negative`",
            format!("{good_row}\n{{\"query\": \"q\", \"positive\": \"p\"}}\n"),
        ),
        (
            "--correlation",
            "bad.jsonl:1: found none of the text-column pairs",
            "{\"question\": \"q\", \"answer\": \"a\", \"score\": 1}\n".to_string(),
        ),
        (
            "--correlation",
            "bad.jsonl:2: missing the label `score`",
            "{\"query\": \"q\", \"passage\": \"a\", \"score\": 1}\n{\"query\": \"q\", \"passage\": \"b\"}\n"
                .to_string(),
        ),
        (
            "--classification",
            "bad.jsonl:1: label `label` is 2; a one-output model needs labels 0 or 1",
            "{\"query\": \"q\", \"passage\": \"a\", \"label\": 2}\n".to_string(),
        ),
    ];
    for (flag, message, content) in &cases {
        std::fs::write(&bad, content).unwrap();
        let run = crossdistill(&[
            "eval",
            "--model",
            model_dir.to_str().unwrap(),
            flag,
            bad.to_str().unwrap(),
        ]);
        assert_eq!(run.status.code(), Some(2), "{flag} {content}");
        let err = stderr(&run);
        assert!(
            err.starts_with("error: ") && err.contains(message),
            "{flag} {content}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }

    let run = crossdistill(&[
        "eval",
        "--model",
        model_dir.to_str().unwrap(),
        "--reranking",
        "/no/such/file.jsonl",
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("cannot read /no/such/file.jsonl"),
        "{}",
        stderr(&run)
    );

    let run = crossdistill(&["eval", "--model", model_dir.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("nothing to evaluate"),
        "{}",
        stderr(&run)
    );

    let run = crossdistill(&[
        "eval",
        "--model",
        model_dir.to_str().unwrap(),
        "--beir",
        files.beir.to_str().unwrap(),
        "--beir-split",
        "dev",
    ]);
    assert_eq!(run.status.code(), Some(2));
    let err = stderr(&run);
    assert!(
        err.contains("no qrels file for split \"dev\"") && err.contains("[\"test\"]"),
        "{err}"
    );
}

#[test]
fn bi_encoder_mode_correlates_cosine_similarities_with_the_labels() {
    use crossdistill::model::bi_encoder::{BiEncoder, BiEncoderOptions, EncodeOptions};
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<(String, String, f64)> = fixture_pairs()
        .into_iter()
        .enumerate()
        .map(|(i, (q, p))| (q, p, ((i * 7) % 5) as f64 / 4.0))
        .collect();
    let path = dir.path().join("sts.jsonl");
    let lines: Vec<String> = rows
        .iter()
        .map(|(a, b, s)| json!({"s1": a, "s2": b, "score": s}).to_string())
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();

    // Expected: cosine of the library's normalised mean-pooled embeddings, with the prompt.
    let model = fixture("tiny-bert-ce");
    let encoder =
        BiEncoder::load(model.to_str().unwrap(), None, &BiEncoderOptions::default()).unwrap();
    let options = EncodeOptions {
        batch_size: 3,
        prompt: Some("query: "),
        normalize: true,
    };
    let left: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let right: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    let left = encoder.encode(&left, &options, &mut |_| {}).unwrap();
    let right = encoder.encode(&right, &options, &mut |_| {}).unwrap();
    let cosines: Vec<f64> = (0..rows.len())
        .map(|i| {
            left.row(i)
                .iter()
                .zip(right.row(i))
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum()
        })
        .collect();
    let labels: Vec<f64> = rows.iter().map(|r| r.2).collect();
    let expected = correlation_metrics(&labels, &cosines).unwrap();

    let output = crossdistill(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--bi-encoder",
        "--prompt",
        "query: ",
        "--correlation",
        path.to_str().unwrap(),
        "--columns",
        "s1,s2",
        "--batch-size",
        "3",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    // Same batches as above; the tolerance covers summation order across threads.
    for metric in ["pearson", "spearman"] {
        let got = printed["correlation"][metric].as_f64().unwrap();
        assert!(
            (got - expected[metric]).abs() < 1e-5,
            "{metric}: {got} vs {}",
            expected[metric]
        );
    }

    let output = crossdistill(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--bi-encoder",
        "--reranking",
        path.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("only the correlation evaluator"),
        "{}",
        stderr(&output)
    );
}
