//! Where rows come from: a file, its format, and the columns a recipe picks.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::columns::{ColumnOptions, Selection};
use super::csv::CsvRows;
use super::jsonl::JsonlRows;
use super::parquet::ParquetRows;
use super::row::Row;
use crate::error::{Error, Result};
use crate::hub::{self, RepoKind};

/// A data file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON Lines: one JSON object per line (`.jsonl`, `.json`, `.ndjson`).
    Jsonl,
    /// Comma-separated values with `"` quoting (`.csv`).
    Csv,
    /// Tab-separated values, without quoting: a `"` is an ordinary character (`.tsv`).
    Tsv,
    /// Apache Parquet (`.parquet`), read column by column in batches.
    Parquet,
}

/// File extensions and the format each one means.
const EXTENSIONS: [(&str, Format); 6] = [
    ("jsonl", Format::Jsonl),
    ("json", Format::Jsonl),
    ("ndjson", Format::Jsonl),
    ("csv", Format::Csv),
    ("tsv", Format::Tsv),
    ("parquet", Format::Parquet),
];

fn supported_extensions() -> String {
    EXTENSIONS
        .iter()
        .map(|(extension, _)| format!(".{extension}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Format {
    /// The format named by `path`'s extension (case-insensitive), or an error that lists the
    /// supported extensions.
    pub fn from_path(path: &Path) -> Result<Format> {
        let extension = path
            .extension()
            .and_then(|extension| extension.to_str())
            .unwrap_or("");
        EXTENSIONS
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(extension))
            .map(|&(_, format)| format)
            .ok_or_else(|| {
                let found = if extension.is_empty() {
                    "no extension".to_string()
                } else {
                    format!("extension `.{extension}`")
                };
                Error::input(
                    path,
                    None,
                    format!(
                        "cannot tell the data format from {found}; expected one of {}",
                        supported_extensions()
                    ),
                )
                .with_hint(
                    "rename the file, or set `format` (jsonl, csv, tsv, parquet) in the recipe's data section",
                )
            })
    }

    /// The lowercase name used in recipes: `jsonl`, `csv`, `tsv`, `parquet`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Parquet => "parquet",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = Error;

    /// A format name (`jsonl`, `csv`, `tsv`, `parquet`) or any supported extension (`json`, ...).
    fn from_str(name: &str) -> Result<Format> {
        let name = name.trim_start_matches('.');
        EXTENSIONS
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|&(_, format)| format)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown data format `{name}`; expected jsonl, csv, tsv or parquet"
                ))
            })
    }
}

/// A data file and how to read it: what a recipe's `[data.train]` or `[data.eval]` says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataSource {
    /// A local path (relative ones resolve against [`base_dir`](Self::base_dir)), or
    /// `hf://datasets/OWNER/NAME[@REVISION]/path/in/repo.ext` for a file of a Hugging Face
    /// dataset repository (`hf://OWNER/NAME/...` for a model repository), found in the HF cache
    /// or downloaded unless `HF_HUB_OFFLINE` is set. A `/` inside a revision is written `%2F`.
    pub path: String,
    /// The directory relative local paths resolve against (the recipe file's directory).
    pub base_dir: PathBuf,
    /// The input columns, in order. Default: every column except the label column and
    /// `dataset_name`, in file order.
    pub columns: Option<Vec<String>>,
    /// The label column. Default: the first of
    /// [`LABEL_COLUMN_CANDIDATES`](super::LABEL_COLUMN_CANDIDATES) present, else none.
    pub label: Option<String>,
    /// Column names for a CSV/TSV file without a header row (its first line is then data).
    /// Ignored for JSONL and Parquet.
    pub names: Option<Vec<String>>,
    /// The file's format. Default: from the extension (see [`Format::from_path`]).
    pub format: Option<Format>,
}

impl DataSource {
    /// A source reading every column of `path` with the default label detection.
    pub fn new(path: impl Into<String>, base_dir: impl Into<PathBuf>) -> Self {
        DataSource {
            path: path.into(),
            base_dir: base_dir.into(),
            ..DataSource::default()
        }
    }

    /// The format: [`format`](Self::format) when set, else the one the path's extension names.
    pub fn format(&self) -> Result<Format> {
        match self.format {
            Some(format) => Ok(format),
            None => Format::from_path(Path::new(&self.path)),
        }
    }

