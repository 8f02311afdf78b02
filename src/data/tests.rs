//! Tests across formats: the same data read from every format, the errors each one reports,
//! streaming, and `hf://` paths against a fake Hugging Face cache.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float32Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{count_rows, DataSource, Field, Label, Row};

fn write(directory: &Path, name: &str, contents: &str) -> PathBuf {
    let path = directory.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn write_parquet(directory: &Path, name: &str, columns: Vec<(&str, ArrayRef)>) -> PathBuf {
    write_parquet_with(directory, name, columns, Compression::SNAPPY)
}

fn write_parquet_with(
    directory: &Path,
    name: &str,
    columns: Vec<(&str, ArrayRef)>,
    compression: Compression,
) -> PathBuf {
    let path = directory.join(name);
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let properties = WriterProperties::builder()
        .set_compression(compression)
        .build();
    let mut writer = ArrowWriter::try_new(
        File::create(&path).unwrap(),
        batch.schema(),
        Some(properties),
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    path
}

fn strings(values: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

fn string_lists(values: &[&[&str]]) -> ArrayRef {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for list in values {
        for value in *list {
            builder.values().append_value(value);
        }
        builder.append(true);
    }
    Arc::new(builder.finish())
}

fn float_lists(values: &[&[f32]]) -> ArrayRef {
    let mut builder = ListBuilder::new(Float32Builder::new());
    for list in values {
        builder.values().append_slice(list);
        builder.append(true);
    }
    Arc::new(builder.finish())
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| name.to_string()).collect()
}

fn source(path: &Path) -> DataSource {
    DataSource::new(path.to_string_lossy(), "/")
}

/// Every row of `source`, with its input and label columns.
fn read_all(source: &DataSource) -> (Vec<String>, Option<String>, Vec<Row>) {
    let reader = source.open().unwrap();
    let inputs = reader.input_columns().to_vec();
    let label = reader.label_column().map(str::to_string);
    let rows = reader.collect::<Result<Vec<_>, _>>().unwrap();
    (inputs, label, rows)
}

/// The error `source` gives, at open or at a row, as the CLI prints it.
fn first_error(source: &DataSource) -> String {
    match source.open() {
        Err(error) => error.to_string(),
        Ok(reader) => {
            let errors: Vec<String> = reader
                .filter_map(|row| row.err().map(|error| error.to_string()))
                .collect();
            assert_eq!(errors.len(), 1, "expected exactly one error: {errors:?}");
            errors[0].clone()
        }
    }
}

fn assert_contains(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
}

fn text(value: &str) -> Field {
    Field::Text(value.to_string())
}

fn cells(rows: &[Row]) -> Vec<(Vec<Field>, Option<Label>)> {
    rows.iter()
        .map(|row| (row.fields.clone(), row.label.clone()))
        .collect()
}

#[test]
fn every_format_reads_the_same_rows() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    // A text with the CSV delimiter and quotes, and a label column that is not last.
    let jsonl = write(
        dir,
        "pairs.jsonl",
        concat!(
            r#"{"query": "what is rust", "score": 1, "passage": "Rust is a language, \"fast\"."}"#,
            "\n\n",
            r#"{"query": "capital of france", "score": 0.25, "passage": "Paris"}"#,
            "\n",
            r#"{"passage": "Beer", "query": "ü", "score": false}"#,
            "\n",
        ),
    );
    let csv = write(
        dir,
        "pairs.csv",
        "query,score,passage\n\"what is rust\",1,\"Rust is a language, \"\"fast\"\".\"\ncapital of france,0.25,Paris\nü,false,Beer\n",
    );
    let tsv = write(
        dir,
        "pairs.tsv",
        "query\tscore\tpassage\nwhat is rust\t1\tRust is a language, \"fast\".\ncapital of france\t0.25\tParis\nü\tfalse\tBeer\n",
    );
    let parquet_columns = || {
        vec![
            (
                "query",
                strings(&["what is rust", "capital of france", "ü"]),
            ),
            (
                "score",
                Arc::new(Float64Array::from(vec![1.0, 0.25, 0.0])) as ArrayRef,
            ),
            (
                "passage",
                strings(&["Rust is a language, \"fast\".", "Paris", "Beer"]),
            ),
        ]
    };
    let snappy = write_parquet(dir, "pairs.parquet", parquet_columns());
    let zstd = write_parquet_with(
        dir,
        "pairs-zstd.parquet",
        parquet_columns(),
        Compression::ZSTD(Default::default()),
    );

    let expected = vec![
        (
            vec![text("what is rust"), text("Rust is a language, \"fast\".")],
            Some(Label::Scalar(1.0)),
        ),
        (
            vec![text("capital of france"), text("Paris")],
            Some(Label::Scalar(0.25)),
        ),
        (vec![text("ü"), text("Beer")], Some(Label::Scalar(0.0))),
    ];
    // Lines: JSONL counts the blank line 2; CSV/TSV records start after the header; Parquet rows.
    let cases = [
        (&jsonl, vec![1, 3, 4]),
        (&csv, vec![2, 3, 4]),
        (&tsv, vec![2, 3, 4]),
        (&snappy, vec![1, 2, 3]),
        (&zstd, vec![1, 2, 3]),
    ];
    for (path, lines) in cases {
        let source = source(path);
        let (inputs, label, rows) = read_all(&source);
        assert_eq!(inputs, names(&["query", "passage"]), "{path:?}");
        assert_eq!(label.as_deref(), Some("score"), "{path:?}");
        assert_eq!(cells(&rows), expected, "{path:?}");
        let row_lines: Vec<usize> = rows.iter().map(|row| row.line).collect();
        assert_eq!(row_lines, lines, "{path:?}");
        assert_eq!(count_rows(&source).unwrap(), 3, "{path:?}");
        // A second open (the next epoch) starts again from the top.
        assert_eq!(read_all(&source).2, rows, "{path:?}");
    }
}

#[test]
fn list_columns_read_the_same_from_jsonl_and_parquet() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let jsonl = write(
        dir,
        "lists.jsonl",
        concat!(
            r#"{"query": "q1", "docs": ["a", "b", "c"], "labels": [1, 0, 0.5]}"#,
            "\n",
            r#"{"query": "q2", "docs": [], "labels": []}"#,
            "\n",
            r#"{"query": "q3", "docs": ["d"], "labels": [true]}"#,
            "\n",
        ),
    );
    let parquet = write_parquet(
        dir,
        "lists.parquet",
        vec![
            ("query", strings(&["q1", "q2", "q3"])),
            ("docs", string_lists(&[&["a", "b", "c"], &[], &["d"]])),
            ("labels", float_lists(&[&[1.0, 0.0, 0.5], &[], &[1.0]])),
        ],
    );
    let list = |values: &[&str]| Field::List(names(values));
    let expected = vec![
        (
            vec![text("q1"), list(&["a", "b", "c"])],
            Some(Label::List(vec![1.0, 0.0, 0.5])),
        ),
        (vec![text("q2"), list(&[])], Some(Label::List(vec![]))),
        (vec![text("q3"), list(&["d"])], Some(Label::List(vec![1.0]))),
    ];
    for path in [&jsonl, &parquet] {
        let (inputs, label, rows) = read_all(&source(path));
        assert_eq!(inputs, names(&["query", "docs"]));
        assert_eq!(label.as_deref(), Some("labels"));
        assert_eq!(cells(&rows), expected, "{path:?}");
    }
}

