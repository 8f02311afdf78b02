//! Parquet: Arrow record batches of about a thousand rows, only the needed columns decoded.
//!
//! Column types decide cell kinds: string columns (`Utf8`, `LargeUtf8`, `Utf8View`) are texts,
//! lists of strings are document lists; in the label column numbers and booleans are labels and
//! lists of them are label lists. Types are checked once, against the schema, when the file is
//! opened; nulls are reported at the row that holds them.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;

use super::columns::{self, ColumnOptions, Selection};
use super::row::{
    describe_bad_label, empty_file_error, file_error, finite_label, Field, Label, Place, Problem,
    Row, RowShape,
};
use crate::error::{Error, Result};

thread_local! {
    /// Set while this thread runs the Parquet reader under [`without_panics`].
    static IN_PARQUET_READER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `read` (a call into the parquet crate) and turn a panic into an error naming the file.
/// The parquet crate panics on some damaged files (negative column offsets in the footer, found
/// by fuzz/fuzz_targets/parquet.rs) instead of returning an error; a bad file must not crash a
/// run. The panic message is kept out of stderr: the error says it all.
fn without_panics<T>(path: &Path, read: impl FnOnce() -> T) -> Result<T> {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_PARQUET_READER.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    IN_PARQUET_READER.with(|flag| flag.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    IN_PARQUET_READER.with(|flag| flag.set(false));
    result.map_err(|payload| {
        Error::input(
            path,
            None,
            format!(
                "not a readable Parquet file: the Parquet reader stopped on damaged data ({})",
                payload
                    .downcast_ref::<&str>()
                    .map(|text| text.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".to_string())
            ),
        )
        .with_hint("check that the file is Parquet, complete, and not corrupted")
    })
}

/// Rows per decoded batch: large enough to amortise decoding, small enough to keep memory flat.
const BATCH_SIZE: usize = 1024;

/// Rows of a Parquet file, decoded one record batch at a time.
pub(crate) struct ParquetRows {
    path: PathBuf,
    batches: ParquetRecordBatchReader,
    selection: Selection,
    /// Whether each input column holds lists of strings (else strings).
    inputs_are_lists: Vec<bool>,
    /// The current batch's input arrays (in selection order) and label array.
    inputs: Vec<ArrayRef>,
    label: Option<ArrayRef>,
    batch_rows: usize,
    /// The next row of the current batch to hand out.
    next_in_batch: usize,
    /// Rows handed out before the current batch.
    rows_before_batch: usize,
    /// Rows in the file, from its metadata.
    total_rows: usize,
    /// Text or list per input column, number or list label: fixed by the schema.
    shape: RowShape,
}

impl ParquetRows {
    /// Read the footer, choose the columns from the schema, check their types, and project them.
    pub(crate) fn open(file: File, path: &Path, options: &ColumnOptions<'_>) -> Result<Self> {
        without_panics(path, || Self::open_file(file, path, options))?
    }

    fn open_file(file: File, path: &Path, options: &ColumnOptions<'_>) -> Result<Self> {
        // The column types come from the Parquet schema alone: the Arrow schema some writers embed
        // (`ARROW:schema`) is skipped, as arrow-ipc panics on a damaged one instead of returning
        // an error (found by fuzz/fuzz_targets/parquet.rs), and the readable types are the same.
        let reader_options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
        let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, reader_options)
            .map_err(|error| {
            Error::input(path, None, format!("not a readable Parquet file: {error}"))
                .with_hint("check that the file is Parquet, complete, and not corrupted")
        })?;
        let total_rows =
            usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        if total_rows == 0 {
            return Err(empty_file_error(path, "at least one row"));
        }
        let schema = builder.schema().clone();
        let available: Vec<String> = schema
            .fields()
            .iter()
            .map(|field| field.name().clone())
            .collect();
        let selection = columns::select(&available, options.columns, options.label)
            .map_err(|problem| file_error(path, problem))?;

        let mut inputs_are_lists = Vec::with_capacity(selection.inputs.len());
        for (&index, name) in selection.input_indices.iter().zip(&selection.inputs) {
            let data_type = schema.field(index).data_type();
            inputs_are_lists.push(input_is_list(data_type).ok_or_else(|| {
                file_error(
                    path,
                    Problem::new(
                        format!(
                            "column `{name}` has type {data_type}; expected text (a string column) \
                             or a list of strings"
                        ),
                        "store inputs as strings, or leave the column out with `columns = [...]`",
                    ),
                )
            })?);
        }
        let mut label_is_list = None;
        if let (Some(index), Some(name)) = (selection.label_index, &selection.label) {
            let data_type = schema.field(index).data_type();
            label_is_list = Some(list_element(data_type).is_some());
            if !is_label_type(data_type) {
                return Err(file_error(
                    path,
                    Problem::new(
                        format!(
                            "label column `{name}` has type {data_type}; expected numbers, \
                             booleans, or lists of them"
                        ),
                        "store labels as numbers, or set `label` to the column that holds them",
                    ),
                ));
            }
        }

        // The Arrow schema's top-level fields are the Parquet schema's roots, in order.
        let mut roots: Vec<usize> = selection
            .input_indices
            .iter()
            .copied()
            .chain(selection.label_index)
            .collect();
        roots.sort_unstable();
        roots.dedup();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let batches = builder
            .with_projection(mask)
            .with_batch_size(BATCH_SIZE)
            .build()
            .map_err(|error| {
                Error::input(path, None, format!("cannot read the Parquet file: {error}"))
            })?;
        let shape = RowShape::new(Place::Row(1), inputs_are_lists.clone(), label_is_list);
        Ok(ParquetRows {
            path: path.to_path_buf(),
            batches,
            selection,
            inputs_are_lists,
            inputs: Vec::new(),
            label: None,
            batch_rows: 0,
            next_in_batch: 0,
            rows_before_batch: 0,
            total_rows,
            shape,
        })
    }

    pub(crate) fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Rows not yet handed out, from the file's metadata.
    pub(crate) fn count_remaining(&self) -> usize {
        self.total_rows
            .saturating_sub(self.rows_before_batch + self.next_in_batch)
    }

    /// Decode the next batch; `false` at the end of the file.
    fn next_batch(&mut self) -> Result<bool> {
        let first_row = self.rows_before_batch + self.batch_rows + 1;
        let batches = &mut self.batches;
        let batch: RecordBatch = match without_panics(&self.path, || batches.next())? {
            None if first_row <= self.total_rows => {
                // A damaged footer can promise rows its row groups do not hold (found by
                // fuzz/fuzz_targets/parquet.rs): losing them silently is not an option.
                return Err(Error::input(
                    &self.path,
                    None,
                    format!(
                        "the file's footer says it has {} rows, but its row groups hold {}",
                        self.total_rows,
                        first_row - 1
                    ),
                )
                .with_hint("check that the file is complete and not corrupted"));
            }
            None => return Ok(false),
            Some(Ok(batch)) if first_row - 1 + batch.num_rows() > self.total_rows => {
                return Err(Error::input(
                    &self.path,
                    None,
                    format!(
                        "the file's footer says it has {} rows, but its row groups hold more",
                        self.total_rows
                    ),
                )
                .with_hint("check that the file is complete and not corrupted"));
            }
            Some(Ok(batch)) => batch,
            Some(Err(error)) => {
                return Err(Error::input(
                    &self.path,
                    None,
                    format!("cannot decode the rows from row {first_row} on: {error}"),
                )
                .with_hint("check that the file is complete and not corrupted"))
            }
        };
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .expect("every selected column was projected into the batch")
        };
        self.inputs = self
            .selection
            .inputs
            .iter()
            .map(|name| column(name))
            .collect();
        self.label = self.selection.label.as_deref().map(column);
        self.rows_before_batch += self.batch_rows;
        self.batch_rows = batch.num_rows();
        self.next_in_batch = 0;
        Ok(true)
    }

    /// Row `index` of the current batch.
    fn row(&self, index: usize, place: Place) -> Result<Row, Problem> {
        let mut fields = Vec::with_capacity(self.inputs.len());
        for ((array, &is_list), name) in self
            .inputs
            .iter()
            .zip(&self.inputs_are_lists)
            .zip(&self.selection.inputs)
        {
            fields.push(input_cell(array, is_list, index, name)?);
        }
        let label = match (&self.label, &self.selection.label) {
            (Some(array), Some(name)) => Some(label_cell(array, index, name)?),
            _ => None,
        };
        let row = Row {
            line: place.number(),
            fields,
            label,
        };
        self.shape.check(
            &row,
            &self.selection.inputs,
            self.selection.label.as_deref(),
        )?;
        Ok(row)
    }
}

impl Iterator for ParquetRows {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Result<Row>> {
        while self.next_in_batch >= self.batch_rows {
            match self.next_batch() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(error) => return Some(Err(error)),
            }
        }
        let index = self.next_in_batch;
        self.next_in_batch += 1;
        let place = Place::Row(self.rows_before_batch + index + 1);
        Some(
            self.row(index, place)
                .map_err(|problem| place.error(&self.path, problem)),
        )
    }
}

