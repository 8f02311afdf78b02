//! `crossdistill mine` and `crossdistill convert` end to end, with the tiny fixture model as the
//! embedder: the files they write read back through the data readers `train` uses.

use std::path::Path;

use crossdistill::data::{DataSource, Field, Label};
use serde_json::Value;

use super::common::{crossdistill, fixture, stderr};

const PAIRS: &str = r#"{"query": "what is python", "answer": "Python is a programming language."}
{"query": "capital of france", "answer": "Paris is the capital of France."}
{"query": "what is python", "answer": "Python was created by Guido van Rossum."}
{"query": "how tall is everest", "answer": "Mount Everest is 8,849 metres high."}
"#;

const CORPUS: &str = r#"{"_id": "1", "title": "", "text": "Pythons are large snakes."}
{"_id": "2", "title": "", "text": "Java is another programming language."}
{"_id": "3", "title": "", "text": "Lyon is a city in France."}
{"_id": "4", "title": "", "text": "K2 is the second highest mountain."}
{"_id": "5", "title": "", "text": "Cheese is made from milk."}
{"_id": "6", "title": "", "text": "The Alps are in Europe."}
"#;

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pairs.jsonl"), PAIRS).unwrap();
    std::fs::write(dir.path().join("corpus.jsonl"), CORPUS).unwrap();
    dir
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

