//! The output directory of `trim-vocab`: which directories it may write, and the marker that
//! says a directory is its own.
//!
//! `--force` replaces a directory in whole, so it may only replace what trim-vocab wrote: a
//! directory holding [`MARKER`] and nothing but the files the marker lists (and the marker).
//! Anything else — the source model, a corpus file, a file the user added, a directory trim-vocab
//! did not write — makes the output refused before any work, and nothing is deleted.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

/// The marker file trim-vocab writes into every output directory (JSON: what wrote it, from
/// which model, and the files it wrote).
pub const MARKER: &str = "trim_vocab.json";

/// What the marker says `written_by`.
const WRITTEN_BY: &str = "crossdistill trim-vocab";

fn canonical(path: &Path) -> Option<PathBuf> {
    path.canonicalize().ok()
}

/// Check `output` before any work. Refused: the model directory or a path inside it; a directory
/// that holds the model or a corpus file; an existing path without `force`; with `force`, a file
/// or a directory that is not a complete trim-vocab output (see the module docs).
pub fn check_output(
    model_dir: &Path,
    corpus: &[PathBuf],
    output: &Path,
    force: bool,
) -> Result<()> {
    let model_dir = model_dir
        .canonicalize()
        .map_err(|e| Error::io("cannot read", model_dir, e))?;
    let parent = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let (Ok(parent), Some(name)) = (parent.canonicalize(), output.file_name()) {
        if parent.join(name).starts_with(&model_dir) {
            return Err(Error::invalid(format!(
                "the output {} is the model directory or inside it ({})",
                output.display(),
                model_dir.display()
            ))
            .with_hint("write the trimmed model to a new directory next to the original"));
        }
    }
    if !output.exists() {
        return Ok(());
    }
    let Some(resolved) = canonical(output) else {
        return Err(refused(output, "it cannot be resolved"));
    };
    if model_dir.starts_with(&resolved) {
        return Err(refused(
            output,
            &format!("it contains the source model {}", model_dir.display()),
        ));
    }
    if let Some(file) = corpus
        .iter()
        .find(|file| canonical(file).is_some_and(|file| file.starts_with(&resolved)))
    {
        return Err(refused(
            output,
            &format!("it contains the corpus file {}", file.display()),
        ));
    }
    if !resolved.is_dir() {
        return Err(refused(output, "it is a file, not a directory"));
    }
    if !force {
        return Err(
            Error::invalid(format!("the output {} already exists", output.display())).with_hint(
                "choose a new directory, or pass --force to replace a previous trim-vocab output",
            ),
        );
    }
    let entries = list_dir(output)?;
    if entries.is_empty() {
        return Ok(());
    }
    let marker = output.join(MARKER);
    let Some(owned) = read_marker(&marker) else {
        return Err(refused(
            output,
            &format!("it was not written by trim-vocab (no valid {MARKER} in it)"),
        ));
    };
    let foreign: Vec<&String> = entries
        .iter()
        .filter(|name| name.as_str() != MARKER && !owned.contains(name))
        .collect();
    if !foreign.is_empty() {
        let shown: Vec<&str> = foreign.iter().take(5).map(|name| name.as_str()).collect();
        let more = if foreign.len() > shown.len() {
            format!(" and {} more", foreign.len() - shown.len())
        } else {
            String::new()
        };
        return Err(refused(
            output,
            &format!(
                "it holds files trim-vocab did not write: {}{more}",
                shown.join(", ")
            ),
        ));
    }
    Ok(())
}

fn refused(output: &Path, why: &str) -> Error {
    Error::invalid(format!(
        "refusing to replace the output {}: {why}",
        output.display()
    ))
    .with_hint(
        "--force replaces only a previous trim-vocab output; choose a new directory for --output",
    )
}

/// The names in `dir` (files and directories, hidden ones too).
fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("cannot read", dir, e))? {
        let entry = entry.map_err(|e| Error::io("cannot read", dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// The files a marker lists, or `None` when it is missing, unreadable or not trim-vocab's.
fn read_marker(path: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    if value.get("written_by")?.as_str()? != WRITTEN_BY {
        return None;
    }
    value
        .get("files")?
        .as_array()?
        .iter()
        .map(|name| name.as_str().map(str::to_string))
        .collect()
}

/// Write the marker into `dir` (the staged output), listing every file already in it.
pub fn write_marker(dir: &Path, source_model: &str) -> Result<()> {
    let files: Vec<String> = list_dir(dir)?
        .into_iter()
        .filter(|name| name != MARKER)
        .collect();
    let value = serde_json::json!({
        "written_by": WRITTEN_BY,
        "version": env!("CARGO_PKG_VERSION"),
        "source_model": source_model,
        "files": files,
    });
    let text = serde_json::to_string_pretty(&value)?;
    write_atomic(&dir.join(MARKER), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("model");
        std::fs::create_dir(&model).unwrap();
        let corpus = tmp.path().join("corpus.txt");
        std::fs::write(&corpus, "text\n").unwrap();
        (tmp, model, corpus)
    }

    #[test]
    fn force_replaces_only_a_marked_output() {
        let (tmp, model, corpus) = setup();
        let corpus = vec![corpus];
        let out = tmp.path().join("out");
        check_output(&model, &corpus, &out, false).unwrap();
        std::fs::create_dir(&out).unwrap();
        // An empty directory holds nothing to lose.
        check_output(&model, &corpus, &out, true).unwrap();
        std::fs::write(out.join("config.json"), "{}").unwrap();
        let message = check_output(&model, &corpus, &out, true)
            .unwrap_err()
            .to_string();
        assert!(message.contains("not written by trim-vocab"), "{message}");
        write_marker(&out, "model").unwrap();
        check_output(&model, &corpus, &out, true).unwrap();
        let message = check_output(&model, &corpus, &out, false)
            .unwrap_err()
            .to_string();
        assert!(message.contains("already exists"), "{message}");
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        let message = check_output(&model, &corpus, &out, true)
            .unwrap_err()
            .to_string();
        assert!(message.contains("did not write: notes.txt"), "{message}");
    }

    #[test]
    fn an_output_holding_the_model_or_the_corpus_is_refused() {
        let (tmp, model, corpus) = setup();
        let message = check_output(&model, std::slice::from_ref(&corpus), tmp.path(), true)
            .unwrap_err()
            .to_string();
        assert!(message.contains("contains the source model"), "{message}");
        let elsewhere = tempfile::tempdir().unwrap();
        let other_model = elsewhere.path().join("m");
        std::fs::create_dir(&other_model).unwrap();
        let message = check_output(&other_model, &[corpus], tmp.path(), true)
            .unwrap_err()
            .to_string();
        assert!(message.contains("contains the corpus file"), "{message}");
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let message = check_output(&other_model, &[], &file, true)
            .unwrap_err()
            .to_string();
        assert!(message.contains("is a file"), "{message}");
    }
}
