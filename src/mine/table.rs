//! A column-oriented table of mined or converted rows, written as JSON Lines or Parquet (by the
//! output file's extension), readable back by [`crate::data`] and so by `train`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Float32Builder, Int64Builder, ListBuilder, StringBuilder};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field as ArrowField, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::ser::{SerializeMap, Serializer};

use crate::data::Format;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic_with;

/// The cells of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// One text per row.
    Text(Vec<String>),
    /// A list of texts per row (the documents of a labeled-list row).
    TextList(Vec<Vec<String>>),
    /// One integer per row (0/1 labels).
    Int(Vec<i64>),
    /// A list of integers per row (the 0/1 labels of a labeled-list row).
    IntList(Vec<Vec<i64>>),
    /// One number per row (a score).
    Float(Vec<f32>),
    /// A list of numbers per row (scores, labels of a list).
    FloatList(Vec<Vec<f32>>),
}

impl Values {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Values::Text(v) => v.len(),
            Values::TextList(v) => v.len(),
            Values::Int(v) => v.len(),
            Values::IntList(v) => v.len(),
            Values::Float(v) => v.len(),
            Values::FloatList(v) => v.len(),
        }
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn arrow(&self) -> (DataType, ArrayRef) {
        match self {
            Values::Text(values) => {
                let mut builder = StringBuilder::new();
                values.iter().for_each(|v| builder.append_value(v));
                (DataType::Utf8, Arc::new(builder.finish()))
            }
            Values::TextList(values) => {
                let mut builder = ListBuilder::new(StringBuilder::new());
                for row in values {
                    row.iter().for_each(|v| builder.values().append_value(v));
                    builder.append(true);
                }
                let array = builder.finish();
                (array.data_type().clone(), Arc::new(array))
            }
            Values::Int(values) => {
                let mut builder = Int64Builder::new();
                builder.append_slice(values);
                (DataType::Int64, Arc::new(builder.finish()))
            }
            Values::IntList(values) => {
                let mut builder = ListBuilder::new(Int64Builder::new());
                for row in values {
                    builder.values().append_slice(row);
                    builder.append(true);
                }
                let array = builder.finish();
                (array.data_type().clone(), Arc::new(array))
            }
            Values::Float(values) => {
                let mut builder = Float32Builder::new();
                builder.append_slice(values);
                (DataType::Float32, Arc::new(builder.finish()))
            }
            Values::FloatList(values) => {
                let mut builder = ListBuilder::new(Float32Builder::new());
                for row in values {
                    builder.values().append_slice(row);
                    builder.append(true);
                }
                let array = builder.finish();
                (array.data_type().clone(), Arc::new(array))
            }
        }
    }
}

/// A named column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The column name (a JSON key, a Parquet field).
    pub name: String,
    /// The cells.
    pub values: Values,
}

impl Column {
    /// A column.
    pub fn new(name: impl Into<String>, values: Values) -> Self {
        Self {
            name: name.into(),
            values,
        }
    }
}

/// Columns of equal length with distinct names.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    columns: Vec<Column>,
    rows: usize,
}

/// One row of a table, serialised as a JSON object in column order.
struct RowView<'a> {
    table: &'a Table,
    row: usize,
}

impl serde::Serialize for RowView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.table.columns.len()))?;
        for column in &self.table.columns {
            let row = self.row;
            match &column.values {
                Values::Text(v) => map.serialize_entry(&column.name, &v[row])?,
                Values::TextList(v) => map.serialize_entry(&column.name, &v[row])?,
                Values::Int(v) => map.serialize_entry(&column.name, &v[row])?,
                Values::IntList(v) => map.serialize_entry(&column.name, &v[row])?,
                Values::Float(v) => map.serialize_entry(&column.name, &v[row])?,
                Values::FloatList(v) => map.serialize_entry(&column.name, &v[row])?,
            }
        }
        map.end()
    }
}

impl Table {
    /// A table from columns; they must be non-empty in number, equal in length and distinctly
    /// named.
    pub fn new(columns: Vec<Column>) -> Result<Self> {
        let Some(first) = columns.first() else {
            return Err(Error::invalid(
                "a table needs at least one column, found none",
            ));
        };
        let rows = first.values.len();
        for (index, column) in columns.iter().enumerate() {
            if column.values.len() != rows {
                return Err(Error::invalid(format!(
                    "column `{}` has {} rows but `{}` has {rows}",
                    column.name,
                    column.values.len(),
                    first.name
                )));
            }
            if columns[..index].iter().any(|c| c.name == column.name) {
                return Err(Error::invalid(format!(
                    "column `{}` appears twice",
                    column.name
                )));
            }
        }
        Ok(Self { columns, rows })
    }

