//! One data row, and the checks every format applies to it.

use std::path::Path;

use crate::error::Error;

/// One input cell of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A text: a query, a passage, one side of a pair.
    Text(String),
    /// A list of texts: the documents of a `(query, [docs])` row.
    List(Vec<String>),
}

impl Field {
    /// The text, when this cell is one.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Field::Text(text) => Some(text),
            Field::List(_) => None,
        }
    }

    /// The texts, when this cell is a list.
    pub fn as_list(&self) -> Option<&[String]> {
        match self {
            Field::Text(_) => None,
            Field::List(texts) => Some(texts),
        }
    }

    /// "text" or "a list of N texts", for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Field::Text(_) => "text".to_string(),
            Field::List(texts) => format!("a list of {} texts", texts.len()),
        }
    }
}

/// The label cell of a row. Integer and boolean labels become `f32` (`true` = 1, `false` = 0);
/// every value is finite.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    /// One number: a relevance score, a class id, a 0/1 label.
    Scalar(f32),
    /// One number per document of a `(query, [docs])` row, or one score per input column after
    /// the first (MarginMSE's raw scores).
    List(Vec<f32>),
}

impl Label {
    /// The number, when this label is one.
    pub fn as_scalar(&self) -> Option<f32> {
        match self {
            Label::Scalar(value) => Some(*value),
            Label::List(_) => None,
        }
    }

    /// The numbers, when this label is a list.
    pub fn as_list(&self) -> Option<&[f32]> {
        match self {
            Label::Scalar(_) => None,
            Label::List(values) => Some(values),
        }
    }

    fn describe(&self) -> String {
        match self {
            Label::Scalar(_) => "a number".to_string(),
            Label::List(values) => format!("a list of {} numbers", values.len()),
        }
    }
}

/// One row: its input cells in the order of [`RowReader::input_columns`], and its label when the
/// source has a label column.
///
/// [`RowReader::input_columns`]: crate::data::RowReader::input_columns
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Where the row sits, for messages: the 1-based line of the file (JSONL, CSV, TSV; for CSV
    /// the line the record starts on) or the 1-based row number (Parquet).
    pub line: usize,
    /// The input cells, one per input column.
    pub fields: Vec<Field>,
    /// The label, when the source has a label column.
    pub label: Option<Label>,
}

/// Where a row sits in its file: how errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// A 1-based line of a text file.
    Line(usize),
    /// A 1-based row number of a file without lines (Parquet).
    Row(usize),
}

impl Place {
    /// The number stored in [`Row::line`].
    pub(crate) fn number(self) -> usize {
        match self {
            Place::Line(number) | Place::Row(number) => number,
        }
    }

    /// "line 3" or "row 3", for messages that point at another row.
    pub(crate) fn describe(self) -> String {
        match self {
            Place::Line(number) => format!("line {number}"),
            Place::Row(number) => format!("row {number}"),
        }
    }

    /// An input error at this place in `path`.
    pub(crate) fn error(self, path: &Path, problem: Problem) -> Error {
        let error = match self {
            Place::Line(line) => Error::input(path, Some(line), problem.message),
            Place::Row(row) => Error::input(path, None, format!("row {row}: {}", problem.message)),
        };
        error.with_hint(problem.hint)
    }
}

/// A problem with one row, before it is tied to a file and a place.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    /// What was expected and what was found.
    pub(crate) message: String,
    /// How to fix it.
    pub(crate) hint: String,
}

impl Problem {
    pub(crate) fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// An error about the file as a whole (no row to point at).
pub(crate) fn file_error(path: &Path, problem: Problem) -> Error {
    Error::input(path, None, problem.message).with_hint(problem.hint)
}

/// The error for a file without a single row.
pub(crate) fn empty_file_error(path: &Path, expected: &str) -> Error {
    Error::input(
        path,
        None,
        format!("no rows: expected {expected}, found none"),
    )
    .with_hint("point `path` at a file with data, or remove this data section")
}

/// `value` as a label, or `None` when it is NaN, infinite, or too large for `f32`.
pub(crate) fn finite_label(value: f64) -> Option<f32> {
    let narrowed = value as f32;
    narrowed.is_finite().then_some(narrowed)
}

/// How a label that [`finite_label`] refused reads in a message: `NaN`, `inf`, or the number in
/// scientific notation (`1e308`, not its 309 digits) with why it does not fit.
pub(crate) fn describe_bad_label(value: f64) -> String {
    if value.is_finite() {
        format!("{value:e}, too large for a 32-bit float")
    } else {
        value.to_string()
    }
}

/// The shape of the first row (text or list per input column, scalar or list label); every later
/// row must have the same one, since a batch mixes rows.
#[derive(Debug, Clone)]
pub(crate) struct RowShape {
    first: Place,
    fields_are_lists: Vec<bool>,
    label_is_list: Option<bool>,
}

impl RowShape {
    /// The shape every row must have: whether each input cell is a list, whether the label (if
    /// any) is a list. `first` is where that shape was seen, for messages.
    pub(crate) fn new(
        first: Place,
        fields_are_lists: Vec<bool>,
        label_is_list: Option<bool>,
    ) -> Self {
        RowShape {
            first,
            fields_are_lists,
            label_is_list,
        }
    }

