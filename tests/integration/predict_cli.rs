//! `crossdistill predict` and `rank` end to end: torch's numbers through the binary, input order,
//! and bad input answered with file, line and exit code 2.

use crate::common::{crossdistill, expected_rows, fixture, max_abs_diff, stderr};

fn write_input(dir: &std::path::Path, name: &str, use_pair: bool) -> std::path::PathBuf {
    let path = dir.join("input.jsonl");
    let lines: Vec<String> = expected_rows(name)
        .iter()
        .map(|r| {
            if use_pair {
                serde_json::json!({"id": r["id"], "pair": [r["query"], r["passage"]]}).to_string()
            } else {
                serde_json::json!({"id": r["id"], "query": r["query"], "passage": r["passage"]})
                    .to_string()
            }
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn predict_matches_torch_in_input_order() {
    for (name, use_pair) in [("tiny-bert-ce", false), ("tiny-xlmr-ce", true)] {
        let dir = tempfile::tempdir().unwrap();
        let input = write_input(dir.path(), name, use_pair);
        let output = dir.path().join("scored.jsonl");
        let model = fixture(name);
        let run = crossdistill(&[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--activation",
            "identity",
            "--batch-size",
            "3",
        ]);
        assert!(run.status.success(), "{}", stderr(&run));
        let rows: Vec<serde_json::Value> = std::fs::read_to_string(&output)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let expected = expected_rows(name);
        assert_eq!(rows.len(), expected.len());
        for (row, want) in rows.iter().zip(&expected) {
            assert_eq!(row["id"], want["id"], "input order kept");
        }
        let ours: Vec<f32> = rows
            .iter()
            .map(|r| r["score"].as_f64().unwrap() as f32)
            .collect();
        let torch: Vec<f32> = expected
            .iter()
            .map(|r| r["logit"].as_f64().unwrap() as f32)
            .collect();
        assert!(max_abs_diff(&ours, &torch) <= 1e-5, "{name}");
    }
}

#[test]
fn predict_default_activation_is_the_models_sigmoid() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), "tiny-bert-ce", false);
    let run = crossdistill(&[
        "predict",
        "--model",
        fixture("tiny-bert-ce").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let ours: Vec<f32> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["score"]
                .as_f64()
                .unwrap() as f32
        })
        .collect();
    let torch: Vec<f32> = expected_rows("tiny-bert-ce")
        .iter()
        .map(|r| r["score_st_predict"].as_f64().unwrap() as f32)
        .collect();
    assert!(max_abs_diff(&ours, &torch) <= 1e-5);
}

#[test]
fn predict_bad_input_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("tiny-bert-ce");
    let cases = [
        (
            "{\"query\": \"a\", \"passage\": \"b\"}\n{not json\n",
            ":2: invalid JSON",
        ),
        (
            "{\"query\": \"a\", \"passage\": \"b\"}\n\n{\"query\": \"a\"}\n",
            ":3: expected `query` and `passage`",
        ),
        (
            "{\"query\": \"a\", \"passage\": 3}\n",
            ":1: `passage` must be a string, found 3",
        ),
        (
            "{\"pair\": [\"a\"]}\n",
            ":1: `pair` must be an array of two strings",
        ),
        ("[1, 2]\n", ":1: expected a JSON object"),
        ("\n", "no rows found"),
    ];
    for (content, message) in cases {
        let input = dir.path().join("bad.jsonl");
        std::fs::write(&input, content).unwrap();
        let out = dir.path().join("out.jsonl");
        std::fs::write(&out, "keep me").unwrap();
        let run = crossdistill(&[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_eq!(run.status.code(), Some(2), "{content:?}");
        let err = stderr(&run);
        assert!(
            err.starts_with("error: ") && err.contains("bad.jsonl") && err.contains(message),
            "{content:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "keep me",
            "no data lost on error"
        );
    }
    let run = crossdistill(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--input",
        "/no/such/file.jsonl",
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("cannot read /no/such/file.jsonl"),
        "{}",
        stderr(&run)
    );
    let run = crossdistill(&["predict", "--model", "/no/such/model", "--input", "x.jsonl"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("no such directory"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn rank_orders_documents_by_score() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs.txt");
    let rows = expected_rows("tiny-bert-ce");
    let texts: Vec<&str> = rows
        .iter()
        .take(5)
        .map(|r| r["passage"].as_str().unwrap())
        .collect();
    std::fs::write(&docs, texts.join("\n")).unwrap();
    let query = rows[0]["query"].as_str().unwrap();
    let run = crossdistill(&[
        "rank",
        "--model",
        fixture("tiny-bert-ce").to_str().unwrap(),
        "--query",
        query,
        "--documents",
        docs.to_str().unwrap(),
        "--json",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let ranked: Vec<serde_json::Value> = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(ranked.len(), 5);
    let scores: Vec<f64> = ranked
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // Document 0 with query 0 is fixture row 0, whose sigmoid score torch computed.
    let first = ranked.iter().find(|r| r["corpus_id"] == 0).unwrap();
    assert!((first["score"].as_f64().unwrap() - rows[0]["score"].as_f64().unwrap()).abs() < 1e-5);
}