    /// The local file to read: `base_dir/path` for a relative path, the cached (or downloaded)
    /// file for an `hf://` path. Does not check that a local file exists.
    pub fn resolve_path(&self) -> Result<PathBuf> {
        match parse_hub_path(&self.path) {
            Some(hub_path) => {
                let (repo_id, kind, file) = hub_path?;
                hub::resolve_file(&repo_id, kind, &file).map_err(|error| match error {
                    // The hub reports in terms of models; say which data file it was.
                    Error::Model { message, .. } => Error::input(
                        &self.path,
                        None,
                        format!("cannot get the data file from {repo_id}: {message}"),
                    )
                    .with_hint(
                        "fill the Hugging Face cache (or unset HF_HUB_OFFLINE to download), \
                         or point `path` at a local file",
                    ),
                    other => other,
                })
            }
            None => Ok(self.base_dir.join(&self.path)),
        }
    }

    /// Open a fresh stream over the rows (call it once per epoch). Reads the first row (the
    /// header and first record for CSV/TSV, the schema for Parquet) to choose the columns, so a
    /// missing file, an unknown column, a wrong type in the first row or an empty file fail
    /// here, not at the first [`Iterator::next`].
    pub fn open(&self) -> Result<RowReader> {
        let format = self.format()?;
        let path = self.resolve_path()?;
        let file = open_file(&path, &self.path, &self.base_dir)?;
        let options = ColumnOptions {
            columns: self.columns.as_deref(),
            label: self.label.as_deref(),
            names: self.names.as_deref(),
        };
        let rows = match format {
            Format::Jsonl => Rows::Jsonl(JsonlRows::open(file, &path, &options)?),
            Format::Csv => Rows::Csv(CsvRows::open(file, &path, b',', &options)?),
            Format::Tsv => Rows::Csv(CsvRows::open(file, &path, b'\t', &options)?),
            Format::Parquet => Rows::Parquet(ParquetRows::open(file, &path, &options)?),
        };
        Ok(RowReader {
            path,
            rows,
            failed: false,
        })
    }
}

fn open_file(path: &Path, given: &str, base_dir: &Path) -> Result<File> {
    let file = File::open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            // A source from the command line (or a recipe in the working directory) resolves
            // against the working directory: say that, not "the recipe's directory".
            if base_dir.as_os_str().is_empty() || base_dir == Path::new(".") {
                Error::input(path, None, "file not found")
                    .with_hint("check the path; a relative path is relative to the current directory")
            } else {
                Error::input(
                    path,
                    None,
                    format!(
                        "data file not found (`{given}`, resolved against {})",
                        base_dir.display()
                    ),
                )
                .with_hint("check `path` in the recipe's data section; relative paths are relative to the recipe file's directory")
            }
        } else {
            Error::io("cannot read", path, source)
        }
    })?;
    let metadata = file
        .metadata()
        .map_err(|source| Error::io("cannot read", path, source))?;
    if metadata.is_dir() {
        return Err(
            Error::input(path, None, "is a directory; expected a data file")
                .with_hint("point `path` at one .jsonl, .csv, .tsv or .parquet file"),
        );
    }
    Ok(file)
}

/// Split `hf://[datasets/]OWNER/NAME[@REVISION]/FILE` into (`OWNER/NAME[@REVISION]`, kind,
/// `FILE`); `None` when `path` is not an `hf://` path.
pub(crate) fn parse_hub_path(path: &str) -> Option<Result<(String, RepoKind, String)>> {
    let rest = path.strip_prefix("hf://")?;
    let (kind, rest) = match rest.strip_prefix("datasets/") {
        Some(rest) => (RepoKind::Dataset, rest),
        None => (RepoKind::Model, rest),
    };
    let mut parts = rest.splitn(3, '/');
    let parsed = match (parts.next(), parts.next(), parts.next()) {
        (Some(owner), Some(name_revision), Some(file))
            if !owner.is_empty()
                && !name_revision.is_empty()
                && !name_revision.starts_with('@')
                && !file.is_empty()
                && !matches!(owner, "spaces" | "buckets") =>
        {
            let repo_id = format!("{owner}/{}", name_revision.replace("%2F", "/"));
            Ok((repo_id, kind, file.to_string()))
        }
        _ => Err(Error::invalid(format!(
            "`{path}` is not a hub file path; expected hf://datasets/OWNER/NAME[@REVISION]/PATH/IN/REPO"
        ))
        .with_hint("e.g. hf://datasets/sentence-transformers/stsb/train.jsonl")),
    };
    Some(parsed)
}

enum Rows {
    Jsonl(JsonlRows),
    Csv(CsvRows),
    Parquet(ParquetRows),
}

impl Rows {
    fn selection(&self) -> &Selection {
        match self {
            Rows::Jsonl(rows) => rows.selection(),
            Rows::Csv(rows) => rows.selection(),
            Rows::Parquet(rows) => rows.selection(),
        }
    }
}

/// A stream of [`Row`]s from one file, opened by [`DataSource::open`].
///
/// Each item is one row, checked: its cells have the first row's shape, list cells and a list
/// label agree in length, labels are finite. The first error ends the stream (the next call
/// returns `None`). The reader is `Send`, so a producer thread can own it.
pub struct RowReader {
    path: PathBuf,
    rows: Rows,
    failed: bool,
}

