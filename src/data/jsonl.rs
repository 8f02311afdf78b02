//! JSON Lines: one JSON object per line, read one line at a time.
//!
//! The columns are the keys of the first row, in their order in the file (serde_json keeps key
//! order). Strings are texts, arrays of strings are document lists; in the label column numbers
//! and booleans are labels and arrays of them are label lists. Blank lines are skipped.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::columns::{self, ColumnOptions, Selection};
use super::row::{empty_file_error, finite_label, Field, Label, Place, Problem, Row, RowShape};
use crate::error::{Error, Result};

/// A JSONL file read one non-blank line at a time.
struct Lines {
    path: PathBuf,
    reader: BufReader<File>,
    /// The last line read.
    line: String,
    /// The 1-based number of the last line read.
    line_number: usize,
}

impl Lines {
    /// Read the next non-blank line into `self.line`; `false` at the end of the file.
    fn next_line(&mut self) -> Result<bool> {
        loop {
            self.line.clear();
            let read = self.reader.read_line(&mut self.line);
            self.line_number += 1;
            match read {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(source) if source.kind() == std::io::ErrorKind::InvalidData => {
                    return Err(Error::input(
                        &self.path,
                        Some(self.line_number),
                        "expected UTF-8 text, found bytes that are not valid UTF-8",
                    )
                    .with_hint("re-encode the file as UTF-8"));
                }
                Err(source) => return Err(Error::io("cannot read", &self.path, source)),
            }
            if self.line_number == 1 && self.line.starts_with('\u{feff}') {
                self.line.drain(..'\u{feff}'.len_utf8());
            }
            if !self.line.trim().is_empty() {
                return Ok(true);
            }
        }
    }

    /// Count the non-blank lines left, without decoding them.
    fn count_remaining(mut self) -> Result<usize> {
        let mut count = 0;
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            let read = self
                .reader
                .read_until(b'\n', &mut bytes)
                .map_err(|source| Error::io("cannot read", &self.path, source))?;
            if read == 0 {
                return Ok(count);
            }
            if !bytes.iter().all(u8::is_ascii_whitespace) {
                count += 1;
            }
        }
    }
}

/// Rows of a JSONL file; the first one is read (and checked) by [`JsonlRows::open`].
pub(crate) struct JsonlRows {
    lines: Lines,
    selection: Selection,
    shape: RowShape,
    first: Option<Row>,
}

impl JsonlRows {
    /// Read up to the first row, choose the columns from its keys, and check it.
    pub(crate) fn open(file: File, path: &Path, options: &ColumnOptions<'_>) -> Result<Self> {
        let mut lines = Lines {
            path: path.to_path_buf(),
            reader: BufReader::new(file),
            line: String::new(),
            line_number: 0,
        };
        if !lines.next_line()? {
            return Err(empty_file_error(path, "one JSON object per line"));
        }
        let place = Place::Line(lines.line_number);
        let first_row = || -> Result<(Selection, RowShape, Row), Problem> {
            let object = parse_object(&lines.line)?;
            let keys: Vec<String> = object.keys().cloned().collect();
            let selection = columns::select(&keys, options.columns, options.label)?;
            let row = build_row(object, &selection, place)?;
            let shape = RowShape::of_first(&row, place);
            shape.check(&row, &selection.inputs, selection.label.as_deref())?;
            Ok((selection, shape, row))
        };
        let (selection, shape, row) = first_row().map_err(|problem| place.error(path, problem))?;
        Ok(JsonlRows {
            lines,
            selection,
            shape,
            first: Some(row),
        })
    }

    pub(crate) fn selection(&self) -> &Selection {
        &self.selection
    }

    fn read_row(&mut self) -> Result<Option<Row>> {
        if !self.lines.next_line()? {
            return Ok(None);
        }
        let place = Place::Line(self.lines.line_number);
        let row = parse_object(&self.lines.line)
            .and_then(|object| build_row(object, &self.selection, place))
            .and_then(|row| {
                self.shape
                    .check(
                        &row,
                        &self.selection.inputs,
                        self.selection.label.as_deref(),
                    )
                    .map(|()| row)
            })
            .map_err(|problem| place.error(&self.lines.path, problem))?;
        Ok(Some(row))
    }

    /// Count the rows left (non-blank lines), without parsing them.
    pub(crate) fn count_remaining(self) -> Result<usize> {
        Ok(usize::from(self.first.is_some()) + self.lines.count_remaining()?)
    }
}

impl Iterator for JsonlRows {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Result<Row>> {
        if let Some(row) = self.first.take() {
            return Some(Ok(row));
        }
        self.read_row().transpose()
    }
}