#[test]
fn label_detection_and_columns_pick_and_reorder() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    // "labels" comes before "score" in sentence-transformers' search order, whatever the file
    // order; an explicit `label` overrides it.
    let jsonl = write(
        dir,
        "triples.jsonl",
        concat!(
            r#"{"score": 3, "anchor": "a", "positive": "p", "negative": "n", "labels": [0.9, 0.1]}"#,
            "\n",
        ),
    );
    let (inputs, label, rows) = read_all(&DataSource {
        columns: Some(names(&["anchor", "positive", "negative"])),
        ..source(&jsonl)
    });
    assert_eq!(inputs, names(&["anchor", "positive", "negative"]));
    assert_eq!(label.as_deref(), Some("labels"));
    assert_eq!(rows[0].label, Some(Label::List(vec![0.9, 0.1])));

    let (inputs, label, rows) = read_all(&DataSource {
        columns: Some(names(&["negative", "anchor"])),
        label: Some("score".to_string()),
        ..source(&jsonl)
    });
    assert_eq!(inputs, names(&["negative", "anchor"]));
    assert_eq!(label.as_deref(), Some("score"));
    assert_eq!(
        cells(&rows),
        vec![(vec![text("n"), text("a")], Some(Label::Scalar(3.0)))]
    );

    // No label column at all: rows carry none.
    let unlabeled = write(dir, "unlabeled.csv", "query,passage\nq,p\n");
    let (inputs, label, rows) = read_all(&source(&unlabeled));
    assert_eq!(inputs, names(&["query", "passage"]));
    assert_eq!(label, None);
    assert_eq!(rows[0].label, None);
}

