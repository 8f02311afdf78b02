//! Moving scores in and out of a cache as files: `cache export` (Parquet or JSONL with columns
//! `query`, `passage`, `score`, `teacher`, which pandas and `datasets` read) and `cache import`
//! (the same files, or scores computed elsewhere).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use arrow_array::builder::{Float32Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field as ArrowField, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::store::{CacheEntry, EntryBatch, InsertReport, ScoreCache, MERGE_CHUNK};
use crate::data::{DataSource, Field, Label};
use crate::error::{Error, Result};

/// Rows per Parquet record batch.
const PARQUET_BATCH: usize = 8192;

/// The columns of an exported file, in order.
pub const EXPORT_COLUMNS: [&str; 4] = ["query", "passage", "score", "teacher"];

/// File formats of `cache export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Apache Parquet (snappy).
    Parquet,
    /// JSON Lines, one object per score.
    Jsonl,
}

impl FromStr for ExportFormat {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "parquet" => Ok(ExportFormat::Parquet),
            "jsonl" => Ok(ExportFormat::Jsonl),
            other => Err(Error::invalid(format!(
                "export format `{other}`: expected parquet or jsonl"
            ))),
        }
    }
}

/// Write every score of `cache` (of `teacher` only, when given) to `output`, atomically (a
/// temporary file renamed into place). Returns the number of rows written.
pub fn export(
    cache: &ScoreCache,
    teacher: Option<&str>,
    format: ExportFormat,
    output: &Path,
) -> Result<u64> {
    export_entries(cache, teacher, format, output, false).map(|(rows, _)| rows)
}

/// [`export`] the entries that pass their checks, skipping damaged ones (to save what a
/// damaged cache still holds). Returns the rows written and the entries skipped.
pub fn export_readable(
    cache: &ScoreCache,
    teacher: Option<&str>,
    format: ExportFormat,
    output: &Path,
) -> Result<(u64, u64)> {
    export_entries(cache, teacher, format, output, true)
}

fn export_entries(
    cache: &ScoreCache,
    teacher: Option<&str>,
    format: ExportFormat,
    output: &Path,
    skip_damaged: bool,
) -> Result<(u64, u64)> {
    if let Some(teacher) = teacher {
        if cache.entries(teacher)? == 0 {
            return Err(no_such_teacher(cache, teacher)?);
        }
    }
    let temporary = temporary_sibling(output)?;
    let written = File::create(&temporary)
        .map_err(|e| Error::io("cannot create", &temporary, e))
        .and_then(|file| match format {
            ExportFormat::Jsonl => export_jsonl(cache, teacher, skip_damaged, file, &temporary),
            ExportFormat::Parquet => export_parquet(cache, teacher, skip_damaged, file, &temporary),
        })
        .and_then(|rows| {
            std::fs::rename(&temporary, output)
                .map_err(|e| Error::io("cannot move into place", output, e))?;
            Ok(rows)
        });
    if written.is_err() {
        // The export already failed; a leftover temporary file is the lesser problem.
        let _ = std::fs::remove_file(&temporary);
    }
    let rows = written?;
    crate::fsutil::sync_dir(output.parent().unwrap_or(Path::new(".")))?;
    Ok(rows)
}

fn no_such_teacher(cache: &ScoreCache, teacher: &str) -> Result<Error> {
    let known: Vec<String> = cache
        .stats()?
        .teachers
        .into_iter()
        .map(|t| t.teacher)
        .collect();
    Ok(Error::invalid(format!(
        "the cache {} has no scores of teacher `{teacher}`; it has {}",
        cache.dir().display(),
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    ))
    .with_hint("copy a fingerprint from `crossdistill cache stats DIR`"))
}

fn temporary_sibling(output: &Path) -> Result<PathBuf> {
    let name = output.file_name().ok_or_else(|| {
        Error::invalid(format!(
            "cannot export to {}: expected a file path, found no file name",
            output.display()
        ))
    })?;
    Ok(output.with_file_name(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// An entry's score must be finite: JSON has no NaN (it would be written as `null`, which
/// `import` rejects), and a non-finite teacher score is no label. Caches written by versions
/// before scores were checked may hold one.
fn finite(entry: &CacheEntry) -> Result<()> {
    if entry.score.is_finite() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "the cache holds the non-finite score {} of teacher {} for the pair ({:?}, {:?})",
        entry.score, entry.teacher, entry.query, entry.passage
    ))
    .with_hint("the teacher gives non-finite scores for this pair: fix the teacher and rebuild the cache in a new directory with `crossdistill score`"))
}

