//! CSV and TSV: one record at a time with the `csv` crate.
//!
//! The first row is the header unless the source gives `names` (files such as STSb's
//! `sentence1,sentence2,score` come without one). Every cell is text; the label cell is parsed as
//! a number (`true`/`false` count as 1/0). CSV quotes with `"`; TSV has no quoting, so a `"` in a
//! TSV cell is an ordinary character, as in MS MARCO's files.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::columns::{self, ColumnOptions, Selection};
use super::row::{empty_file_error, file_error, finite_label, Field, Label, Place, Problem, Row};
use crate::error::{Error, Result};

/// Where a file's column names came from, for messages.
const HEADER: &str = "the header";
const NAMES: &str = "`names`";

/// What every record of a file is checked and read against.
struct Layout {
    path: PathBuf,
    /// The file's column names (header or `names`): every record has this many cells.
    file_columns: Vec<String>,
    /// Where `file_columns` came from: [`HEADER`] or [`NAMES`].
    names_from: &'static str,
    selection: Selection,
    /// CSV (quoted cells) rather than TSV.
    quoting: bool,
    delimiter: u8,
}

impl Layout {
    /// The row for `record`.
    fn row(&self, record: &csv::StringRecord) -> Result<Row> {
        let line = record.position().map_or(0, line_of);
        let place = Place::Line(line);
        if record.len() != self.file_columns.len() {
            if let Some(problem) = self.unclosed_quote(record, line) {
                return Err(place.error(&self.path, problem));
            }
            return Err(place.error(
                &self.path,
                Problem::new(
                    format!(
                        "expected {} cells ({} from {}), found {}",
                        self.file_columns.len(),
                        self.file_columns.join(", "),
                        self.names_from,
                        record.len()
                    ),
                    "quote cells that contain the delimiter, and give every row one cell per column",
                ),
            ));
        }
        let fields = self
            .selection
            .input_indices
            .iter()
            .map(|&index| Field::Text(record[index].to_string()))
            .collect();
        let label = match (self.selection.label_index, &self.selection.label) {
            (Some(index), Some(column)) => {
                let label = parse_label(column, &record[index]).map_err(|mut problem| {
                    if line == 1 && self.names_from == NAMES {
                        problem.hint = "the first line looks like a header: remove `names` to \
                                        read the column names from it"
                            .to_string();
                    }
                    place.error(&self.path, problem)
                })?;
                Some(label)
            }
            _ => None,
        };
        Ok(Row {
            line,
            fields,
            label,
        })
    }

    /// The problem when `record` (at `line`) holds a quote that is never closed: the csv reader
    /// then takes the rest of the file as one cell, and the cell count alone would mislead.
    fn unclosed_quote(&self, record: &csv::StringRecord, line: usize) -> Option<Problem> {
        if !self.quoting || !record.iter().any(|cell| cell.contains('\n')) {
            return None;
        }
        let start = record.position()?.byte();
        let mut file = File::open(&self.path).ok()?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start)).ok()?;
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut rest).ok()?;
        let opening = unclosed_quote_at(&rest, self.delimiter)?;
        let opening_line = line + rest[..opening].iter().filter(|&&b| b == b'\n').count();
        let line_ends = rest.iter().filter(|&&b| b == b'\n').count();
        let last_line = line + line_ends - usize::from(rest.ends_with(b"\n"));
        Some(Problem::new(
            format!(
                "the quote that opens a cell on line {opening_line} is never closed, so the cell runs to the end of the file (line {last_line})"
            ),
            "close the quote, or write a quote inside a quoted cell as two quotes (\"\")",
        ))
    }
}

/// The offset of a `"` that opens a cell of `text` and is never closed, by the rules the csv
/// reader follows: a quote opens a cell only as its first character, `""` inside a quoted cell
/// is a literal quote, and the closing quote ends the quoting.
fn unclosed_quote_at(text: &[u8], delimiter: u8) -> Option<usize> {
    let mut at_cell_start = true;
    let mut opened: Option<usize> = None;
    let mut index = 0;
    while index < text.len() {
        let byte = text[index];
        match opened {
            Some(_) if byte == b'"' => {
                if text.get(index + 1) == Some(&b'"') {
                    index += 1;
                } else {
                    opened = None;
                }
            }
            Some(_) => {}
            None if at_cell_start && byte == b'"' => opened = Some(index),
            None => {}
        }
        at_cell_start = opened.is_none() && (byte == delimiter || byte == b'\n' || byte == b'\r');
        index += 1;
    }
    opened
}

/// Rows of a CSV or TSV file; the first one is read (and checked) by [`CsvRows::open`].
pub(crate) struct CsvRows {
    reader: csv::Reader<File>,
    record: csv::StringRecord,
    layout: Layout,
    first: Option<Row>,
}