#[test]
fn headerless_csv_takes_its_column_names_from_names() {
    let directory = tempfile::tempdir().unwrap();
    // STSb's layout: sentence1,sentence2,score with no header; the first line is data.
    let path = write(
        directory.path(),
        "stsb.csv",
        "A plane is taking off.,An air plane is taking off.,1.0\nA man is playing a flute.,A man is playing a flute.,0.76\n",
    );
    let headerless = DataSource {
        names: Some(names(&["sentence1", "sentence2", "score"])),
        ..source(&path)
    };
    let (inputs, label, rows) = read_all(&headerless);
    assert_eq!(inputs, names(&["sentence1", "sentence2"]));
    assert_eq!(label.as_deref(), Some("score"));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].line, 1);
    assert_eq!(rows[0].fields[0], text("A plane is taking off."));
    assert_eq!(rows[1].label, Some(Label::Scalar(0.76)));
    assert_eq!(count_rows(&headerless).unwrap(), 2);

    // `names` on a file that has a header: the header's label cell is not a number.
    let with_header = write(
        directory.path(),
        "header.csv",
        "sentence1,sentence2,score\na,b,1\n",
    );
    let error = first_error(&DataSource {
        names: Some(names(&["sentence1", "sentence2", "score"])),
        ..source(&with_header)
    });
    assert_contains(
        &error,
        &[
            "header.csv:1: label column `score`",
            "found \"score\"",
            "remove `names`",
        ],
    );

    let error = first_error(&DataSource {
        names: Some(names(&["sentence1", "score"])),
        ..source(&path)
    });
    assert_contains(
        &error,
        &[
            "stsb.csv:1: ",
            "expected 2 cells (sentence1, score from `names`), found 3",
        ],
    );
}

#[test]
fn missing_file_and_unknown_extension_name_the_path() {
    let directory = tempfile::tempdir().unwrap();
    let missing = DataSource::new("data/train.jsonl", directory.path());
    let error = first_error(&missing);
    let resolved = directory.path().join("data/train.jsonl");
    assert_contains(
        &error,
        &[
            &format!("{}: data file not found", resolved.display()),
            "`data/train.jsonl`",
            "hint: check `path`",
        ],
    );
    write(directory.path(), "train.txt", "q\tp\n");
    let error = first_error(&DataSource::new("train.txt", directory.path()));
    assert_contains(
        &error,
        &[
            "train.txt: ",
            "extension `.txt`",
            ".jsonl, .json, .ndjson, .csv, .tsv, .parquet",
        ],
    );
    let error = first_error(&DataSource::new(".", directory.path()));
    assert_contains(&error, &["no extension"]);
}