/// Visit the entries strictly, or skipping damaged ones; returns how many were skipped.
fn visit_entries(
    cache: &ScoreCache,
    teacher: Option<&str>,
    skip_damaged: bool,
    visit: impl FnMut(super::store::CacheEntry<'_>) -> Result<()>,
) -> Result<u64> {
    if skip_damaged {
        cache.for_each_readable(teacher, visit)
    } else {
        cache.for_each(teacher, visit).map(|()| 0)
    }
}

fn export_jsonl(
    cache: &ScoreCache,
    teacher: Option<&str>,
    skip_damaged: bool,
    file: File,
    path: &Path,
) -> Result<(u64, u64)> {
    let io_error = |e| Error::io("cannot write", path, e);
    let mut writer = BufWriter::new(file);
    let mut rows = 0u64;
    let skipped = visit_entries(cache, teacher, skip_damaged, |entry| {
        finite(&entry)?;
        let row = serde_json::json!({
            "query": entry.query,
            "passage": entry.passage,
            "score": entry.score,
            "teacher": entry.teacher,
        });
        serde_json::to_writer(&mut writer, &row).map_err(|e| io_error(e.into()))?;
        writer.write_all(b"\n").map_err(io_error)?;
        rows += 1;
        Ok(())
    })?;
    let file = writer.into_inner().map_err(|e| io_error(e.into_error()))?;
    file.sync_all().map_err(io_error)?;
    Ok((rows, skipped))
}

struct ParquetColumns {
    query: StringBuilder,
    passage: StringBuilder,
    score: Float32Builder,
    teacher: StringBuilder,
    rows: usize,
}

impl ParquetColumns {
    fn new() -> Self {
        Self {
            query: StringBuilder::new(),
            passage: StringBuilder::new(),
            score: Float32Builder::new(),
            teacher: StringBuilder::new(),
            rows: 0,
        }
    }

    fn batch(&mut self, schema: &SchemaRef) -> std::result::Result<RecordBatch, String> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.query.finish()),
            Arc::new(self.passage.finish()),
            Arc::new(self.score.finish()),
            Arc::new(self.teacher.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
    }
}

fn export_parquet(
    cache: &ScoreCache,
    teacher: Option<&str>,
    skip_damaged: bool,
    file: File,
    path: &Path,
) -> Result<(u64, u64)> {
    let parquet_error = |e: parquet::errors::ParquetError| {
        Error::io("cannot write", path, std::io::Error::other(e))
    };
    let arrow_error = |e: String| Error::io("cannot write", path, std::io::Error::other(e));
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        ArrowField::new(EXPORT_COLUMNS[0], DataType::Utf8, false),
        ArrowField::new(EXPORT_COLUMNS[1], DataType::Utf8, false),
        ArrowField::new(EXPORT_COLUMNS[2], DataType::Float32, false),
        ArrowField::new(EXPORT_COLUMNS[3], DataType::Utf8, false),
    ]));
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(properties)).map_err(parquet_error)?;
    let mut columns = ParquetColumns::new();
    let mut rows = 0u64;
    let skipped = visit_entries(cache, teacher, skip_damaged, |entry| {
        finite(&entry)?;
        columns.query.append_value(entry.query);
        columns.passage.append_value(entry.passage);
        columns.score.append_value(entry.score);
        columns.teacher.append_value(entry.teacher);
        columns.rows += 1;
        rows += 1;
        if columns.rows == PARQUET_BATCH {
            let batch = columns.batch(&schema).map_err(arrow_error)?;
            writer.write(&batch).map_err(parquet_error)?;
        }
        Ok(())
    })?;
    if columns.rows > 0 {
        let batch = columns.batch(&schema).map_err(arrow_error)?;
        writer.write(&batch).map_err(parquet_error)?;
    }
    let file = writer.into_inner().map_err(parquet_error)?;
    file.sync_all()
        .map_err(|e| Error::io("cannot write", path, e))?;
    Ok((rows, skipped))
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Rows read.
    pub rows: u64,
    /// New scores committed.
    pub added: u64,
    /// Rows the cache already had with the same score.
    pub present: u64,
    /// Rows the cache already had with another score (the cached one was kept).
    pub conflicts: u64,
}

