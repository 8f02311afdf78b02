//! The texts a vocabulary is trimmed to: single texts and (query, document) pairs, each with the
//! file and line it came from so that a tokenisation mismatch can name it.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::data::{DataSource, Field, Format};
use crate::error::{Error, Result};

/// Where a corpus item came from: an index into [`TrimCorpus::files`] and a 1-based line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    file: u32,
    line: u32,
}

/// No file: an item added through [`TrimCorpus::add_text`] or [`TrimCorpus::add_pair`].
const NO_FILE: u32 = u32::MAX;

/// How [`TrimCorpus::read_files`] reads table files (CSV, TSV, JSONL, Parquet).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CorpusColumns {
    /// Column names of headerless CSV/TSV files (STSb's `sentence1,sentence2,score`); their
    /// first line is then data.
    pub names: Option<Vec<String>>,
    /// The text columns, in order (default: every column but the label column).
    pub columns: Option<Vec<String>>,
}

/// The texts a vocabulary is trimmed to, deduplicated.
///
/// A row of a table file contributes every text cell as a single text and, when it has more than
/// one text, the pairs `(first cell, other cell)` the way a cross-encoder sees them (a list cell
/// contributes one pair per document). Both are tokenised with special tokens, so the kept
/// vocabulary includes what the single and the pair templates add.
#[derive(Debug, Clone, Default)]
pub struct TrimCorpus {
    texts: Vec<String>,
    text_origins: Vec<Origin>,
    pairs: Vec<(String, String)>,
    pair_origins: Vec<Origin>,
    files: Vec<PathBuf>,
    seen_texts: HashSet<String>,
    seen_pairs: HashSet<(String, String)>,
}

impl TrimCorpus {
    /// An empty corpus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Read `paths`: `.txt` files hold one text per line (blank lines skipped); `.csv`, `.tsv`,
    /// `.jsonl`/`.json` and `.parquet` files are read as rows with [`crate::data`]'s rules
    /// (label column removed; `columns.names` for headerless CSV/TSV).
    pub fn read_files(paths: &[PathBuf], columns: &CorpusColumns) -> Result<Self> {
        let mut corpus = Self::new();
        for path in paths {
            corpus.read_file(path, columns)?;
        }
        Ok(corpus)
    }

    /// Add the texts of one file (see [`TrimCorpus::read_files`]).
    pub fn read_file(&mut self, path: &Path, columns: &CorpusColumns) -> Result<()> {
        let file_index = u32::try_from(self.files.len())
            .ok()
            .filter(|&i| i != NO_FILE)
            .ok_or_else(|| Error::invalid("too many corpus files (more than 4 billion)"))?;
        self.files.push(path.to_path_buf());
        let origin = |line: usize| Origin {
            file: file_index,
            line: u32::try_from(line).unwrap_or(u32::MAX),
        };
        let is_text = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("txt"));
        if is_text {
            let file = std::fs::File::open(path).map_err(|e| open_error(path, e))?;
            for (index, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| Error::io("cannot read", path, e))?;
                if !line.trim().is_empty() {
                    self.push_text(line, origin(index + 1));
                }
            }
            return Ok(());
        }
        Format::from_path(path).map_err(|e| {
            e.with_hint("corpus files are .txt (one text per line), .csv, .tsv, .jsonl or .parquet")
        })?;
        let source = DataSource {
            names: columns.names.clone(),
            columns: columns.columns.clone(),
            ..DataSource::new(path.to_string_lossy(), ".")
        };
        for row in source.open()? {
            let row = row?;
            let origin = origin(row.line);
            let mut texts: Vec<&str> = Vec::new();
            for field in &row.fields {
                match field {
                    Field::Text(text) => texts.push(text),
                    Field::List(list) => texts.extend(list.iter().map(String::as_str)),
                }
            }
            for text in &texts {
                self.push_text(text.to_string(), origin);
            }
            if let Some((first, rest)) = texts.split_first() {
                for other in rest {
                    self.push_pair(first.to_string(), other.to_string(), origin);
                }
            }
        }
        Ok(())
    }

    /// Add one text (not tied to a file).
    pub fn add_text(&mut self, text: impl Into<String>) {
        self.push_text(
            text.into(),
            Origin {
                file: NO_FILE,
                line: 0,
            },
        );
    }

    /// Add one (query, document) pair and both of its texts (not tied to a file).
    pub fn add_pair(&mut self, first: impl Into<String>, second: impl Into<String>) {
        let none = Origin {
            file: NO_FILE,
            line: 0,
        };
        let (first, second) = (first.into(), second.into());
        self.push_text(first.clone(), none);
        self.push_text(second.clone(), none);
        self.push_pair(first, second, none);
    }

    fn push_text(&mut self, text: String, origin: Origin) {
        if self.seen_texts.insert(text.clone()) {
            self.texts.push(text);
            self.text_origins.push(origin);
        }
    }

    fn push_pair(&mut self, first: String, second: String, origin: Origin) {
        let pair = (first, second);
        if self.seen_pairs.insert(pair.clone()) {
            self.pairs.push(pair);
            self.pair_origins.push(origin);
        }
    }

    /// The distinct single texts, in first-seen order.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// The distinct pairs, in first-seen order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The files read so far.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// True when the corpus has no text.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// An error about text `index` (`pair` selects the pair list): at its file and line when it
    /// came from a file.
    pub(crate) fn error_at(&self, pair: bool, index: usize, message: String) -> Error {
        let origin = if pair {
            self.pair_origins[index]
        } else {
            self.text_origins[index]
        };
        match self.files.get(origin.file as usize) {
            Some(path) => Error::input(path, Some(origin.line as usize), message),
            None => Error::invalid(message),
        }
    }
}

fn open_error(path: &Path, error: std::io::Error) -> Error {
    if error.kind() == std::io::ErrorKind::NotFound {
        Error::input(path, None, "corpus file not found").with_hint(
            "check the --corpus paths (relative paths are relative to the current directory)",
        )
    } else {
        Error::io("cannot read", path, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_give_texts_and_first_column_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("stsb.csv");
        std::fs::write(&csv, "a b,c d,4.0\na b,e,1.0\n").unwrap();
        let txt = dir.path().join("more.txt");
        std::fs::write(&txt, "x\n\n  \nc d\n").unwrap();
        let columns = CorpusColumns {
            names: Some(vec!["s1".into(), "s2".into(), "score".into()]),
            columns: None,
        };
        let corpus = TrimCorpus::read_files(&[csv.clone(), txt], &columns).unwrap();
        assert_eq!(corpus.texts(), ["a b", "c d", "e", "x"]);
        assert_eq!(
            corpus.pairs(),
            [("a b".into(), "c d".into()), ("a b".into(), "e".into())]
        );
        let error = corpus.error_at(true, 1, "boom".into()).to_string();
        assert_eq!(error, format!("{}:2: boom", csv.display()));
    }

    #[test]
    fn missing_and_unknown_files_are_input_errors() {
        let columns = CorpusColumns::default();
        let error = TrimCorpus::read_files(&[PathBuf::from("/nonexistent/x.txt")], &columns)
            .unwrap_err()
            .to_string();
        assert!(error.contains("corpus file not found"), "{error}");
        let error = TrimCorpus::read_files(&[PathBuf::from("/nonexistent/x.docx")], &columns)
            .unwrap_err()
            .to_string();
        assert!(error.contains(".txt (one text per line)"), "{error}");
    }
}