#[test]
fn jsonl_errors_name_the_line_what_was_expected_and_what_was_found() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let first = r#"{"query": "q", "passage": "p", "score": 1}"#;
    // (name, second line, expected parts of the message)
    let cases: [(&str, &str, &[&str]); 10] = [
        (
            "invalid",
            r#"{"query": "q", "passage": "#,
            &["invalid.jsonl:2: invalid JSON at column 26: EOF while parsing a value", "JSON Lines"],
        ),
        (
            "array",
            r#"["q", "p", 1]"#,
            &["array.jsonl:2: expected a JSON object, found an array"],
        ),
        (
            "missing",
            r#"{"query": "q", "score": 1}"#,
            &[
                "missing.jsonl:2: row has no `passage` key",
                "expected the input columns query, passage",
                "found keys: query, score",
            ],
        ),
        (
            "no_label",
            r#"{"query": "q", "passage": "p"}"#,
            &["no_label.jsonl:2: row has no `score` key", "label column `score`"],
        ),
        (
            "number",
            r#"{"query": 42, "passage": "p", "score": 1}"#,
            &[
                "number.jsonl:2: column `query`: expected text (a JSON string) or a list of strings, found the number 42",
                "hint: quote the value",
            ],
        ),
        (
            "nested",
            r#"{"query": "q", "passage": {"title": "t"}, "score": 1}"#,
            &["nested.jsonl:2: column `passage`", "found an object", "nested objects"],
        ),
        (
            "string_label",
            r#"{"query": "q", "passage": "p", "score": "0.5"}"#,
            &[
                "string_label.jsonl:2: label column `score`: expected a finite number",
                "found the string \"0.5\"",
                "without quotes",
            ],
        ),
        (
            "huge_label",
            r#"{"query": "q", "passage": "p", "score": 1e39}"#,
            &["huge_label.jsonl:2: label column `score`: expected a finite number", "found the number 1e+39, too large for a 32-bit float"],
        ),
        (
            "null_label",
            r#"{"query": "q", "passage": "p", "score": null}"#,
            &["null_label.jsonl:2: label column `score`", "found null"],
        ),
        (
            "list_label",
            r#"{"query": "q", "passage": "p", "score": [1]}"#,
            &[
                "list_label.jsonl:2: label column `score` is a list of 1 numbers here but a number on line 1 (the first row)",
            ],
        ),
    ];
    for (name, second, parts) in cases {
        let path = write(
            dir,
            &format!("{name}.jsonl"),
            &format!("{first}\n{second}\n"),
        );
        let error = first_error(&source(&path));
        assert_contains(&error, parts);
    }

    // A JSON array (or pretty-printed JSON) instead of JSON Lines.
    let array = write(dir, "array_file.json", "[\n  {\"query\": \"q\"}\n]\n");
    assert_contains(
        &first_error(&source(&array)),
        &[
            "array_file.json:1: invalid JSON at column",
            "write one object per line",
        ],
    );

    let not_utf8 = dir.join("not_utf8.jsonl");
    let mut bytes = format!("{first}\n").into_bytes();
    bytes.extend_from_slice(b"{\"query\": \"\xff\", \"passage\": \"p\", \"score\": 1}\n");
    std::fs::write(&not_utf8, bytes).unwrap();
    assert_contains(
        &first_error(&source(&not_utf8)),
        &["not_utf8.jsonl:2: expected UTF-8 text"],
    );
}

