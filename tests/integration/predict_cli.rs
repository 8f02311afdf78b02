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

/// `text` with a UTF-8 byte-order mark in front, as Windows editors save files.
fn with_bom(text: &str) -> String {
    format!("\u{feff}{text}")
}

#[test]
fn a_byte_order_mark_is_ignored_by_predict_rank_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("tiny-bert-ce");
    let model = model.to_str().unwrap();
    let run_ok = |args: &[&str]| {
        let run = crossdistill(args);
        assert!(run.status.success(), "{args:?}: {}", stderr(&run));
        run.stdout
    };
    let rows = expected_rows("tiny-bert-ce");

    // predict: the same scores with and without the mark.
    let plain = write_input(dir.path(), "tiny-bert-ce", false);
    let text = std::fs::read_to_string(&plain).unwrap();
    let marked = dir.path().join("marked.jsonl");
    std::fs::write(&marked, with_bom(&text)).unwrap();
    let predict = |input: &std::path::Path, output: &str| {
        let output = dir.path().join(output);
        run_ok(&[
            "predict",
            "--model",
            model,
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]);
        std::fs::read_to_string(output).unwrap()
    };
    assert_eq!(predict(&marked, "a.jsonl"), predict(&plain, "b.jsonl"));

    // rank: the first document is the text after the mark.
    let documents: Vec<&str> = rows
        .iter()
        .take(3)
        .map(|r| r["passage"].as_str().unwrap())
        .collect();
    let rank = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let stdout = run_ok(&[
            "rank",
            "--model",
            model,
            "--query",
            rows[0]["query"].as_str().unwrap(),
            "--documents",
            path.to_str().unwrap(),
            "--json",
        ]);
        serde_json::from_slice::<serde_json::Value>(&stdout).unwrap()
    };
    let joined = documents.join("\n");
    assert_eq!(
        rank("marked.txt", with_bom(&joined)),
        rank("plain.txt", joined)
    );

    // eval: the same metrics with and without the mark.
    let sample = serde_json::json!({
        "query": rows[0]["query"],
        "positive": [documents[0]],
        "negative": [documents[1], documents[2]],
    })
    .to_string();
    let eval = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        String::from_utf8(run_ok(&[
            "eval",
            "--model",
            model,
            "--reranking",
            path.to_str().unwrap(),
        ]))
        .unwrap()
    };
    let line = sample + "\n";
    assert_eq!(
        eval("marked-dev.jsonl", with_bom(&line)),
        eval("plain-dev.jsonl", line)
    );
}
