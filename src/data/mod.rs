//! Training and evaluation rows, streamed from JSONL, CSV/TSV and Parquet files.
//!
//! Rows follow sentence-transformers' column conventions (`CrossEncoderDataCollator.__call__`
//! in `cross_encoder/data_collator.py`): the inputs
//! are the file's columns in order with the label column removed, column 0 is the query/anchor,
//! and the label column is the first found among `label`, `labels`, `score`, `scores` (or the one
//! a recipe names). A column whose cells are lists of strings holds the documents of a
//! `(query, [docs])` row; a list-valued label gives one label per document.
//!
//! Files are never loaded whole: [`DataSource::open`] returns a [`RowReader`] that reads one line
//! (JSONL), one record (CSV/TSV) or one batch of about a thousand rows (Parquet) at a time, so
//! memory stays flat however large the file. Every row is checked as it is read; problems come
//! back as [`Error`](crate::error::Error)s that name the file, the line, what was expected, what
//! was found and how to fix it.
//!
//! ```no_run
//! use crossdistill::data::{DataSource, Field};
//!
//! let source = DataSource::new("train.jsonl", "recipes");
//! let reader = source.open()?;
//! println!("inputs {:?}, label {:?}", reader.input_columns(), reader.label_column());
//! for row in reader {
//!     let row = row?;
//!     if let Field::Text(query) = &row.fields[0] {
//!         println!("line {}: {query}", row.line);
//!     }
//! }
//! # Ok::<(), crossdistill::error::Error>(())
//! ```

mod columns;
mod csv;
mod jsonl;
mod lines;
mod parquet;
mod row;
mod source;
mod write;

pub use columns::LABEL_COLUMN_CANDIDATES;
pub use lines::{numbered_lines, BYTE_ORDER_MARK};
pub use row::{Field, Label, Row};
pub use source::{count_rows, DataSource, Format, RowReader};
pub use write::write_jsonl_atomic;

#[cfg(test)]
mod tests;