#[test]
fn shape_and_ragged_list_errors_name_the_line() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let first = r#"{"query": "q", "docs": ["a", "b"], "labels": [1, 0]}"#;
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "text_for_list",
            r#"{"query": "q", "docs": "a", "labels": [1]}"#,
            &[
                "text_for_list.jsonl:2: column `docs` is text here but a list of texts on line 1 (the first row)",
            ],
        ),
        (
            "ragged",
            r#"{"query": "q", "docs": ["a", "b", "c"], "labels": [1, 0]}"#,
            &[
                "ragged.jsonl:2: column `docs` has 3 documents but label column `labels` has 2 values",
                "one label per document",
            ],
        ),
        (
            "bad_doc",
            r#"{"query": "q", "docs": ["a", 7], "labels": [1, 0]}"#,
            &["bad_doc.jsonl:2: column `docs`: expected a list of strings, found the number 7 at index 1"],
        ),
        (
            "bad_label",
            r#"{"query": "q", "docs": ["a", "b"], "labels": [1, "x"]}"#,
            &["bad_label.jsonl:2: label column `labels`: expected a list of finite numbers, found the string \"x\" at index 1"],
        ),
    ];
    for (name, second, parts) in cases {
        let path = write(
            dir,
            &format!("{name}.jsonl"),
            &format!("{first}\n{second}\n"),
        );
        assert_contains(&first_error(&source(&path)), parts);
    }
    // A ragged first row fails at open, at line 1.
    let path = write(
        dir,
        "ragged_first.jsonl",
        r#"{"query": "q", "docs": ["a"], "labels": [1, 0]}"#,
    );
    let error = source(&path).open().unwrap_err().to_string();
    assert_contains(
        &error,
        &["ragged_first.jsonl:1: column `docs` has 1 documents"],
    );

    let parquet = write_parquet(
        dir,
        "ragged.parquet",
        vec![
            ("query", strings(&["q1", "q2"])),
            ("docs", string_lists(&[&["a", "b"], &["c"]])),
            ("labels", float_lists(&[&[1.0, 0.0], &[1.0, 0.0]])),
        ],
    );
    assert_contains(
        &first_error(&source(&parquet)),
        &["ragged.parquet: row 2: column `docs` has 1 documents but label column `labels` has 2 values"],
    );
}

#[test]
fn column_selection_errors_list_the_columns_that_exist_in_every_format() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let files = [
        write(
            dir,
            "c.jsonl",
            "\n{\"query\": \"q\", \"passage\": \"p\", \"score\": 1}\n",
        ),
        write(dir, "c.csv", "query,passage,score\nq,p,1\n"),
        write(dir, "c.tsv", "query\tpassage\tscore\nq\tp\t1\n"),
        write_parquet(
            dir,
            "c.parquet",
            vec![
                ("query", strings(&["q"])),
                ("passage", strings(&["p"])),
                ("score", Arc::new(Float32Array::from(vec![1.0])) as ArrayRef),
            ],
        ),
    ];
    let positions = ["c.jsonl:2: ", "c.csv:1: ", "c.tsv:1: ", "c.parquet: "];
    for (path, position) in files.iter().zip(positions) {
        let error = first_error(&DataSource {
            columns: Some(names(&["query", "document"])),
            ..source(path)
        });
        assert_contains(
            &error,
            &[
                position,
                "`columns` names `document`, which is not a column of this file",
                "the columns are: query, passage, score",
            ],
        );
        let error = first_error(&DataSource {
            label: Some("relevance".to_string()),
            ..source(path)
        });
        assert_contains(
            &error,
            &[
                position,
                "label column `relevance` does not exist",
                "query, passage, score",
            ],
        );
    }
}

#[test]
fn empty_files_are_errors() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let cases = [
        (
            write(dir, "blank.jsonl", "\n  \n"),
            "one JSON object per line",
        ),
        (
            write(dir, "nothing.csv", ""),
            "a header row and at least one data row",
        ),
        (
            write(dir, "header.csv", "query,passage\n"),
            "a header row and at least one data row",
        ),
        (
            write_parquet(
                dir,
                "empty.parquet",
                vec![("query", strings(&[])), ("passage", strings(&[]))],
            ),
            "at least one row",
        ),
    ];
    for (path, expected) in cases {
        let error = first_error(&source(&path));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_contains(
            &error,
            &[&format!("{name}: no rows"), expected, "found none"],
        );
        assert!(count_rows(&source(&path)).is_err());
    }
    let headerless = DataSource {
        names: Some(names(&["a", "b"])),
        ..source(&dir.join("nothing.csv"))
    };
    assert_contains(&first_error(&headerless), &["at least one data row"]);
}