fn is_text_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// The types [`number_at`] reads.
fn is_number_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float16
            | DataType::Float32
            | DataType::Float64
    )
}

/// The element type of a list type, `None` for other types.
fn list_element(data_type: &DataType) -> Option<&DataType> {
    match data_type {
        DataType::List(element)
        | DataType::LargeList(element)
        | DataType::FixedSizeList(element, _) => Some(element.data_type()),
        _ => None,
    }
}

/// `Some(false)` for a text column, `Some(true)` for a list of texts, `None` otherwise.
fn input_is_list(data_type: &DataType) -> Option<bool> {
    if is_text_type(data_type) {
        Some(false)
    } else {
        list_element(data_type)
            .filter(|element| is_text_type(element))
            .map(|_| true)
    }
}

fn is_label_type(data_type: &DataType) -> bool {
    is_number_type(data_type) || list_element(data_type).is_some_and(is_number_type)
}

/// Element `index` of a list array, as an array.
fn list_at(array: &dyn Array, index: usize) -> ArrayRef {
    match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().value(index),
        DataType::LargeList(_) => array.as_list::<i64>().value(index),
        DataType::FixedSizeList(..) => array.as_fixed_size_list().value(index),
        other => unreachable!("list types are checked when the file is opened, found {other}"),
    }
}