impl RowReader {
    /// The input columns, in the order of [`Row::fields`].
    pub fn input_columns(&self) -> &[String] {
        &self.rows.selection().inputs
    }

    /// The label column, when the source has one.
    pub fn label_column(&self) -> Option<&str> {
        self.rows.selection().label.as_deref()
    }

    /// The local file being read (for `hf://` sources, the file in the HF cache).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Count the rows not yet read, without building or checking them (Parquet reads only the
    /// file's metadata).
    fn count_remaining(self) -> Result<usize> {
        match self.rows {
            Rows::Jsonl(rows) => rows.count_remaining(),
            Rows::Csv(rows) => rows.count_remaining(),
            Rows::Parquet(rows) => Ok(rows.count_remaining()),
        }
    }
}

impl std::fmt::Debug for RowReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowReader")
            .field("path", &self.path)
            .field("input_columns", &self.input_columns())
            .field("label_column", &self.label_column())
            .finish_non_exhaustive()
    }
}

impl Iterator for RowReader {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Result<Row>> {
        if self.failed {
            return None;
        }
        let next = match &mut self.rows {
            Rows::Jsonl(rows) => rows.next(),
            Rows::Csv(rows) => rows.next(),
            Rows::Parquet(rows) => rows.next(),
        };
        self.failed = matches!(next, Some(Err(_)));
        next
    }
}

/// The number of rows in `source`, counted by streaming through the file without building rows
/// (Parquet: from its metadata). Opens the source first, so it fails as [`DataSource::open`]
/// does (an empty file, a missing column) and counts exactly the rows a reader yields; blank
/// JSONL lines are not rows.
pub fn count_rows(source: &DataSource) -> Result<usize> {
    source.open()?.count_remaining()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_follows_the_extension_and_unknown_ones_are_listed() {
        let cases = [
            ("a/train.jsonl", Format::Jsonl),
            ("train.JSON", Format::Jsonl),
            ("x.ndjson", Format::Jsonl),
            ("stsb.csv", Format::Csv),
            ("triples.tsv", Format::Tsv),
            (
                "hf://datasets/o/n/data/train-00000.parquet",
                Format::Parquet,
            ),
        ];
        for (path, format) in cases {
            assert_eq!(
                Format::from_path(Path::new(path)).unwrap(),
                format,
                "{path}"
            );
        }
        let error = Format::from_path(Path::new("data/train.txt"))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("data/train.txt: "), "{error}");
        assert!(error.contains("extension `.txt`"), "{error}");
        assert!(
            error.contains(".jsonl, .json, .ndjson, .csv, .tsv, .parquet"),
            "{error}"
        );
        assert!(error.contains("set `format`"), "{error}");

        let source = DataSource {
            format: Some(Format::Csv),
            ..DataSource::new("data/train.txt", ".")
        };
        assert_eq!(source.format().unwrap(), Format::Csv);
        assert_eq!("parquet".parse::<Format>().unwrap(), Format::Parquet);
        assert_eq!(".json".parse::<Format>().unwrap(), Format::Jsonl);
        assert!("xlsx".parse::<Format>().is_err());
    }

    #[test]
    fn hub_paths_split_into_repo_kind_and_file() {
        let (repo, kind, file) =
            parse_hub_path("hf://datasets/sentence-transformers/stsb/train.jsonl")
                .unwrap()
                .unwrap();
        assert_eq!(
            (repo.as_str(), kind, file.as_str()),
            (
                "sentence-transformers/stsb",
                RepoKind::Dataset,
                "train.jsonl"
            )
        );
        let (repo, kind, file) = parse_hub_path("hf://datasets/o/n@refs%2Fpr%2F3/data/a.parquet")
            .unwrap()
            .unwrap();
        assert_eq!(
            (repo.as_str(), kind, file.as_str()),
            ("o/n@refs/pr/3", RepoKind::Dataset, "data/a.parquet")
        );
        let (repo, kind, _) = parse_hub_path("hf://o/model/x.jsonl").unwrap().unwrap();
        assert_eq!((repo.as_str(), kind), ("o/model", RepoKind::Model));
        assert!(parse_hub_path("data/train.jsonl").is_none());
        for bad in [
            "hf://datasets/o/n",
            "hf://datasets/o//f.jsonl",
            "hf://spaces/o/n/f.csv",
        ] {
            let error = parse_hub_path(bad).unwrap().unwrap_err().to_string();
            assert!(error.contains("hf://datasets/OWNER/NAME"), "{bad}: {error}");
        }
    }

    #[test]
    fn row_reader_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<RowReader>();
    }
}