    /// The columns, in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The column names, in order.
    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Values> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.values)
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.rows
    }

    /// Row `row` as a JSON object (column order kept).
    pub fn json_row(&self, row: usize) -> serde_json::Value {
        serde_json::to_value(RowView { table: self, row })
            .expect("strings and finite numbers always serialise")
    }

    /// Write the rows to `path`, atomically: JSON Lines for `.jsonl`/`.json`/`.ndjson`, Parquet
    /// (snappy) for `.parquet`. Scores are written as `f32` (shortest round-trip decimal in
    /// JSON).
    pub fn write(&self, path: &Path) -> Result<()> {
        match Format::from_path(path)? {
            Format::Jsonl => self.write_jsonl(path),
            Format::Parquet => self.write_parquet(path),
            other => Err(Error::input(
                path,
                None,
                format!("cannot write {other} output; expected a .jsonl or .parquet file"),
            )
            .with_hint("name the output file *.jsonl or *.parquet")),
        }
    }

    fn write_jsonl(&self, path: &Path) -> Result<()> {
        write_atomic_with(path, |file| {
            let mut writer = std::io::BufWriter::new(file);
            for row in 0..self.rows {
                serde_json::to_writer(&mut writer, &RowView { table: self, row })?;
                writer.write_all(b"\n")?;
            }
            writer.flush()
        })
    }

    fn write_parquet(&self, path: &Path) -> Result<()> {
        let mut fields = Vec::with_capacity(self.columns.len());
        let mut arrays = Vec::with_capacity(self.columns.len());
        for column in &self.columns {
            let (data_type, array) = column.values.arrow();
            fields.push(ArrowField::new(&column.name, data_type, false));
            arrays.push(array);
        }
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), arrays)
            .map_err(|e| Error::invalid(format!("cannot build the Parquet columns: {e}")))?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        write_atomic_with(path, |file| {
            let mut writer = ArrowWriter::try_new(file, schema, Some(properties))
                .map_err(std::io::Error::other)?;
            writer.write(&batch).map_err(std::io::Error::other)?;
            writer.close().map_err(std::io::Error::other)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DataSource, Field, Label};

    fn table() -> Table {
        Table::new(vec![
            Column::new("query", Values::Text(vec!["q1".into(), "q2".into()])),
            Column::new(
                "answer",
                Values::TextList(vec![vec!["a".into(), "b".into()], vec!["c".into()]]),
            ),
            Column::new("scores", Values::FloatList(vec![vec![0.1, 0.7], vec![0.3]])),
        ])
        .unwrap()
    }

    #[test]
    fn mismatched_or_duplicate_columns_are_errors() {
        let short = Table::new(vec![
            Column::new("a", Values::Int(vec![1, 0])),
            Column::new("b", Values::Int(vec![1])),
        ]);
        assert!(short
            .unwrap_err()
            .to_string()
            .contains("`b` has 1 rows but `a` has 2"));
        let twice = Table::new(vec![
            Column::new("a", Values::Int(vec![1])),
            Column::new("a", Values::Int(vec![1])),
        ]);
        assert!(twice.unwrap_err().to_string().contains("appears twice"));
    }

    #[test]
    fn jsonl_keeps_column_order_and_short_f32_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        table().write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"query\":\"q1\",\"answer\":[\"a\",\"b\"],\"scores\":[0.1,0.7]}\n\
             {\"query\":\"q2\",\"answer\":[\"c\"],\"scores\":[0.3]}\n"
        );
        assert_eq!(table().json_row(1)["answer"], serde_json::json!(["c"]));
    }

    /// Both files read back through the crate's data readers (what `train` uses).
    #[test]
    fn jsonl_and_parquet_read_back_through_the_data_readers() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["out.jsonl", "out.parquet"] {
            table().write(&dir.path().join(name)).unwrap();
            let reader = DataSource::new(name, dir.path()).open().unwrap();
            assert_eq!(reader.input_columns(), ["query", "answer"]);
            assert_eq!(reader.label_column(), Some("scores"));
            let rows: Vec<_> = reader.map(|row| row.unwrap()).collect();
            assert_eq!(rows.len(), 2);
            assert_eq!(rows[0].fields[0], Field::Text("q1".into()));
            assert_eq!(rows[0].fields[1], Field::List(vec!["a".into(), "b".into()]));
            assert_eq!(rows[1].label, Some(Label::List(vec![0.3])));
        }
        let error = table()
            .write(&dir.path().join("out.csv"))
            .unwrap_err()
            .to_string();
        assert!(error.contains(".jsonl or .parquet"), "{error}");
    }
}