fn lines(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn mine_writes_triplets_that_train_reads_and_prints_the_statistics() {
    let dir = setup();
    let model = fixture("tiny-bert-ce");
    let output = crossdistill(&[
        "mine",
        "--model",
        model.to_str().unwrap(),
        "--input",
        &path(dir.path(), "pairs.jsonl"),
        "--corpus",
        &path(dir.path(), "corpus.jsonl"),
        "--output",
        &path(dir.path(), "triplets.jsonl"),
        "--num-negatives",
        "2",
        "--output-scores",
        "--cache-folder",
        &path(dir.path(), "cache"),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("note: saved corpus embeddings to"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("cache")).unwrap().count(),
        2
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("Metric       Positive       Negative     Difference"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Count               4              8"),
        "{stdout}"
    );
    let rows = lines(&dir.path().join("triplets.jsonl"));
    assert_eq!(rows.len(), 8, "4 (query, positive) pairs × 2 negatives");
    let keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["query", "answer", "negative", "scores"]);
    for row in &rows {
        assert_ne!(row["answer"], row["negative"]);
        assert_eq!(row["scores"].as_array().unwrap().len(), 2);
    }
    // What train sees: inputs (query, answer, negative), label `scores` = [pos, neg].
    let reader = DataSource::new("triplets.jsonl", dir.path())
        .open()
        .unwrap();
    assert_eq!(reader.input_columns(), ["query", "answer", "negative"]);
    assert_eq!(reader.label_column(), Some("scores"));
    for row in reader {
        let row = row.unwrap();
        assert!(matches!(&row.fields[2], Field::Text(_)));
        assert!(matches!(&row.label, Some(Label::List(scores)) if scores.len() == 2));
    }
}

#[test]
fn mine_writes_parquet_labeled_lists_and_convert_turns_them_into_n_tuples() {
    let dir = setup();
    let model = fixture("tiny-bert-ce");
    let output = crossdistill(&[
        "mine",
        "--model",
        model.to_str().unwrap(),
        "--input",
        &path(dir.path(), "pairs.jsonl"),
        "--corpus",
        &path(dir.path(), "corpus.jsonl"),
        "--output",
        &path(dir.path(), "lists.parquet"),
        "--output-format",
        "labeled-list",
        "--num-negatives",
        "3",
        "--no-cache",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let reader = DataSource::new("lists.parquet", dir.path()).open().unwrap();
    assert_eq!(reader.input_columns(), ["query", "answer"]);
    assert_eq!(reader.label_column(), Some("labels"));
    let rows: Vec<_> = reader.map(|row| row.unwrap()).collect();
    assert_eq!(rows.len(), 4);
    for row in &rows {
        assert_eq!(row.fields[1].as_list().unwrap().len(), 4);
        assert_eq!(row.label, Some(Label::List(vec![1.0, 0.0, 0.0, 0.0])));
    }

    let output = crossdistill(&[
        "convert",
        "--input",
        &path(dir.path(), "lists.parquet"),
        "--from",
        "labeled-list",
        "--to",
        "n-tuple",
        "--output",
        &path(dir.path(), "tuples.jsonl"),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let tuples = lines(&dir.path().join("tuples.jsonl"));
    assert_eq!(tuples.len(), 4);
    for (tuple, list) in tuples.iter().zip(&rows) {
        let documents = list.fields[1].as_list().unwrap();
        assert_eq!(tuple["answer"], documents[0].as_str());
        assert_eq!(tuple["negative_3"], documents[3].as_str());
    }
}

#[test]
fn bad_windows_and_formats_exit_2_with_the_values() {
    let dir = setup();
    let model = fixture("tiny-bert-ce");
    let output = crossdistill(&[
        "mine",
        "--model",
        model.to_str().unwrap(),
        "--input",
        &path(dir.path(), "pairs.jsonl"),
        "--output",
        &path(dir.path(), "out.jsonl"),
        "--range-min",
        "5",
        "--range-max",
        "6",
        "--num-negatives",
        "2",
        "--no-cache",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("cannot mine 2 negatives per query: only 1 candidates remain"),
        "{message}"
    );
    assert!(!dir.path().join("out.jsonl").exists());

    let output = crossdistill(&[
        "convert",
        "--input",
        &path(dir.path(), "pairs.jsonl"),
        "--from",
        "pair-class",
        "--to",
        "labeled-pair",
        "--output",
        &path(dir.path(), "out.jsonl"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("pair-class converts to triplet"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_teacher_rescores_when_max_score_is_set() {
    let dir = setup();
    let model = fixture("tiny-bert-ce");
    let output = crossdistill(&[
        "mine",
        "--model",
        model.to_str().unwrap(),
        "--teacher",
        model.to_str().unwrap(),
        "--max-score",
        "1.0",
        "--input",
        &path(dir.path(), "pairs.jsonl"),
        "--corpus",
        &path(dir.path(), "corpus.jsonl"),
        "--output",
        &path(dir.path(), "rescored.jsonl"),
        "--output-format",
        "n-tuple",
        "--num-negatives",
        "2",
        "--output-scores",
        "--no-cache",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("rescoring"), "{}", stderr(&output));
    // The tiny teacher's config names a sigmoid activation: every score is in (0, 1), and the
    // two negatives come best first.
    for row in lines(&dir.path().join("rescored.jsonl")) {
        let scores: Vec<f64> = row["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect();
        assert_eq!(scores.len(), 3);
        assert!(scores.iter().all(|s| *s > 0.0 && *s < 1.0), "{scores:?}");
        assert!(scores[1] >= scores[2], "{scores:?}");
    }
}

/// Mine with `extra` arguments into `name`; the output's lines.
fn mine_with(dir: &Path, name: &str, extra: &[&str]) -> Vec<Value> {
    let model = fixture("tiny-bert-ce");
    let mut args = vec![
        "mine".to_string(),
        "--model".into(),
        model.to_str().unwrap().into(),
        "--input".into(),
        path(dir, "pairs.jsonl"),
        "--corpus".into(),
        path(dir, "corpus.jsonl"),
        "--output".into(),
        path(dir, name),
        "--no-cache".into(),
    ];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = crossdistill(&args);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    lines(&dir.join(name))
}

#[test]
fn huge_windows_and_counts_are_capped_at_the_corpus_size() {
    // Corpus: 6 documents + 4 positives = 10. A window past it holds nothing more, so a huge
    // range_max mines what range_max = 12 mines (random sampling too: the same draws).
    let dir = setup();
    for strategy in ["top", "random"] {
        let small = mine_with(
            dir.path(),
            "small.jsonl",
            &[
                "--range-max",
                "12",
                "--num-negatives",
                "3",
                "--sampling-strategy",
                strategy,
            ],
        );
        let huge = mine_with(
            dir.path(),
            "huge.jsonl",
            &[
                "--range-max",
                "100000000000",
                "--num-negatives",
                "3",
                "--sampling-strategy",
                strategy,
            ],
        );
        assert!(!small.is_empty());
        assert_eq!(huge, small, "{strategy}");
    }
    // num_negatives above the corpus size mines at most every document, with a note.
    let model = fixture("tiny-bert-ce");
    let output = crossdistill(&[
        "mine",
        "--model",
        model.to_str().unwrap(),
        "--input",
        &path(dir.path(), "pairs.jsonl"),
        "--corpus",
        &path(dir.path(), "corpus.jsonl"),
        "--output",
        &path(dir.path(), "many.jsonl"),
        "--num-negatives",
        "1000000000000",
        "--no-cache",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("num_negatives=1000000000000 is more than the corpus has documents; mining at most 10 per query"),
        "{}",
        stderr(&output)
    );
    let every = mine_with(dir.path(), "every.jsonl", &["--num-negatives", "10"]);
    assert_eq!(lines(&dir.path().join("many.jsonl")), every);
}
