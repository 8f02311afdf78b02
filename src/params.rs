//! One reader of TOML parameter values, shared by the recipe loader, the losses' parameter
//! tables and the evaluators' `[[eval]]` parameters: each kind of value a parameter takes, what
//! messages call it, how a value is read as it, and the unknown keys of a table. Each caller
//! frames its own messages (a recipe key with its line, `loss "x": parameter "k"`, an `[[eval]]`
//! section); the kinds and their names are the same everywhere.

use crate::error::{Error, Result};

/// A kind of parameter value: what messages call it (`expected a positive integer`) and how a
/// TOML value is read as one (`None`: the value is not of this kind).
pub struct Kind<T> {
    /// What a message says was expected.
    pub expected: &'static str,
    /// The value as this kind, or `None`.
    pub read: fn(&toml::Value) -> Option<T>,
}

/// An integer > 0.
pub const POSITIVE_INTEGER: Kind<usize> = Kind {
    expected: "a positive integer",
    read: |value| match value {
        toml::Value::Integer(number) if *number > 0 => usize::try_from(*number).ok(),
        _ => None,
    },
};

/// An integer >= 0.
pub const NON_NEGATIVE_INTEGER: Kind<usize> = Kind {
    expected: "a non-negative integer",
    read: |value| match value {
        toml::Value::Integer(number) => usize::try_from(*number).ok(),
        _ => None,
    },
};

/// Any integer.
pub const INTEGER: Kind<i64> = Kind {
    expected: "an integer",
    read: |value| match value {
        toml::Value::Integer(number) => Some(*number),
        _ => None,
    },
};

/// A float or an integer (callers check finiteness and range where it matters).
pub const NUMBER: Kind<f64> = Kind {
    expected: "a number",
    read: |value| match value {
        toml::Value::Float(number) => Some(*number),
        toml::Value::Integer(number) => Some(*number as f64),
        _ => None,
    },
};

/// `true` or `false`.
pub const BOOLEAN: Kind<bool> = Kind {
    expected: "true or false",
    read: |value| match value {
        toml::Value::Boolean(flag) => Some(*flag),
        _ => None,
    },
};

/// Any string.
pub const STRING: Kind<String> = Kind {
    expected: "a string",
    read: |value| match value {
        toml::Value::String(text) => Some(text.clone()),
        _ => None,
    },
};

/// A string that is not empty.
pub const NON_EMPTY_STRING: Kind<String> = Kind {
    expected: "a non-empty string",
    read: |value| match value {
        toml::Value::String(text) if !text.is_empty() => Some(text.clone()),
        _ => None,
    },
};

/// A table of parameters that says how its own errors read.
pub trait ParamTable {
    /// The value of `key`, when present.
    fn get(&self, key: &str) -> Option<&toml::Value>;

    /// The error for `key`, whose value `found` is not `expected`.
    fn wrong(&self, key: &str, expected: &str, found: &toml::Value) -> Error;

    /// `key` read as `kind`: `None` when absent, [`ParamTable::wrong`] when of another kind.
    fn read<T>(&self, key: &str, kind: &Kind<T>) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => (kind.read)(value)
                .map(Some)
                .ok_or_else(|| self.wrong(key, kind.expected, value)),
        }
    }
}

/// The keys of `table` that are not in `accepted`, in table order.
pub fn unknown_keys<'t>(table: &'t toml::Table, accepted: &[&str]) -> Vec<&'t str> {
    table
        .keys()
        .map(String::as_str)
        .filter(|key| !accepted.contains(key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> toml::Value {
        let table: toml::Table = format!("x = {text}").parse().unwrap();
        table["x"].clone()
    }

    #[test]
    fn kinds_read_their_values_and_refuse_others() {
        assert_eq!((POSITIVE_INTEGER.read)(&value("3")), Some(3));
        assert_eq!((POSITIVE_INTEGER.read)(&value("0")), None);
        assert_eq!((POSITIVE_INTEGER.read)(&value("2.0")), None);
        assert_eq!((NON_NEGATIVE_INTEGER.read)(&value("0")), Some(0));
        assert_eq!((NON_NEGATIVE_INTEGER.read)(&value("-1")), None);
        assert_eq!((INTEGER.read)(&value("-1")), Some(-1));
        assert_eq!((NUMBER.read)(&value("2")), Some(2.0));
        assert_eq!((NUMBER.read)(&value("0.5")), Some(0.5));
        assert_eq!((NUMBER.read)(&value("\"1\"")), None);
        assert_eq!((BOOLEAN.read)(&value("true")), Some(true));
        assert_eq!((BOOLEAN.read)(&value("1")), None);
        assert_eq!((STRING.read)(&value("\"\"")), Some(String::new()));
        assert_eq!((NON_EMPTY_STRING.read)(&value("\"\"")), None);
        assert_eq!((NON_EMPTY_STRING.read)(&value("\"a\"")), Some("a".into()));
    }

    struct Section(toml::Table);

    impl ParamTable for Section {
        fn get(&self, key: &str) -> Option<&toml::Value> {
            self.0.get(key)
        }
        fn wrong(&self, key: &str, expected: &str, found: &toml::Value) -> Error {
            Error::invalid(format!("{key}: expected {expected}, found {found}"))
        }
    }

    #[test]
    fn a_table_reads_present_keys_and_frames_its_own_errors() {
        let section = Section("a = 2\nb = \"x\"".parse().unwrap());
        assert_eq!(section.read("a", &POSITIVE_INTEGER).unwrap(), Some(2));
        assert_eq!(section.read("missing", &BOOLEAN).unwrap(), None);
        assert_eq!(
            section.read("b", &NUMBER).unwrap_err().to_string(),
            "b: expected a number, found \"x\""
        );
        assert_eq!(unknown_keys(&section.0, &["a"]), vec!["b"]);
    }
}