    /// The shape of `row`, the first one of the file, found at `place`.
    pub(crate) fn of_first(row: &Row, place: Place) -> Self {
        RowShape::new(
            place,
            row.fields
                .iter()
                .map(|field| matches!(field, Field::List(_)))
                .collect(),
            row.label
                .as_ref()
                .map(|label| matches!(label, Label::List(_))),
        )
    }

    /// Check that `row` has the first row's shape and that its list cells agree in length with a
    /// list label (one label per document). `columns` and `label_column` name the cells.
    pub(crate) fn check(
        &self,
        row: &Row,
        columns: &[String],
        label_column: Option<&str>,
    ) -> Result<(), Problem> {
        let first = self.first.describe();
        for ((field, &first_is_list), column) in
            row.fields.iter().zip(&self.fields_are_lists).zip(columns)
        {
            if matches!(field, Field::List(_)) != first_is_list {
                let expected = if first_is_list {
                    "a list of texts"
                } else {
                    "text"
                };
                return Err(Problem::new(
                    format!(
                        "column `{column}` is {} here but {expected} on {first} (the first row); \
                         every row must have the same shape",
                        field.describe()
                    ),
                    format!("make `{column}` {expected} in every row, or split the file by shape"),
                ));
            }
        }
        if let (Some(label), Some(first_is_list), Some(label_column)) =
            (&row.label, self.label_is_list, label_column)
        {
            if matches!(label, Label::List(_)) != first_is_list {
                let expected = if first_is_list {
                    "a list of numbers"
                } else {
                    "a number"
                };
                return Err(Problem::new(
                    format!(
                        "label column `{label_column}` is {} here but {expected} on {first} \
                         (the first row); every row must have the same shape",
                        label.describe()
                    ),
                    format!("make `{label_column}` {expected} in every row"),
                ));
            }
        }
        if let (Some(Label::List(labels)), Some(label_column)) = (&row.label, label_column) {
            for (field, column) in row.fields.iter().zip(columns) {
                if let Field::List(docs) = field {
                    if docs.len() != labels.len() {
                        return Err(Problem::new(
                            format!(
                                "column `{column}` has {} documents but label column \
                                 `{label_column}` has {} values; expected one label per document",
                                docs.len(),
                                labels.len()
                            ),
                            format!(
                                "give `{label_column}` exactly as many values as `{column}` has \
                                 documents in every row"
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn finite_label_rejects_nan_infinity_and_f32_overflow() {
        assert_eq!(finite_label(0.5), Some(0.5));
        assert_eq!(finite_label(f64::NAN), None);
        assert_eq!(finite_label(f64::INFINITY), None);
        // f32::MAX is about 3.4e38: 1e39 overflows to infinity when narrowed.
        assert_eq!(finite_label(1e39), None);
    }

    #[test]
    fn shape_check_names_the_column_and_the_first_row() {
        let first = Row {
            line: 1,
            fields: vec![Field::Text("q".into()), Field::List(vec!["a".into()])],
            label: Some(Label::List(vec![1.0])),
        };
        let shape = RowShape::of_first(&first, Place::Line(1));
        let columns = names(&["query", "docs"]);
        assert!(shape.check(&first, &columns, Some("labels")).is_ok());

        let text_instead_of_list = Row {
            line: 4,
            fields: vec![Field::Text("q".into()), Field::Text("a".into())],
            label: Some(Label::List(vec![1.0])),
        };
        let problem = shape
            .check(&text_instead_of_list, &columns, Some("labels"))
            .unwrap_err();
        assert!(
            problem.message.contains("`docs` is text here"),
            "{problem:?}"
        );
        assert!(
            problem.message.contains("a list of texts on line 1"),
            "{problem:?}"
        );

        let ragged = Row {
            line: 5,
            fields: vec![
                Field::Text("q".into()),
                Field::List(vec!["a".into(), "b".into(), "c".into()]),
            ],
            label: Some(Label::List(vec![1.0, 0.0])),
        };
        let problem = shape.check(&ragged, &columns, Some("labels")).unwrap_err();
        assert!(
            problem
                .message
                .contains("`docs` has 3 documents but label column `labels` has 2 values"),
            "{problem:?}"
        );
    }
}
