//! The parsed recipe as an owned tree that remembers where every value came from.
//!
//! `toml`'s `DeTable` keeps byte spans; we turn them into 1-based lines once, so the validator and
//! the `--set` overrides work on one simple tree whose nodes say "line 12 of the file" or "typed on
//! the command line as `--set train.batch_size=-3`".

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Origin {
    /// In the recipe file, at this 1-based line.
    File { line: usize },
    /// On the command line, as this `KEY=VALUE` assignment.
    Set { assignment: String },
}

impl Origin {
    /// The file line, when the value is in the file.
    pub(super) fn line(&self) -> Option<usize> {
        match self {
            Origin::File { line } => Some(*line),
            Origin::Set { .. } => None,
        }
    }
}

/// One value of the tree and where it came from.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) value: Value,
    pub(super) origin: Origin,
}

/// A TOML value with owned, checked scalars.
#[derive(Debug, Clone)]
pub(super) enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime(toml::value::Datetime),
    Array(Vec<Node>),
    Table(Table),
}

/// A TOML table in file order.
#[derive(Debug, Clone, Default)]
pub(super) struct Table {
    pub(super) entries: Vec<Entry>,
}

/// One `key = value` of a table; `origin` is where the key was written.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) origin: Origin,
    pub(super) value: Node,
}

impl Table {
    /// The entry named `key`.
    pub(super) fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.key == key)
    }

    /// The entry named `key`, to change it.
    pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|entry| entry.key == key)
    }
}

/// A syntax error: the line it is on (when known) and what the parser said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SyntaxError {
    pub(super) line: Option<usize>,
    pub(super) message: String,
}

/// Maps byte offsets of a text to 1-based lines.
struct LineIndex {
    line_starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(offset, _)| offset + 1));
        Self { line_starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }
}

/// Parse a whole recipe file. All syntax errors are returned (the parser recovers and goes on).
pub(super) fn parse_document(text: &str) -> Result<Table, Vec<SyntaxError>> {
    let index = LineIndex::new(text);
    let (document, parse_errors) = DeTable::parse_recoverable(text);
    let mut errors: Vec<SyntaxError> = parse_errors
        .iter()
        .map(|error| SyntaxError {
            line: error.span().map(|span| index.line(span.start)),
            message: error.message().trim().to_string(),
        })
        .collect();
    let origin = |span: Range<usize>| Origin::File {
        line: index.line(span.start),
    };
    let table = convert_table(document.get_ref(), &origin, &mut errors);
    if errors.is_empty() {
        Ok(table)
    } else {
        Err(errors)
    }
}

/// Parse the VALUE of a `--set KEY=VALUE`: a TOML value when it parses as one (`3`, `2e-5`,
/// `true`, `["a", "b"]`, `"quoted"`), otherwise the text itself as a string (`../models/x`,
/// `cuda:0`, `org/model`).
pub(super) fn parse_override_value(text: &str, assignment: &str) -> Node {
    let origin = |_span: Range<usize>| Origin::Set {
        assignment: assignment.to_string(),
    };
    if let Ok(value) = DeValue::parse(text.trim()) {
        let mut errors = Vec::new();
        let node = convert_value(&value, &origin, &mut errors);
        if errors.is_empty() {
            return node;
        }
    }
    Node {
        value: Value::String(text.to_string()),
        origin: origin(0..0),
    }
}

fn convert_table(
    table: &DeTable<'_>,
    origin: &dyn Fn(Range<usize>) -> Origin,
    errors: &mut Vec<SyntaxError>,
) -> Table {
    let entries = table
        .iter()
        .map(|(key, value)| Entry {
            key: key.get_ref().to_string(),
            origin: origin(key.span()),
            value: convert_value(value, origin, errors),
        })
        .collect();
    Table { entries }
}

