//! What the data targets share: one scratch directory per process, and reading a file through
//! `crossdistill::data`'s public API the way the trainer does.

// Each target uses a part of this file.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use crossdistill::data::{count_rows, DataSource, Field, Label, Row};

/// A directory that lives as long as the fuzzing process.
pub fn scratch() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
        .path()
}

/// Write `bytes` to `scratch()/name`.
pub fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, bytes).expect("the scratch directory is writable");
    path
}

/// Column options picked by the bits of `flags`, so the fuzzer explores them too.
pub fn source(name: &str, flags: u8) -> DataSource {
    let mut source = DataSource::new(name, scratch());
    if flags & 1 != 0 {
        source.columns = Some(vec!["query".into(), "passage".into()]);
    }
    if flags & 2 != 0 {
        source.label = Some("score".into());
    }
    if flags & 4 != 0 {
        source.names = Some(vec!["query".into(), "passage".into(), "score".into()]);
    }
    source
}

/// Open `source` and read every row. Must never panic. When every row reads, the rows must
/// satisfy the reader's contract and `count_rows` must agree with the number read.
pub fn read_all(source: &DataSource) {
    let Ok(reader) = source.open() else {
        return;
    };
    let inputs = reader.input_columns().len();
    let mut rows = 0usize;
    for row in reader {
        match row {
            Ok(row) => {
                check_row(&row, inputs);
                rows += 1;
            }
            Err(error) => {
                // Errors render without panicking and name the file.
                let text = error.to_string();
                assert!(!text.is_empty());
                return;
            }
        }
    }
    let counted = count_rows(source).expect("a file that reads also counts");
    assert_eq!(counted, rows, "count_rows disagrees with the rows read");
}

fn check_row(row: &Row, inputs: usize) {
    assert_eq!(
        row.fields.len(),
        inputs,
        "a row has one field per input column"
    );
    assert!(row.line >= 1, "rows are numbered from 1");
    match &row.label {
        Some(Label::Scalar(value)) => assert!(value.is_finite(), "labels are finite"),
        Some(Label::List(values)) => {
            assert!(values.iter().all(|v| v.is_finite()), "labels are finite");
            let documents: Vec<usize> = row
                .fields
                .iter()
                .filter_map(Field::as_list)
                .map(<[String]>::len)
                .collect();
            if let Some(&documents) = documents.first() {
                assert_eq!(documents, values.len(), "one label per document");
            }
        }
        None => {}
    }
}
