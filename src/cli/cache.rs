//! `crossdistill cache stats|export|import|merge`: look into and move teacher-score caches.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::Outcome;
use crate::cache::{export, export_readable, import, ExportFormat, InsertReport, ScoreCache};
use crate::error::{Error, Result};

/// `cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Entries per teacher, distinct pairs and size on disk, after reading and checking every
    /// entry (a damaged cache is an error).
    Stats {
        /// The cache directory.
        dir: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write the scores to Parquet or JSONL (columns query, passage, score, teacher).
    Export {
        /// The cache directory.
        dir: PathBuf,
        /// parquet or jsonl (default: from the output's extension).
        #[arg(long, value_parser = ["parquet", "jsonl"])]
        format: Option<String>,
        /// The file to write (replaced atomically).
        #[arg(long)]
        output: PathBuf,
        /// Only this teacher's scores (a fingerprint from `cache stats`).
        #[arg(long)]
        teacher: Option<String>,
        /// Skip entries that fail their checks (to save what a damaged cache still holds)
        /// instead of stopping at the first.
        #[arg(long)]
        skip_damaged: bool,
    },
    /// Add scores computed elsewhere (JSONL, CSV/TSV or Parquet with query, passage, score).
    Import {
        /// The cache directory (created when missing).
        dir: PathBuf,
        /// The file to read.
        #[arg(long)]
        input: PathBuf,
        /// Store every row under this teacher fingerprint (default: each row's `teacher`).
        #[arg(long)]
        teacher: Option<String>,
    },
    /// Join caches (e.g. the shards of `score --shard`) into OUT; existing scores are kept.
    Merge {
        /// The cache to merge into (created when missing).
        out: PathBuf,
        /// The caches to merge from.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

pub(super) fn run(command: CacheCommand) -> Result<Outcome> {
    match command {
        CacheCommand::Stats { dir, json } => stats(&dir, json),
        CacheCommand::Export {
            dir,
            format,
            output,
            teacher,
            skip_damaged,
        } => {
            let format = match format {
                Some(name) => name.parse()?,
                None => format_from_extension(&output)?,
            };
            let cache = ScoreCache::open_existing(&dir)?;
            if skip_damaged {
                let (rows, skipped) = export_readable(&cache, teacher.as_deref(), format, &output)?;
                println!(
                    "exported {rows} scores to {}; skipped {skipped} damaged entries",
                    output.display()
                );
            } else {
                let rows = export(&cache, teacher.as_deref(), format, &output)?;
                println!("exported {rows} scores to {}", output.display());
            }
            Ok(Outcome::Success)
        }
        CacheCommand::Import {
            dir,
            input,
            teacher,
        } => {
            let mut cache = ScoreCache::open(&dir)?;
            let report = import(&mut cache, &input, teacher.as_deref())?;
            println!(
                "imported {} rows into {}: {} new, {} already cached, {} conflicts (cached score kept)",
                report.rows,
                dir.display(),
                report.added,
                report.present,
                report.conflicts
            );
            Ok(Outcome::Success)
        }
        CacheCommand::Merge { out, inputs } => merge(&out, &inputs),
    }
}

fn format_from_extension(output: &Path) -> Result<ExportFormat> {
    match output.extension().and_then(|e| e.to_str()) {
        Some("parquet") => Ok(ExportFormat::Parquet),
        Some("jsonl") | Some("json") => Ok(ExportFormat::Jsonl),
        _ => Err(Error::invalid(format!(
            "cannot tell the export format of {}: expected a .parquet or .jsonl file",
            output.display()
        ))
        .with_hint("pass --format parquet or --format jsonl")),
    }
}

fn stats(dir: &Path, json: bool) -> Result<Outcome> {
    let cache = ScoreCache::open_existing(dir)?;
    let verified = cache.verify()?;
    let stats = cache.stats()?;
    if json {
        let mut value = serde_json::to_value(&stats)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("verified_entries".into(), verified.into());
        }
        println!("{value}");
        return Ok(Outcome::Success);
    }
    println!(
        "{}: {} bytes, {} distinct pairs, {} teacher(s)",
        stats.path.display(),
        stats.bytes,
        stats.pairs,
        stats.teachers.len()
    );
    for teacher in &stats.teachers {
        println!("{:>12} {}", teacher.entries, teacher.teacher);
    }
    println!("all {verified} entries read and checked");
    Ok(Outcome::Success)
}

fn merge(out: &Path, inputs: &[PathBuf]) -> Result<Outcome> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if let Some(input) = inputs.iter().find(|input| same(input, out)) {
        return Err(
            Error::invalid(format!("cannot merge {} into itself", input.display()))
                .with_hint("name the output cache first, then the other caches"),
        );
    }
    // Open every input first, so a wrong path fails before anything is written.
    let opened: Vec<ScoreCache> = inputs
        .iter()
        .map(|input| ScoreCache::open_existing(input))
        .collect::<Result<_>>()?;
    let mut cache = ScoreCache::open(out)?;
    let mut report = InsertReport::default();
    for input in &opened {
        report.add(cache.merge_from(input)?);
    }
    println!(
        "merged {} cache(s) into {}: {} new scores, {} already there, {} conflicts (kept {}'s)",
        inputs.len(),
        out.display(),
        report.added,
        report.present,
        report.conflicts,
        out.display()
    );
    Ok(Outcome::Success)
}