/// One line as a JSON object.
fn parse_object(line: &str) -> Result<Map<String, Value>, Problem> {
    let line = line.trim_end_matches(['\n', '\r']);
    let value: Value = serde_json::from_str(line).map_err(|error| {
        // serde_json's message ends with " at line 1 column N": the line is ours to report.
        let message = error.to_string();
        let message = message
            .rfind(" at line ")
            .map_or(message.as_str(), |end| &message[..end]);
        let trimmed = line.trim();
        let hint = if trimmed == "[" || trimmed == "{" || trimmed.starts_with("[{") {
            "this looks like one JSON document spread over lines or a JSON array; \
             write one object per line (JSON Lines)"
        } else {
            "each line must hold one complete JSON object (JSON Lines)"
        };
        Problem::new(
            format!(
                "invalid JSON at column {}: {message}; expected one JSON object",
                error.column()
            ),
            hint,
        )
    })?;
    match value {
        Value::Object(object) => Ok(object),
        other => Err(Problem::new(
            format!("expected a JSON object, found {}", describe(&other)),
            r#"write one object per line, e.g. {"query": "...", "passage": "...", "score": 1.0}"#,
        )),
    }
}

/// The row for `object`: its selected input cells and its label (moved out of `object`).
fn build_row(
    mut object: Map<String, Value>,
    selection: &Selection,
    place: Place,
) -> Result<Row, Problem> {
    check_keys(&object, selection)?;
    let mut take = |name: &str| {
        object
            .get_mut(name)
            .map(Value::take)
            .expect("check_keys found every selected key")
    };
    let fields = selection
        .inputs
        .iter()
        .map(|name| field(name, take(name)))
        .collect::<Result<Vec<_>, _>>()?;
    let label = match &selection.label {
        Some(name) => Some(label(name, &take(name))?),
        None => None,
    };
    Ok(Row {
        line: place.number(),
        fields,
        label,
    })
}

/// Check that `object` has every selected key.
fn check_keys(object: &Map<String, Value>, selection: &Selection) -> Result<(), Problem> {
    let missing = |name: &str, what: &str, hint: String| {
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        Problem::new(
            format!(
                "row has no `{name}` key; expected {what} (found keys: {})",
                keys.join(", ")
            ),
            hint,
        )
    };
    if let Some(name) = selection
        .inputs
        .iter()
        .find(|name| !object.contains_key(name.as_str()))
    {
        return Err(missing(
            name,
            &format!("the input columns {}", selection.inputs.join(", ")),
            format!(
                "add `{name}` to every row, or choose the input columns with `columns = [...]`"
            ),
        ));
    }
    match &selection.label {
        Some(name) if !object.contains_key(name) => Err(missing(
            name,
            &format!("the label column `{name}`"),
            format!(
                "add `{name}` to every row, or set `label` to the column that holds the labels"
            ),
        )),
        _ => Ok(()),
    }
}

fn field(column: &str, value: Value) -> Result<Field, Problem> {
    match value {
        Value::String(text) => Ok(Field::Text(text)),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(text) => Ok(text),
                other => Err(Problem::new(
                    format!(
                        "column `{column}`: expected a list of strings, found {} at index {index}",
                        describe(&other)
                    ),
                    "make every document a JSON string",
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Field::List),
        other => {
            let hint = match other {
                Value::Object(_) => {
                    "nested objects are not inputs: flatten them into text columns, or leave the \
                     column out with `columns = [...]`"
                }
                Value::Null => "give every row a text here, or remove the rows without one",
                _ => "quote the value to make it text, or leave the column out with `columns = [...]`",
            };
            Err(Problem::new(
                format!(
                    "column `{column}`: expected text (a JSON string) or a list of strings, found {}",
                    describe(&other)
                ),
                hint,
            ))
        }
    }
}

fn label(column: &str, value: &Value) -> Result<Label, Problem> {
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                number(item).ok_or_else(|| {
                    Problem::new(
                        format!(
                            "label column `{column}`: expected a list of finite numbers, found {} at index {index}",
                            describe(item)
                        ),
                        "write every label as a JSON number (or true/false)",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Label::List),
        other => number(other).map(Label::Scalar).ok_or_else(|| {
            Problem::new(
                format!(
                    "label column `{column}`: expected a finite number or a list of them, found {}",
                    describe(other)
                ),
                "write labels as JSON numbers without quotes (true/false count as 1/0), \
                 or set `label` to the column that holds them",
            )
        }),
    }
}

/// A JSON number or boolean as a finite `f32`.
fn number(value: &Value) -> Option<f32> {
    match value {
        Value::Number(number) => number.as_f64().and_then(finite_label),
        Value::Bool(flag) => Some(if *flag { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// A JSON value in a message: its kind, and its value when short.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(flag) => format!("the boolean {flag}"),
        Value::Number(number) if number.as_f64().and_then(finite_label).is_none() => {
            format!("the number {number}, too large for a 32-bit float")
        }
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) => {
            let mut shown: String = text.chars().take(40).collect();
            if shown.len() < text.len() {
                shown.push('…');
            }
            format!("the string {shown:?}")
        }
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}
