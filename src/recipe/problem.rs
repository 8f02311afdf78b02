//! One thing wrong with a recipe, with where it is and how to fix it.

use std::fmt;
use std::path::PathBuf;

use crate::error::Error;

/// One problem found in a recipe (or in a `--set` override of it).
///
/// Displays as `recipes/x.toml:12: train.batch_size: expected a positive integer, found -3`,
/// followed by ` (hint: ...)` when there is a fix to suggest. Problems that come from `--set`
/// have no line and say so in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The recipe file, as the caller named it.
    pub path: PathBuf,
    /// 1-based line in the file; `None` for `--set` values, unreadable files and absent sections.
    pub line: Option<usize>,
    /// Dotted recipe key, e.g. `train.batch_size` or `loss.0.kind`; empty for syntax errors.
    pub key: String,
    /// What was expected and what was found.
    pub message: String,
    /// How to fix it, when there is something to suggest.
    pub hint: Option<String>,
}

impl Problem {
    /// The message part after `file:line: `, as [`Error::Input`] shows it.
    fn keyed_message(&self) -> String {
        if self.key.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.key, self.message)
        }
    }

    /// Turn a list of problems into the crate's error: `None` for no problems, the single
    /// [`Error::Input`] for one, [`Error::Many`] for several.
    pub fn into_error(problems: Vec<Problem>) -> Option<Error> {
        let mut errors: Vec<Error> = problems.into_iter().map(Error::from).collect();
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(Error::Many(errors)),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.keyed_message())?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl From<Problem> for Error {
    fn from(problem: Problem) -> Self {
        let error = Error::input(&problem.path, problem.line, problem.keyed_message());
        match problem.hint {
            Some(hint) => error.with_hint(hint),
            None => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(line: Option<usize>, hint: Option<&str>) -> Problem {
        Problem {
            path: PathBuf::from("recipes/x.toml"),
            line,
            key: "train.batch_size".to_string(),
            message: "expected a positive integer, found -3".to_string(),
            hint: hint.map(str::to_string),
        }
    }

    #[test]
    fn display_names_file_line_key_and_hint() {
        assert_eq!(
            problem(Some(12), Some("use 16")).to_string(),
            "recipes/x.toml:12: train.batch_size: expected a positive integer, found -3 (hint: use 16)"
        );
        assert_eq!(
            problem(None, None).to_string(),
            "recipes/x.toml: train.batch_size: expected a positive integer, found -3"
        );
    }

    #[test]
    fn the_error_reads_like_the_problem() {
        let one = problem(Some(12), Some("use 16"));
        let error = Problem::into_error(vec![one.clone()]).expect("one problem");
        assert_eq!(error.to_string(), one.to_string());
        assert!(matches!(error, Error::Input { .. }));
        let many = Problem::into_error(vec![one.clone(), problem(None, None)]).expect("two");
        assert!(matches!(&many, Error::Many(errors) if errors.len() == 2));
        assert!(Problem::into_error(Vec::new()).is_none());
    }
}
