//! The teacher-score cache file on damaged bytes: opening and reading `scores.redb` through
//! `crossdistill::cache`'s public API never panics or aborts, whatever the file holds; what it
//! reads back is consistent (a cache that verifies yields every entry once, and lookups agree).
//!
//! The first byte picks the mode: even, the rest of the input is the whole file; odd, the input
//! patches a valid cache built once per process (a list of `offset: u32 LE, length: u8, bytes`
//! patches, then a truncation when the input ends with a 0xFF marker), so the fuzzer reaches
//! the B-tree pages instead of stopping at the file header.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use crossdistill::cache::{PairKey, ScoreCache, FILE_NAME};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

/// The pairs of the template cache, and its file's bytes.
fn template() -> &'static (Vec<(String, String, f32)>, Vec<u8>) {
    static TEMPLATE: OnceLock<(Vec<(String, String, f32)>, Vec<u8>)> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = common::scratch().join("template");
        let entries: Vec<(String, String, f32)> = (0..40)
            .map(|i| (format!("query {}", i % 7), format!("passage number {i}"), i as f32 * 0.25))
            .collect();
        {
            let mut cache = ScoreCache::open(&dir).expect("a new cache");
            for teacher in ["teacher-a", "teacher-b"] {
                let refs: Vec<(&str, &str, f32)> = entries
                    .iter()
                    .map(|(q, p, s)| (q.as_str(), p.as_str(), *s))
                    .collect();
                cache.insert(teacher, &refs).expect("inserts");
            }
        }
        let bytes = std::fs::read(dir.join(FILE_NAME)).expect("the template file");
        (entries, bytes)
    })
}

fn patched(input: &[u8]) -> Vec<u8> {
    let mut bytes = template().1.clone();
    let mut rest = input;
    while rest.len() >= 5 {
        let offset = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let length = rest[4] as usize;
        let patch = &rest[5..(5 + length).min(rest.len())];
        if !bytes.is_empty() {
            let start = offset % bytes.len();
            let end = (start + patch.len()).min(bytes.len());
            bytes[start..end].copy_from_slice(&patch[..end - start]);
        }
        rest = &rest[(5 + length).min(rest.len())..];
    }
    if rest.first() == Some(&0xFF) && rest.len() >= 4 {
        let keep = u16::from_le_bytes([rest[1], rest[2]]) as usize * 64;
        bytes.truncate(keep.min(bytes.len()));
    }
    bytes
}

fn cache_dir() -> PathBuf {
    let dir = common::scratch().join("cache");
    std::fs::create_dir_all(&dir).expect("the scratch directory is writable");
    dir
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 0 {
        body.to_vec()
    } else {
        patched(body)
    };
    let dir = cache_dir();
    std::fs::write(dir.join(FILE_NAME), &bytes).expect("writable");

    let Ok(cache) = ScoreCache::open_existing(&dir) else {
        return;
    };
    let _ = cache.stats();
    let mut seen = Vec::new();
    let verified = cache.verify();
    let read = cache.for_each(None, |entry| {
        seen.push((
            entry.teacher.to_string(),
            PairKey::of(entry.query, entry.passage),
            entry.score,
        ));
        Ok(())
    });
    if let (Ok(count), Ok(())) = (&verified, &read) {
        assert_eq!(*count as usize, seen.len(), "verify counts what for_each visits");
        for (teacher, key, score) in &seen {
            let found = cache.lookup_keys(teacher, &[*key]);
            if let Ok(found) = found {
                assert_eq!(found, vec![Some(*score)], "a lookup agrees with the scan");
            }
        }
    }
    let _ = cache.for_each_readable(None, |_| Ok(()));
    let keys: Vec<PairKey> = template()
        .0
        .iter()
        .map(|(q, p, _)| PairKey::of(q, p))
        .collect();
    let _ = cache.lookup_keys("teacher-a", &keys);
    drop(cache);

    // The writable path on the same bytes: open, add a score, read it back.
    if let Ok(mut cache) = ScoreCache::open(&dir) {
        if cache.insert("teacher-c", &[("q", "p", 1.5)]).is_ok() {
            if let Ok(found) = cache.lookup("teacher-c", &[("q", "p")]) {
                assert_eq!(found, vec![Some(1.5)], "an inserted score reads back");
            }
        }
    }
});
