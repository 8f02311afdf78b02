//! A damaged teacher-score cache is never trusted and never panics: a truncated `scores.redb`,
//! one with the 4 KiB page of the scores zeroed, and one with a single score overwritten each
//! make `cache stats`, `cache export`, `cache merge` and `train` exit 2 with one `error:` line
//! that names the file and says what to do. `cache export --skip-damaged` saves the entries that
//! still verify. Reading a cache never writes it.

use std::path::{Path, PathBuf};

use crossdistill::cache::{PairKey, ScoreCache};

use crate::common::{crossdistill, stderr, write_distill_recipe};

/// A recipe with a `[cache]` in `dir`, and its cache filled by `score`.
fn scored_cache(dir: &Path) -> (PathBuf, PathBuf) {
    let recipe = write_distill_recipe(dir, 16, 4, "max_steps = 2");
    let mut text = std::fs::read_to_string(&recipe).unwrap();
    text.push_str("\n[cache]\ndir = \"cache\"\n");
    std::fs::write(&recipe, text).unwrap();
    let output = crossdistill(&["score", recipe.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    (recipe, dir.join("cache"))
}

/// The first entry of the cache: (query, passage, score).
fn first_entry(cache: &Path) -> (String, String, f32) {
    let cache = ScoreCache::open_existing(cache).unwrap();
    let mut first = None;
    cache
        .for_each(None, |entry| {
            if first.is_none() {
                first = Some((
                    entry.query.to_string(),
                    entry.passage.to_string(),
                    entry.score,
                ));
            }
            Ok(())
        })
        .unwrap();
    first.expect("the cache has entries")
}

/// Offsets of every occurrence of `needle` in `haystack`.
fn occurrences(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, window)| *window == needle)
        .map(|(offset, _)| offset)
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Cut the file to half its length.
    Truncated,
    /// Zero the 4 KiB pages that hold the first entry's key (the scores' leaf page).
    ZeroedPage,
    /// Overwrite the first entry's score with another number.
    OverwrittenScore,
}

fn damage(cache: &Path, how: Damage) {
    let file = cache.join("scores.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    let (query, passage, score) = first_entry(cache);
    match how {
        Damage::Truncated => bytes.truncate(bytes.len() / 2),
        Damage::ZeroedPage => {
            let mut key = [0u8; 20];
            key[4..].copy_from_slice(&PairKey::of(&query, &passage).0.to_be_bytes());
            let found = occurrences(&bytes, &key);
            assert!(!found.is_empty(), "the key is in the file");
            for offset in found {
                let page = offset / 4096 * 4096;
                bytes[page..page + 4096].fill(0);
            }
        }
        Damage::OverwrittenScore => {
            let found = occurrences(&bytes, &score.to_le_bytes());
            assert!(!found.is_empty(), "the score is in the file");
            for offset in found {
                bytes[offset..offset + 4].copy_from_slice(&(score + 0.5).to_le_bytes());
            }
        }
    }
    std::fs::write(&file, bytes).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn assert_damage_reported(args: &[&str], file: &Path, what: &str) {
    let output = crossdistill(args);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{what}: {args:?}: {message}");
    assert!(!message.contains("panicked"), "{what}: {message}");
    assert_eq!(
        message
            .lines()
            .filter(|line| line.starts_with("error: "))
            .count(),
        1,
        "{what}: one error line: {message}"
    );
    assert!(
        message.contains(&file.display().to_string()),
        "{what}: the message names the file: {message}"
    );
    assert!(message.contains("damaged score cache"), "{what}: {message}");
    assert!(
        message.contains("rebuild it") && message.contains("--skip-damaged"),
        "{what}: the message says what to do: {message}"
    );
}

#[test]
fn a_damaged_cache_is_reported_by_every_command_that_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let (recipe, pristine) = scored_cache(dir.path());
    for how in [
        Damage::Truncated,
        Damage::ZeroedPage,
        Damage::OverwrittenScore,
    ] {
        let what = format!("{how:?}");
        let cache = dir.path().join(format!("damaged-{what}"));
        copy_dir(&pristine, &cache);
        damage(&cache, how);
        let file = cache.join("scores.redb");
        let cache_arg = cache.to_str().unwrap();
        assert_damage_reported(&["cache", "stats", cache_arg], &file, &what);
        let exported = dir.path().join(format!("{what}.jsonl"));
        assert_damage_reported(
            &[
                "cache",
                "export",
                cache_arg,
                "--output",
                exported.to_str().unwrap(),
            ],
            &file,
            &what,
        );
        assert!(!exported.exists(), "{what}: no partial export");
        let merged = dir.path().join(format!("merged-{what}"));
        assert_damage_reported(
            &["cache", "merge", merged.to_str().unwrap(), cache_arg],
            &file,
            &what,
        );
        let cache_set = format!("cache.dir={cache_arg}");
        let run_set = format!(
            "run.output_dir={}",
            dir.path().join(format!("run-{what}")).display()
        );
        assert_damage_reported(
            &[
                "train",
                recipe.to_str().unwrap(),
                "--set",
                &cache_set,
                "--set",
                &run_set,
            ],
            &file,
            &what,
        );
    }
}

#[test]
fn export_skip_damaged_saves_the_entries_that_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (_, pristine) = scored_cache(dir.path());
    let total = {
        let cache = ScoreCache::open_existing(&pristine).unwrap();
        cache.verify().unwrap()
    };
    let cache = dir.path().join("damaged");
    copy_dir(&pristine, &cache);
    damage(&cache, Damage::OverwrittenScore);
    let exported = dir.path().join("saved.jsonl");
    let output = crossdistill(&[
        "cache",
        "export",
        cache.to_str().unwrap(),
        "--output",
        exported.to_str().unwrap(),
        "--skip-damaged",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows = std::fs::read_to_string(&exported).unwrap().lines().count() as u64;
    assert!(rows < total, "{stdout}");
    assert!(
        stdout.contains(&format!("skipped {} damaged entries", total - rows)),
        "{stdout}"
    );
    let (query, passage, _) = first_entry(&pristine);
    let text = std::fs::read_to_string(&exported).unwrap();
    let damaged_rows = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|row| row["query"] == query.as_str() && row["passage"] == passage.as_str())
        .count();
    assert_eq!(
        damaged_rows, 0,
        "the entry with the overwritten score is skipped"
    );
}

#[test]
fn reading_a_cache_never_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cache) = scored_cache(dir.path());
    let file = cache.join("scores.redb");
    let before = std::fs::read(&file).unwrap();
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let exported = dir.path().join("out.jsonl");
    for args in [
        vec!["cache", "stats", cache.to_str().unwrap()],
        vec![
            "cache",
            "export",
            cache.to_str().unwrap(),
            "--output",
            exported.to_str().unwrap(),
        ],
    ] {
        let output = crossdistill(&args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    }
    assert_eq!(std::fs::read(&file).unwrap(), before);
    assert_eq!(
        std::fs::metadata(&file).unwrap().modified().unwrap(),
        modified,
        "opening for reading wrote the file"
    );
    // Without write permission (meaningless as root, who may write anyway).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        let read_only = std::fs::Permissions::from_mode(0o444);
        std::fs::set_permissions(&file, read_only).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o555)).unwrap();
        let output = crossdistill(&["cache", "stats", cache.to_str().unwrap()]);
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
}