/// Element `index` of a string array; `None` when it is null.
fn text_at(array: &dyn Array, index: usize) -> Option<String> {
    if array.is_null(index) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(index).to_string(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(index).to_string(),
        DataType::Utf8View => array.as_string_view().value(index).to_string(),
        other => unreachable!("text types are checked when the file is opened, found {other}"),
    })
}

/// Element `index` of a numeric or boolean array as `f64`; `None` when it is null.
fn number_at(array: &dyn Array, index: usize) -> Option<f64> {
    if array.is_null(index) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Boolean => f64::from(u8::from(array.as_boolean().value(index))),
        DataType::Int8 => f64::from(array.as_primitive::<Int8Type>().value(index)),
        DataType::Int16 => f64::from(array.as_primitive::<Int16Type>().value(index)),
        DataType::Int32 => f64::from(array.as_primitive::<Int32Type>().value(index)),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(index) as f64,
        DataType::UInt8 => f64::from(array.as_primitive::<UInt8Type>().value(index)),
        DataType::UInt16 => f64::from(array.as_primitive::<UInt16Type>().value(index)),
        DataType::UInt32 => f64::from(array.as_primitive::<UInt32Type>().value(index)),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(index) as f64,
        DataType::Float16 => array.as_primitive::<Float16Type>().value(index).to_f64(),
        DataType::Float32 => f64::from(array.as_primitive::<Float32Type>().value(index)),
        DataType::Float64 => array.as_primitive::<Float64Type>().value(index),
        other => unreachable!("label types are checked when the file is opened, found {other}"),
    })
}

fn input_cell(array: &ArrayRef, is_list: bool, index: usize, name: &str) -> Result<Field, Problem> {
    let null = |what: &str| {
        Problem::new(
            format!("column `{name}`: expected {what}, found null"),
            "fill the nulls, or drop those rows",
        )
    };
    if !is_list {
        return text_at(array, index)
            .map(Field::Text)
            .ok_or_else(|| null("text"));
    }
    if array.is_null(index) {
        return Err(null("a list of strings"));
    }
    let items = list_at(array, index);
    (0..items.len())
        .map(|item| {
            text_at(&items, item).ok_or_else(|| {
                Problem::new(
                    format!(
                        "column `{name}`: expected a list of strings, found null at index {item}"
                    ),
                    "fill the nulls, or drop those documents",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Field::List)
}

fn label_cell(array: &ArrayRef, index: usize, name: &str) -> Result<Label, Problem> {
    let not_finite = |found: String| {
        Problem::new(
            format!("label column `{name}`: expected a finite number, found {found}"),
            "fill nulls and replace NaN/infinite labels, or drop those rows",
        )
    };
    let finite = |array: &dyn Array, index: usize| match number_at(array, index) {
        None => Err(not_finite("null".to_string())),
        Some(value) => finite_label(value).ok_or_else(|| not_finite(describe_bad_label(value))),
    };
    if list_element(array.data_type()).is_none() {
        return finite(array, index).map(Label::Scalar);
    }
    if array.is_null(index) {
        return Err(not_finite("null instead of a list".to_string()));
    }
    let items = list_at(array, index);
    (0..items.len())
        .map(|item| {
            finite(&items, item).map_err(|problem| Problem {
                message: format!("{} at index {item}", problem.message),
                ..problem
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Label::List)
}
