//! sentence-transformers 6 parity on the reference values of `tests/fixtures/st6-parity/`
//! (made by its `make_st6_parity.py` with transformers 5.24, tokenizers 0.23.3 and
//! sentence-transformers 6.3): pair truncation and the classification threshold sweeps.

use serde_json::Value;

use crate::common::fixture;
use crossdistill::eval::{
    find_best_acc_and_threshold, find_best_f1_and_threshold, BinaryClassificationMetrics,
    SweepScore,
};
use crossdistill::tokenize::PairTokenizer;

fn rows(file: &str) -> Vec<Value> {
    std::fs::read_to_string(fixture("st6-parity").join(file))
        .expect("st6-parity reference file")
        .lines()
        .map(|line| serde_json::from_str(line).expect("reference rows are JSON"))
        .collect()
}

fn u32s(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .expect("a list of ids")
        .iter()
        .map(|v| v.as_u64().expect("an id") as u32)
        .collect()
}

#[test]
fn pairs_truncate_as_transformers_does() {
    let cases = rows("pair_truncation.jsonl");
    // Every case the issue names, for both tokenizers: BERT (3 special tokens) and XLM-R (4).
    for fixture_name in ["tiny-bert-ce", "tiny-xlmr-ce"] {
        for case in [
            "second-long",
            "first-long",
            "both-long-equal",
            "both-long-first-longer",
            "both-long-second-longer",
        ] {
            for parity in [0, 1] {
                assert!(
                    cases.iter().any(|c| c["fixture"] == fixture_name
                        && c["case"] == case
                        && c["budget"].as_u64().unwrap() % 2 == parity),
                    "no {fixture_name} {case} case with budget parity {parity}"
                );
            }
        }
    }
    let mut checked = 0;
    for case in &cases {
        let fixture_name = case["fixture"].as_str().unwrap();
        let max_length = case["max_length"].as_u64().unwrap() as usize;
        let tokenizer =
            PairTokenizer::from_file(&fixture(fixture_name).join("tokenizer.json"), max_length, 0)
                .unwrap();
        let pair = [(
            case["first"].as_str().unwrap(),
            case["second"].as_str().unwrap(),
        )];
        let encoded = tokenizer.encode_pairs(&pair).unwrap().remove(0);
        let what = format!(
            "{fixture_name} {} max_length {max_length}",
            case["case"].as_str().unwrap()
        );
        assert_eq!(encoded.input_ids, u32s(&case["input_ids"]), "{what}");
        if !case["token_type_ids"].is_null() {
            assert_eq!(encoded.type_ids, u32s(&case["token_type_ids"]), "{what}");
        }
        checked += 1;
    }
    assert_eq!(checked, 48);
}

fn close(actual: f64, expected: &Value, what: &str) {
    let expected = expected.as_f64().unwrap();
    assert!(
        (actual - expected).abs() <= 1e-12 * expected.abs().max(1.0),
        "{what}: crossdistill {actual}, sentence-transformers {expected}"
    );
}

fn check_sweep<S: SweepScore>(case: &Value, scores: &[S], labels: &[u32]) {
    let name = case["case"].as_str().unwrap();
    let (accuracy, accuracy_threshold) = find_best_acc_and_threshold(scores, labels).unwrap();
    let best_f1 = find_best_f1_and_threshold(scores, labels).unwrap();
    // Thresholds are compared exactly: they are floats of the scores' type, placed by rules.
    assert_eq!(
        accuracy_threshold,
        case["accuracy_threshold"].as_f64().unwrap(),
        "{name}: accuracy threshold"
    );
    assert_eq!(
        best_f1.threshold,
        case["f1_threshold"].as_f64().unwrap(),
        "{name}: f1 threshold"
    );
    close(accuracy, &case["accuracy"], &format!("{name}: accuracy"));
    close(best_f1.f1, &case["f1"], &format!("{name}: f1"));
    close(
        best_f1.precision,
        &case["precision"],
        &format!("{name}: precision"),
    );
    close(best_f1.recall, &case["recall"], &format!("{name}: recall"));
    let metrics = BinaryClassificationMetrics::compute(scores, labels).unwrap();
    close(
        metrics.average_precision,
        &case["average_precision"],
        &format!("{name}: average precision"),
    );
}

#[test]
fn classification_sweeps_match_sentence_transformers_6() {
    let cases = rows("classification_sweeps.jsonl");
    assert_eq!(cases.len(), 11);
    for case in &cases {
        let labels = u32s(&case["labels"]);
        let scores: Vec<f64> = case["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        match case["dtype"].as_str().unwrap() {
            "float32" => {
                let scores: Vec<f32> = scores.iter().map(|&s| s as f32).collect();
                check_sweep(case, &scores, &labels);
            }
            "float64" => check_sweep(case, &scores, &labels),
            other => panic!("unexpected dtype {other}"),
        }
    }
    // The example: on a 50/50 set where predicting everything positive is best,
    // F1 2/3 with precision 1/2 and recall 1.
    let all_positive = cases
        .iter()
        .find(|c| c["case"] == "all-positive-optimum")
        .unwrap();
    assert_eq!(all_positive["f1"].as_f64().unwrap(), 2.0 / 3.0);
    assert_eq!(all_positive["recall"].as_f64().unwrap(), 1.0);
}
