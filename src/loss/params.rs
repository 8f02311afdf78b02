//! Reading a loss's parameters from its recipe table, with errors that name the loss, the
//! parameter, what was expected and what was found.

use crate::error::{Error, Result};
use crate::loss::activation::ActivationFn;
use crate::params::{unknown_keys, ParamTable, BOOLEAN, INTEGER, NUMBER, STRING};

/// A loss's parameter table, checked once for unknown keys.
pub(crate) struct Params<'a> {
    loss: &'static str,
    table: &'a toml::Table,
}

impl<'a> Params<'a> {
    /// Checks that every key of `table` is in `accepted`; the error names each unknown key and
    /// lists the accepted ones.
    pub(crate) fn new(
        loss: &'static str,
        table: &'a toml::Table,
        accepted: &[&str],
    ) -> Result<Self> {
        let unknown = unknown_keys(table, accepted);
        if unknown.is_empty() {
            return Ok(Params { loss, table });
        }
        let accepted = if accepted.is_empty() {
            "none".to_string()
        } else {
            accepted.join(", ")
        };
        let noun = if unknown.len() == 1 {
            "parameter"
        } else {
            "parameters"
        };
        Err(Error::invalid(format!(
            "loss \"{loss}\": unknown {noun} {}; accepted parameters: {accepted}",
            unknown
                .iter()
                .map(|key| format!("\"{key}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// An error about the value of `key`: `loss "x": parameter "key" {message}`.
    pub(crate) fn error(&self, key: &str, message: impl std::fmt::Display) -> Error {
        Error::invalid(format!(
            "loss \"{}\": parameter \"{key}\" {message}",
            self.loss
        ))
    }

    /// The raw value of `key`, if present.
    pub(crate) fn value(&self, key: &str) -> Option<&'a toml::Value> {
        self.table.get(key)
    }

    /// A number (integer or float) that must be finite.
    pub(crate) fn f64(&self, key: &str) -> Result<Option<f64>> {
        let Some(number) = self.read(key, &NUMBER)? else {
            return Ok(None);
        };
        if !number.is_finite() {
            return Err(self.error(key, format!("must be a finite number, found {number}")));
        }
        Ok(Some(number))
    }

    /// A number that must be strictly positive.
    pub(crate) fn positive_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.f64(key)? {
            Some(x) if x <= 0.0 => Err(self.error(key, format!("must be > 0, found {x}"))),
            other => Ok(other),
        }
    }

    /// An integer.
    pub(crate) fn i64(&self, key: &str) -> Result<Option<i64>> {
        self.read(key, &INTEGER)
    }

    /// An integer that must be at least `min`.
    pub(crate) fn usize_at_least(&self, key: &str, min: usize) -> Result<Option<usize>> {
        match self.i64(key)? {
            None => Ok(None),
            Some(i) if i < min as i64 => {
                Err(self.error(key, format!("must be an integer >= {min}, found {i}")))
            }
            Some(i) => Ok(Some(i as usize)),
        }
    }

    /// A boolean.
    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>> {
        self.read(key, &BOOLEAN)
    }

    /// A string.
    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(self.wrong(key, STRING.expected, other)),
        }
    }

    /// A string naming an [`ActivationFn`].
    pub(crate) fn activation(&self, key: &str) -> Result<Option<ActivationFn>> {
        match self.str(key)? {
            None => Ok(None),
            Some(name) => ActivationFn::parse(name).map(Some).map_err(|_| {
                self.error(
                    key,
                    format!(
                        "must be one of {}, found \"{name}\"",
                        ActivationFn::accepted_names()
                    ),
                )
            }),
        }
    }

    /// The listwise `mini_batch_size`: any integer (sentence-transformers: `None` or 0 → one
    /// query batch, negative → all pairs at once).
    pub(crate) fn mini_batch_size(&self, key: &str) -> Result<Option<i64>> {
        self.i64(key)
    }
}

impl ParamTable for Params<'_> {
    fn get(&self, key: &str) -> Option<&toml::Value> {
        self.table.get(key)
    }

    fn wrong(&self, key: &str, expected: &str, found: &toml::Value) -> Error {
        Error::invalid(format!(
            "loss \"{}\": parameter \"{key}\" must be {expected}, found {} {found}",
            self.loss,
            found.type_str()
        ))
    }
}

/// `mini_batch_size` rendered for `config_dict` (`null` when unset).
pub(crate) fn optional_json<T: Into<serde_json::Value>>(value: Option<T>) -> serde_json::Value {
    value.map_or(serde_json::Value::Null, Into::into)
}

#[cfg(test)]
pub(crate) fn table(text: &str) -> toml::Table {
    text.parse().expect("test TOML parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named_with_the_accepted_list() {
        let t = table("sigma = 1.0\nkk = 3\nfoo = true");
        let message = Params::new("lambda", &t, &["k", "sigma"])
            .err()
            .expect("unknown keys")
            .to_string();
        assert_eq!(
            message,
            "loss \"lambda\": unknown parameters \"kk\", \"foo\"; accepted parameters: k, sigma"
        );
    }

    #[test]
    fn wrong_types_say_what_was_expected_and_found() {
        let t = table("sigma = \"big\"\nk = 1.5\nflag = 3\nname = 2");
        let params = Params::new("x", &t, &["sigma", "k", "flag", "name"]).unwrap();
        assert_eq!(
            params.f64("sigma").unwrap_err().to_string(),
            "loss \"x\": parameter \"sigma\" must be a number, found string \"big\""
        );
        assert_eq!(
            params.i64("k").unwrap_err().to_string(),
            "loss \"x\": parameter \"k\" must be an integer, found float 1.5"
        );
        assert_eq!(
            params.bool("flag").unwrap_err().to_string(),
            "loss \"x\": parameter \"flag\" must be true or false, found integer 3"
        );
        assert_eq!(
            params.str("name").unwrap_err().to_string(),
            "loss \"x\": parameter \"name\" must be a string, found integer 2"
        );
    }

    #[test]
    fn ranges_are_checked() {
        let t = table("a = 0\nb = -2.5\nc = nan");
        let params = Params::new("x", &t, &["a", "b", "c"]).unwrap();
        assert_eq!(
            params.usize_at_least("a", 1).unwrap_err().to_string(),
            "loss \"x\": parameter \"a\" must be an integer >= 1, found 0"
        );
        assert_eq!(
            params.positive_f64("b").unwrap_err().to_string(),
            "loss \"x\": parameter \"b\" must be > 0, found -2.5"
        );
        assert!(params.f64("c").unwrap_err().to_string().contains("finite"));
        assert_eq!(params.f64("a").unwrap(), Some(0.0));
        assert_eq!(params.f64("missing").unwrap(), None);
    }
}