impl CsvRows {
    /// Read the header (unless `options.names` replaces it) and the first record, choose the
    /// columns, and check that record.
    pub(crate) fn open(
        file: File,
        path: &Path,
        delimiter: u8,
        options: &ColumnOptions<'_>,
    ) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .quoting(delimiter != b'\t')
            .has_headers(options.names.is_none())
            // Record widths are checked by `Layout::row`, with messages that name the columns.
            .flexible(true)
            .from_reader(file);
        let (file_columns, header_place) = match options.names {
            Some(names) => (names.to_vec(), None),
            None => {
                let header = reader.headers().map_err(|error| csv_error(path, error))?;
                let place = Place::Line(header.position().map_or(1, line_of));
                (header.iter().map(str::to_string).collect(), Some(place))
            }
        };
        let mut record = csv::StringRecord::new();
        if !read_record(&mut reader, &mut record, path)? {
            let expected = if header_place.is_some() {
                "a header row and at least one data row"
            } else {
                "at least one data row"
            };
            return Err(empty_file_error(path, expected));
        }
        let selection =
            columns::select(&file_columns, options.columns, options.label).map_err(|problem| {
                match header_place {
                    Some(place) => place.error(path, problem),
                    None => file_error(
                        path,
                        Problem {
                            message: format!("`names`: {}", problem.message),
                            ..problem
                        },
                    ),
                }
            })?;
        let layout = Layout {
            path: path.to_path_buf(),
            file_columns,
            names_from: if header_place.is_some() {
                HEADER
            } else {
                NAMES
            },
            selection,
            quoting: delimiter != b'\t',
            delimiter,
        };
        let first = layout.row(&record)?;
        Ok(CsvRows {
            reader,
            record,
            layout,
            first: Some(first),
        })
    }

    pub(crate) fn selection(&self) -> &Selection {
        &self.layout.selection
    }

    /// Count the records left, without building rows.
    pub(crate) fn count_remaining(mut self) -> Result<usize> {
        let mut count = usize::from(self.first.is_some());
        let mut record = csv::ByteRecord::new();
        while self
            .reader
            .read_byte_record(&mut record)
            .map_err(|error| csv_error(&self.layout.path, error))?
        {
            count += 1;
        }
        Ok(count)
    }
}

/// Read the next record into `record`; `false` at the end of the file.
fn read_record(
    reader: &mut csv::Reader<File>,
    record: &mut csv::StringRecord,
    path: &Path,
) -> Result<bool> {
    reader
        .read_record(record)
        .map_err(|error| csv_error(path, error))
}

impl Iterator for CsvRows {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Result<Row>> {
        if let Some(row) = self.first.take() {
            return Some(Ok(row));
        }
        match read_record(&mut self.reader, &mut self.record, &self.layout.path) {
            Ok(true) => Some(self.layout.row(&self.record)),
            Ok(false) => None,
            Err(error) => Some(Err(error)),
        }
    }
}

fn line_of(position: &csv::Position) -> usize {
    usize::try_from(position.line()).unwrap_or(usize::MAX)
}

/// A CSV label cell as a finite number.
fn parse_label(column: &str, cell: &str) -> Result<Label, Problem> {
    let text = cell.trim();
    let value = if text.eq_ignore_ascii_case("true") {
        Some(1.0)
    } else if text.eq_ignore_ascii_case("false") {
        Some(0.0)
    } else {
        text.parse::<f64>().ok().and_then(finite_label)
    };
    value.map(Label::Scalar).ok_or_else(|| {
        let found = if text.is_empty() {
            "an empty cell".to_string()
        } else {
            format!("{cell:?}")
        };
        Problem::new(
            format!("label column `{column}`: expected a finite number, found {found}"),
            "write every label as a number, or set `label` to the column that holds the labels",
        )
    })
}

fn csv_error(path: &Path, error: csv::Error) -> Error {
    let line = error.position().map(line_of);
    match error.into_kind() {
        csv::ErrorKind::Io(source) => Error::io("cannot read", path, source),
        csv::ErrorKind::Utf8 { err, .. } => Error::input(
            path,
            line,
            format!(
                "expected UTF-8 text, found invalid bytes in cell {}",
                err.field() + 1
            ),
        )
        .with_hint("re-encode the file as UTF-8"),
        other => Error::input(path, line, format!("cannot parse the file: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unclosed_quote_is_found_where_it_opens() {
        assert_eq!(unclosed_quote_at(b"q2,\"p2,3\nq3,p3,1\n", b','), Some(3));
        assert_eq!(unclosed_quote_at(b"q2,\"p \"\" 2\",3\n", b','), None);
        assert_eq!(unclosed_quote_at(b"q2,p\"2,3\n", b','), None);
        assert_eq!(unclosed_quote_at(b"\"a\nb\",1\n\"x", b','), Some(8));
    }

    #[test]
    fn labels_parse_numbers_and_booleans_and_reject_the_rest() {
        assert_eq!(parse_label("score", " 0.25 "), Ok(Label::Scalar(0.25)));
        assert_eq!(parse_label("score", "3"), Ok(Label::Scalar(3.0)));
        assert_eq!(parse_label("score", "True"), Ok(Label::Scalar(1.0)));
        assert_eq!(parse_label("score", "false"), Ok(Label::Scalar(0.0)));
        for (cell, found) in [
            ("NaN", "found \"NaN\""),
            ("inf", "found \"inf\""),
            ("-infinity", "found \"-infinity\""),
            ("1e39", "found \"1e39\""),
            ("high", "found \"high\""),
            ("", "found an empty cell"),
        ] {
            let problem = parse_label("score", cell).unwrap_err();
            assert!(
                problem
                    .message
                    .contains("label column `score`: expected a finite number"),
                "{problem:?}"
            );
            assert!(problem.message.ends_with(found), "{cell}: {problem:?}");
        }
    }
}