#[test]
fn csv_errors_name_the_line() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "short.csv",
            "query,passage,score\nq,p,1\nq,1\n",
            &["short.csv:3: expected 3 cells (query, passage, score from the header), found 2"],
        ),
        (
            "nan.csv",
            "query,passage,score\nq,p,1\nq,p,nan\n",
            &["nan.csv:3: label column `score`: expected a finite number, found \"nan\""],
        ),
        (
            "inf.tsv",
            "query\tpassage\tscore\nq\tp\tinf\n",
            &["inf.tsv:2: label column `score`: expected a finite number, found \"inf\""],
        ),
    ];
    for (name, contents, parts) in cases {
        let path = write(dir, name, contents);
        assert_contains(&first_error(&source(&path)), parts);
    }
}

#[test]
fn parquet_type_and_null_errors() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let numeric_input = write_parquet(
        dir,
        "numeric_input.parquet",
        vec![
            ("query", strings(&["q"])),
            ("doc_id", Arc::new(Int64Array::from(vec![7])) as ArrayRef),
        ],
    );
    assert_contains(
        &first_error(&source(&numeric_input)),
        &[
            "numeric_input.parquet: column `doc_id` has type Int64; expected text (a string column) or a list of strings",
            "`columns = [...]`",
        ],
    );
    let text_label = write_parquet(
        dir,
        "text_label.parquet",
        vec![("query", strings(&["q"])), ("label", strings(&["yes"]))],
    );
    assert_contains(
        &first_error(&source(&text_label)),
        &["text_label.parquet: label column `label` has type Utf8; expected numbers"],
    );
    let bad_values = write_parquet(
        dir,
        "bad_values.parquet",
        vec![
            (
                "query",
                Arc::new(StringArray::from(vec![Some("q1"), None, Some("q3")])) as ArrayRef,
            ),
            (
                "score",
                Arc::new(Float32Array::from(vec![1.0, 1.0, f32::NAN])) as ArrayRef,
            ),
        ],
    );
    let errors: Vec<String> = source(&bad_values)
        .open()
        .unwrap()
        .filter_map(|row| row.err().map(|error| error.to_string()))
        .collect();
    // The first error ends the stream.
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_contains(
        &errors[0],
        &["bad_values.parquet: row 2: column `query`: expected text, found null"],
    );
    let nan_only = write_parquet(
        dir,
        "nan.parquet",
        vec![
            ("query", strings(&["q1", "q2"])),
            (
                "score",
                Arc::new(Float32Array::from(vec![1.0, f32::NAN])) as ArrayRef,
            ),
        ],
    );
    assert_contains(
        &first_error(&source(&nan_only)),
        &["nan.parquet: row 2: label column `score`: expected a finite number, found NaN"],
    );
    let huge = write_parquet(
        dir,
        "huge.parquet",
        vec![
            ("query", strings(&["q1", "q2"])),
            (
                "score",
                Arc::new(arrow_array::Float64Array::from(vec![1.0, 1e308])) as ArrayRef,
            ),
        ],
    );
    let message = first_error(&source(&huge));
    assert_contains(
        &message,
        &["huge.parquet: row 2: label column `score`: expected a finite number, found 1e308, too large for a 32-bit float"],
    );
    assert!(message.len() < 300, "{message}");
    let garbage = write(dir, "garbage.parquet", "query,passage\n");
    assert_contains(
        &first_error(&source(&garbage)),
        &["garbage.parquet: not a readable Parquet file"],
    );
}

#[test]
fn a_large_jsonl_file_streams_row_by_row() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("large.jsonl");
    let rows = 200_000;
    {
        let mut writer = BufWriter::new(File::create(&path).unwrap());
        for index in 0..rows {
            writeln!(
                writer,
                r#"{{"query": "query {index}", "passage": "passage {index}", "score": {}}}"#,
                index % 2
            )
            .unwrap();
        }
    }
    let source = source(&path);
    assert_eq!(count_rows(&source).unwrap(), rows);
    let mut seen = 0;
    let mut positives = 0;
    for row in source.open().unwrap() {
        let row = row.unwrap();
        seen += 1;
        assert_eq!(row.line, seen);
        positives += usize::from(row.label == Some(Label::Scalar(1.0)));
    }
    assert_eq!(seen, rows);
    assert_eq!(positives, rows / 2);
}