fn convert_value(
    value: &Spanned<DeValue<'_>>,
    origin: &dyn Fn(Range<usize>) -> Origin,
    errors: &mut Vec<SyntaxError>,
) -> Node {
    let here = origin(value.span());
    let converted = match value.get_ref() {
        DeValue::String(text) => Value::String(text.to_string()),
        DeValue::Integer(integer) => match i64::from_str_radix(integer.as_str(), integer.radix()) {
            Ok(number) => Value::Integer(number),
            Err(_) => {
                errors.push(SyntaxError {
                    line: here.line(),
                    message: format!("integer {integer} does not fit in 64 bits"),
                });
                Value::Integer(0)
            }
        },
        DeValue::Float(float) => match float.as_str().parse::<f64>() {
            Ok(number) => Value::Float(number),
            Err(_) => {
                errors.push(SyntaxError {
                    line: here.line(),
                    message: format!("float {float} is not a number"),
                });
                Value::Float(0.0)
            }
        },
        DeValue::Boolean(flag) => Value::Boolean(*flag),
        DeValue::Datetime(datetime) => Value::Datetime(*datetime),
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| convert_value(item, origin, errors))
                .collect(),
        ),
        DeValue::Table(table) => Value::Table(convert_table(table, origin, errors)),
    };
    Node {
        value: converted,
        origin: here,
    }
}

impl Value {
    /// How a problem message shows a value that was found: `-3`, `16.0`, `string "ten"`,
    /// `an array [1, 2]`, `a table`.
    pub(super) fn describe(&self) -> String {
        match self {
            Value::String(text) => format!("string {text:?}"),
            Value::Integer(number) => number.to_string(),
            Value::Float(number) => format!("{number:?}"),
            Value::Boolean(flag) => flag.to_string(),
            Value::Datetime(datetime) => format!("datetime {datetime}"),
            Value::Array(_) => {
                let shown = self.to_toml().to_string();
                match shown.char_indices().nth(60) {
                    Some((cut, _)) => format!("an array {}...", &shown[..cut]),
                    None => format!("an array {shown}"),
                }
            }
            Value::Table(_) => "a table".to_string(),
        }
    }

    /// The same value as a plain `toml::Value` (origins dropped).
    pub(super) fn to_toml(&self) -> toml::Value {
        match self {
            Value::String(text) => toml::Value::String(text.clone()),
            Value::Integer(number) => toml::Value::Integer(*number),
            Value::Float(number) => toml::Value::Float(*number),
            Value::Boolean(flag) => toml::Value::Boolean(*flag),
            Value::Datetime(datetime) => toml::Value::Datetime(*datetime),
            Value::Array(items) => {
                toml::Value::Array(items.iter().map(|item| item.value.to_toml()).collect())
            }
            Value::Table(table) => toml::Value::Table(
                table
                    .entries
                    .iter()
                    .map(|entry| (entry.key.clone(), entry.value.value.to_toml()))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_text() {
        let text = "version = 1\n\n[train]\nbatch_size = 8\n\n[[loss]]\nkind = \"mse\"\n";
        let table = parse_document(text).expect("valid TOML");
        let train = table.get("train").expect("train table");
        assert_eq!(train.origin, Origin::File { line: 3 });
        let Value::Table(train) = &train.value.value else {
            panic!("train is a table")
        };
        let batch_size = train.get("batch_size").expect("batch_size");
        assert_eq!(batch_size.value.origin, Origin::File { line: 4 });
        let Value::Array(losses) = &table.get("loss").expect("loss").value.value else {
            panic!("loss is an array")
        };
        assert_eq!(losses[0].origin, Origin::File { line: 6 });
    }

    #[test]
    fn every_syntax_error_is_reported_with_its_line() {
        let errors = parse_document("a = 1\n[b]\nc = \nd = 'x'\n[b]\n").expect_err("invalid");
        let lines: Vec<_> = errors.iter().map(|error| error.line).collect();
        assert_eq!(lines, vec![Some(3), Some(5)], "{errors:?}");
        assert!(errors[1].message.contains("duplicate"), "{errors:?}");
    }

    #[test]
    fn override_values_are_toml_when_they_parse_and_strings_otherwise() {
        let value = |text: &str| parse_override_value(text, "k=v").value.describe();
        assert_eq!(value("3"), "3");
        assert_eq!(value("2e-5"), "2e-5");
        assert_eq!(value("true"), "true");
        assert_eq!(value("\"3\""), "string \"3\"");
        assert_eq!(value("[1, 2]"), "an array [1, 2]");
        assert_eq!(value("../models/x"), "string \"../models/x\"");
        assert_eq!(value("cuda:0"), "string \"cuda:0\"");
        assert_eq!(value("org/model"), "string \"org/model\"");
    }
}