/// Import the scores in `input` (JSONL, CSV/TSV or Parquet, by extension) into `cache`.
///
/// Rows need `query`, `passage` and a number `score`. With `teacher` given every row is stored
/// under that fingerprint (a row whose own `teacher` column names another one is an error: the
/// file mixes teachers); without it every row needs a `teacher` column (as `export` writes).
/// Scores are committed every [`MERGE_CHUNK`] rows, so an interrupted import can be rerun.
pub fn import(cache: &mut ScoreCache, input: &Path, teacher: Option<&str>) -> Result<ImportReport> {
    if teacher.is_some_and(str::is_empty) {
        return Err(Error::invalid("--teacher is empty; expected a fingerprint")
            .with_hint("copy one from `crossdistill cache stats DIR`"));
    }
    let source = DataSource {
        path: input.display().to_string(),
        base_dir: PathBuf::new(),
        label: Some(EXPORT_COLUMNS[2].to_string()),
        ..DataSource::default()
    };
    let reader = source.open()?;
    let columns = reader.input_columns().to_vec();
    let position = |name: &str| columns.iter().position(|c| c == name);
    let (Some(query_at), Some(passage_at)) = (position("query"), position("passage")) else {
        return Err(Error::input(
            input,
            None,
            format!(
                "expected columns query, passage and score, found {}",
                columns.join(", ")
            ),
        )
        .with_hint("rename the columns, e.g. with pandas: df.rename(columns={...})"));
    };
    let teacher_at = position("teacher");
    if teacher.is_none() && teacher_at.is_none() {
        return Err(Error::input(
            input,
            None,
            "no `teacher` column, and no --teacher given: whose scores are these?",
        )
        .with_hint(
            "pass --teacher FINGERPRINT (the teacher's fingerprint, see `crossdistill cache stats`)",
        ));
    }
    let mut report = ImportReport::default();
    let mut batch = EntryBatch::default();
    let mut add = |batch: &mut EntryBatch, cache: &mut ScoreCache| -> Result<()> {
        let inserted: InsertReport = batch.flush(cache)?;
        report.added += inserted.added;
        report.present += inserted.present;
        report.conflicts += inserted.conflicts;
        Ok(())
    };
    let mut rows = 0u64;
    for row in reader {
        let row = row?;
        let text = |at: usize, name: &str| -> Result<String> {
            match row.fields.get(at) {
                Some(Field::Text(text)) => Ok(text.clone()),
                _ => Err(Error::input(
                    input,
                    Some(row.line),
                    format!("`{name}` must be a text, found a list"),
                )),
            }
        };
        let query = text(query_at, "query")?;
        let passage = text(passage_at, "passage")?;
        let row_teacher = teacher_at.map(|at| text(at, "teacher")).transpose()?;
        let owner = match (teacher, row_teacher) {
            (Some(given), Some(own)) if own != given => {
                return Err(Error::input(
                    input,
                    Some(row.line),
                    format!("the row's teacher `{own}` is not --teacher `{given}`"),
                )
                .with_hint("the file mixes teachers: drop --teacher to import each row under its own teacher"));
            }
            (Some(given), _) => given.to_string(),
            (None, Some(own)) => own,
            (None, None) => unreachable!("checked above: a teacher column or --teacher"),
        };
        let score =
            match &row.label {
                Some(Label::Scalar(score)) if score.is_finite() => *score,
                Some(Label::Scalar(score)) => return Err(Error::input(
                    input,
                    Some(row.line),
                    format!("`score` is {score}; a teacher score must be a finite number"),
                )
                .with_hint(
                    "drop the row, or score the pair again with a teacher that gives finite scores",
                )),
                _ => {
                    return Err(Error::input(
                        input,
                        Some(row.line),
                        "`score` must be one number",
                    ))
                }
            };
        if owner != batch.teacher || batch.entries.len() >= MERGE_CHUNK {
            add(&mut batch, cache)?;
            batch.teacher = owner;
        }
        batch.entries.push((query, passage, score));
        rows += 1;
    }
    add(&mut batch, cache)?;
    report.rows = rows;
    Ok(report)
}