#[test]
fn large_parquet_files_are_read_in_batches() {
    let directory = tempfile::tempdir().unwrap();
    // 2,500 rows span three batches of 1,024: row numbers continue across batches.
    let queries: Vec<String> = (0..2500).map(|index| format!("q{index}")).collect();
    let query_refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let path = write_parquet(
        directory.path(),
        "large.parquet",
        vec![
            ("query", strings(&query_refs)),
            ("passage", strings(&query_refs)),
        ],
    );
    let rows: Vec<Row> = source(&path)
        .open()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2500);
    assert_eq!(rows[2048].line, 2049);
    assert_eq!(rows[2048].fields[0], text("q2048"));
    assert_eq!(count_rows(&source(&path)).unwrap(), 2500);
}

/// Every test that sets environment variables lives here: they are process-global.
#[test]
fn hub_paths_resolve_through_the_hf_cache_offline() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("datasets--someone--pairs");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    // hf-hub reads the ref file verbatim: no trailing newline.
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    std::fs::write(repo.join("refs/v2"), "fedcba").unwrap();
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(snapshot.join("data")).unwrap();
    write(
        &snapshot.join("data"),
        "train.jsonl",
        "{\"query\": \"q\", \"passage\": \"p\", \"label\": 1}\n",
    );
    std::fs::create_dir_all(repo.join("snapshots/fedcba")).unwrap();
    write(
        &repo.join("snapshots/fedcba"),
        "train.csv",
        "query,passage,label\nq2,p2,0\n",
    );

    // A model repository (hf://OWNER/NAME/...) holding a data file.
    let model = cache.path().join("models--someone--reranker");
    std::fs::create_dir_all(model.join("refs")).unwrap();
    std::fs::write(model.join("refs/main"), commit).unwrap();
    std::fs::create_dir_all(model.join("snapshots").join(commit)).unwrap();
    write(
        &model.join("snapshots").join(commit),
        "eval.tsv",
        "query\tpassage\nq3\tp3\n",
    );

    let saved: Vec<(&str, Option<String>)> = ["HF_HUB_CACHE", "HF_HUB_OFFLINE"]
        .into_iter()
        .map(|name| (name, std::env::var(name).ok()))
        .collect();
    std::env::set_var("HF_HUB_CACHE", cache.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");

    let main = DataSource::new("hf://datasets/someone/pairs/data/train.jsonl", "/unused");
    let reader = main.open();
    let tagged = DataSource::new("hf://datasets/someone/pairs@v2/train.csv", "/unused");
    let read_rows = |source: &DataSource| {
        source.open().map(|reader| {
            reader
                .collect::<Result<Vec<_>, _>>()
                .map(|rows| cells(&rows))
        })
    };
    let tagged_rows = read_rows(&tagged);
    let from_model = read_rows(&DataSource::new(
        "hf://someone/reranker/eval.tsv",
        "/unused",
    ));
    let missing = DataSource::new("hf://datasets/someone/pairs/test.jsonl", "/unused").open();

    for (name, value) in saved {
        match value {
            Some(value) => std::env::set_var(name, value),
            None => std::env::remove_var(name),
        }
    }

    let reader = reader.unwrap();
    assert_eq!(reader.path(), snapshot.join("data/train.jsonl"));
    let rows: Vec<Row> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(
        cells(&rows),
        vec![(vec![text("q"), text("p")], Some(Label::Scalar(1.0)))]
    );
    assert_eq!(
        tagged_rows.unwrap().unwrap(),
        vec![(vec![text("q2"), text("p2")], Some(Label::Scalar(0.0)))]
    );
    assert_eq!(
        from_model.unwrap().unwrap(),
        vec![(vec![text("q3"), text("p3")], None)]
    );
    let error = missing.unwrap_err().to_string();
    assert_contains(
        &error,
        &[
            "hf://datasets/someone/pairs/test.jsonl: cannot get the data file from someone/pairs",
            "`test.jsonl` is not in the Hugging Face cache",
            "HF_HUB_OFFLINE is set",
            "point `path` at a local file",
        ],
    );
}
