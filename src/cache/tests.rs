//! Unit tests of the score cache: keys pinned to the XXH3 reference, the store's contract
//! (persistence, teacher separation, locking, merge), the miss decision, the cached teacher,
//! precompute (resume, shards) and export/import round trips.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::*;
use crate::error::{Error, Result};
use crate::teacher::Teacher;

/// Every pair a fake teacher was asked for.
type Asked = Arc<Mutex<Vec<(String, String)>>>;

/// A teacher whose score is a function of the texts, recording every pair it is asked for.
struct FakeTeacher {
    name: String,
    asked: Asked,
    fail_after_calls: Option<usize>,
}

impl FakeTeacher {
    fn new(name: &str) -> (Self, Asked) {
        let asked = Arc::new(Mutex::new(Vec::new()));
        (
            FakeTeacher {
                name: name.to_string(),
                asked: asked.clone(),
                fail_after_calls: None,
            },
            asked,
        )
    }

    fn score_of(name: &str, query: &str, passage: &str) -> f32 {
        (query.len() * 100 + passage.len()) as f32 + name.len() as f32 * 0.25
    }
}

impl Teacher for FakeTeacher {
    fn score(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        if let Some(left) = self.fail_after_calls.as_mut() {
            if *left == 0 {
                return Err(Error::invalid("teacher stopped (simulated crash)"));
            }
            *left -= 1;
        }
        let mut asked = self.asked.lock().unwrap();
        asked.extend(pairs.iter().map(|(q, p)| (q.to_string(), p.to_string())));
        Ok(pairs
            .iter()
            .map(|(q, p)| Self::score_of(&self.name, q, p))
            .collect())
    }

    fn fingerprint(&self) -> String {
        format!("fake|{}", self.name)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

fn pairs(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("query {}", i % 7), format!("passage number {i}")))
        .collect()
}

fn refs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(q, p)| (q.as_str(), p.as_str()))
        .collect()
}

fn all_entries(cache: &ScoreCache) -> Vec<(String, String, String, u32)> {
    let mut out = Vec::new();
    cache
        .for_each(None, |e| {
            out.push((
                e.teacher.to_string(),
                e.query.to_string(),
                e.passage.to_string(),
                e.score.to_bits(),
            ));
            Ok(())
        })
        .unwrap();
    out.sort();
    out
}

#[test]
fn pair_keys_match_the_xxh3_128_reference() {
    // Expected values: Python `xxhash.xxh3_128_intdigest(struct.pack('<Q', len(q.encode())) +
    // q.encode() + p.encode())` (python-xxhash 3.x, the reference C implementation).
    let cases = [
        (
            "what is python",
            "Python is a language.",
            0x6802f49fc47f82d26fd7b77993648660u128,
        ),
        ("", "", 0x2c0a8a99dc147d5445c3b49d035665b2),
        ("ab", "c", 0xdae8c817ed27d98a682655cb3a68abce),
        ("a", "bc", 0xe84366a586ed1e28ac721625f5cd1b86),
        ("café", "naïve ünïcode", 0x1a8c10146128b6ce385517bda1f821b4),
    ];
    for (query, passage, expected) in cases {
        assert_eq!(PairKey::of(query, passage), PairKey(expected), "{query:?}");
    }
    // Same reference: xxh3_128 of no bytes, the value published with the algorithm.
    assert_eq!(
        twox_hash::XxHash3_128::oneshot(b""),
        0x99aa06d3014798d86001c324468d497f
    );
}

#[test]
fn shards_partition_the_pairs() {
    // Keys mod 3 from the reference values above: 2, 2, 2, 1, 1.
    let shard = |text: &str| text.parse::<Shard>().unwrap();
    assert!(shard("2/3").contains(PairKey::of("what is python", "Python is a language.")));
    assert!(shard("1/3").contains(PairKey::of("a", "bc")));
    assert!(!shard("0/3").contains(PairKey::of("a", "bc")));
    let keys = PairKey::of_pairs(&pairs(300));
    let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).unwrap()).collect();
    for key in &keys {
        assert_eq!(shards.iter().filter(|s| s.contains(*key)).count(), 1);
    }
    for s in &shards {
        assert!(keys.iter().any(|k| s.contains(*k)), "shard {s} is empty");
    }
    assert!(Shard::ALL.contains(keys[0]));
    assert_eq!(shard("1/3").to_string(), "1/3");
}

#[test]
fn bad_shards_say_how_they_are_numbered() {
    let error = "3/3".parse::<Shard>().unwrap_err().to_string();
    assert_eq!(
        error,
        "shard 3/3: expected I/N with N >= 1 and 0 <= I < N (hint: shards are numbered from 0: --shard 0/3 ... --shard 2/3)"
    );
    let error = "1/0".parse::<Shard>().unwrap_err().to_string();
    assert!(
        error.starts_with("shard 1/0: expected I/N")
            && error.contains("hint: N counts the shards, at least 1"),
        "{error}"
    );
    let error = "half".parse::<Shard>().unwrap_err().to_string();
    assert!(
        error.starts_with("shard `half`: expected I/N with whole numbers"),
        "{error}"
    );
}

#[test]
fn scores_persist_and_teachers_never_mix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache");
    {
        let mut cache = ScoreCache::open(&path).unwrap();
        let report = cache
            .insert("teacher-a", &[("q", "p1", 1.5), ("q", "p2", -2.0)])
            .unwrap();
        assert_eq!(
            report,
            InsertReport {
                added: 2,
                present: 0,
                conflicts: 0
            }
        );
        cache.insert("teacher-b", &[("q", "p1", 9.0)]).unwrap();
        // Same pair, same teacher: kept; another score is a conflict and the first one stays.
        let report = cache
            .insert("teacher-a", &[("q", "p1", 1.5), ("q", "p2", 5.0)])
            .unwrap();
        assert_eq!(
            report,
            InsertReport {
                added: 0,
                present: 1,
                conflicts: 1
            }
        );
    }
    let cache = ScoreCache::open_existing(&path).unwrap();
    let wanted = [("q", "p1"), ("q", "p2"), ("q", "p3")];
    assert_eq!(
        cache.lookup("teacher-a", &wanted).unwrap(),
        vec![Some(1.5), Some(-2.0), None]
    );
    assert_eq!(
        cache.lookup("teacher-b", &wanted).unwrap(),
        vec![Some(9.0), None, None]
    );
    assert_eq!(cache.lookup("teacher-c", &wanted).unwrap(), vec![None; 3]);
    let stats = cache.stats().unwrap();
    assert_eq!(stats.pairs, 2, "texts are stored once for both teachers");
    assert_eq!(
        stats.teachers,
        vec![
            TeacherStats {
                teacher: "teacher-a".into(),
                entries: 2
            },
            TeacherStats {
                teacher: "teacher-b".into(),
                entries: 1
            }
        ]
    );
    assert!(stats.bytes > 0);
    let mut seen = Vec::new();
    cache
        .for_each(Some("teacher-b"), |e| {
            seen.push((
                e.teacher.to_string(),
                e.query.to_string(),
                e.passage.to_string(),
                e.score,
            ));
            Ok(())
        })
        .unwrap();
    assert_eq!(
        seen,
        vec![("teacher-b".into(), "q".into(), "p1".into(), 9.0)]
    );
}

#[test]
fn a_cache_is_held_by_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let _first = ScoreCache::open(dir.path()).unwrap();
    let error = ScoreCache::open(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("is open in another process") && error.contains("hint:"),
        "{error}"
    );
}

#[test]
fn creation_is_all_or_nothing_and_abandoned_partials_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    // What a process killed while creating the cache leaves: an unlocked partial file (here
    // garbage) and no scores.redb. The next open creates a cache and removes the partial.
    let abandoned = dir.path().join("scores.redb.creating-4000000");
    std::fs::write(&abandoned, b"half a database").unwrap();
    {
        let mut cache = ScoreCache::open(dir.path()).unwrap();
        cache.insert("t", &[("q", "p", 0.5)]).unwrap();
    }
    assert!(!abandoned.exists(), "the abandoned partial file is removed");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [FILE_NAME], "only the cache file remains");
    let cache = ScoreCache::open_existing(dir.path()).unwrap();
    assert_eq!(all_entries(&cache).len(), 1);
    drop(cache);

    // A partial file another process holds (it is creating its cache now) stays: here a cache
    // held open, linked under a partial name (a lock conflicts across open files in one
    // process too, as `a_cache_is_held_by_one_process_at_a_time` shows).
    let other = tempfile::tempdir().unwrap();
    let held = ScoreCache::open(other.path()).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    std::fs::hard_link(
        other.path().join(FILE_NAME),
        fresh.path().join("scores.redb.creating-4000002"),
    )
    .unwrap();
    drop(ScoreCache::open(fresh.path()).unwrap());
    assert!(
        fresh.path().join("scores.redb.creating-4000002").exists(),
        "a partial file under another process's lock is left alone"
    );
    drop(held);
}

#[test]
fn missing_and_foreign_caches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = ScoreCache::open_existing(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("no score cache here: expected the file scores.redb, found none"),
        "{error}"
    );
    std::fs::write(
        dir.path().join(FILE_NAME),
        b"this is not a database at all, no",
    )
    .unwrap();
    let error = ScoreCache::open(dir.path()).unwrap_err().to_string();
    assert!(error.contains("scores.redb"), "{error}");
    // A redb file of another layout (another crossdistill version) is refused, not misread.
    let other = tempfile::tempdir().unwrap();
    {
        let db = redb::Database::create(other.path().join(FILE_NAME)).unwrap();
        let write = db.begin_write().unwrap();
        {
            let definition: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("meta");
            let mut meta = write.open_table(definition).unwrap();
            meta.insert("format", "crossdistill score cache v0")
                .unwrap();
        }
        write.commit().unwrap();
    }
    let error = ScoreCache::open(other.path()).unwrap_err().to_string();
    assert!(
        error.contains("score cache format `crossdistill score cache v0`, expected"),
        "{error}"
    );
}

#[test]
fn misses_are_planned_once_per_distinct_pair() {
    let keys = [PairKey(1), PairKey(2), PairKey(1), PairKey(3), PairKey(2)];
    let found = [None, Some(0.5), None, None, Some(0.5)];
    let misses = Misses::plan(&keys, &found);
    assert_eq!(misses.to_score, vec![0, 3]);
    assert_eq!(misses.slot, vec![Some(0), None, Some(0), Some(1), None]);
    assert_eq!(
        misses.fill(&found, &[7.0, 8.0]),
        vec![7.0, 0.5, 7.0, 8.0, 0.5]
    );
}

#[test]
fn a_cached_teacher_scores_each_pair_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = pairs(40);
    let (fake, asked) = FakeTeacher::new("alpha");
    let expected: Vec<f32> = data
        .iter()
        .map(|(q, p)| FakeTeacher::score_of("alpha", q, p))
        .collect();
    let mut teacher = CachedTeacher::open(Box::new(fake), dir.path()).unwrap();
    assert_eq!(teacher.fingerprint(), "fake|alpha");
    let mut doubled = refs(&data[..10]);
    doubled.extend(refs(&data[..10]));
    let first = teacher.score(&doubled).unwrap();
    assert_eq!(first[..10], expected[..10]);
    assert_eq!(first[10..], expected[..10]);
    assert_eq!(asked.lock().unwrap().len(), 10, "duplicates scored once");
    let all = teacher.score(&refs(&data)).unwrap();
    assert_eq!(all, expected);
    assert_eq!(asked.lock().unwrap().len(), 40, "only the 30 new pairs");
    let counters = teacher.counters();
    assert_eq!((counters.hits(), counters.misses()), (10 + 10, 40));
    drop(teacher);
    // A warm rerun: the teacher scores nothing. Another teacher gets none of alpha's scores.
    let (fake, asked) = FakeTeacher::new("alpha");
    let mut teacher = CachedTeacher::open(Box::new(fake), dir.path()).unwrap();
    assert_eq!(teacher.score(&refs(&data)).unwrap(), expected);
    assert!(asked.lock().unwrap().is_empty());
    drop(teacher);
    let (fake, asked) = FakeTeacher::new("beta");
    let mut teacher = CachedTeacher::open(Box::new(fake), dir.path()).unwrap();
    let beta = teacher.score(&refs(&data)).unwrap();
    assert_eq!(asked.lock().unwrap().len(), 40);
    assert!(beta.iter().zip(&expected).all(|(b, a)| b != a));
    assert_eq!(teacher.cache().entries("fake|alpha").unwrap(), 40);
    assert_eq!(teacher.cache().entries("fake|beta").unwrap(), 40);
}

#[test]
fn an_interrupted_precompute_resumes_to_the_same_cache() {
    let data = pairs(100);
    let stream = || data.iter().cloned().map(Ok);
    let reference = tempfile::tempdir().unwrap();
    let (fake, _) = FakeTeacher::new("alpha");
    let mut teacher = CachedTeacher::open(Box::new(fake), reference.path()).unwrap();
    let summary = precompute(&mut teacher, stream(), Shard::ALL, 16, &mut NoProgress).unwrap();
    assert_eq!(
        summary,
        PrecomputeSummary {
            pairs: 100,
            cache_hits: 0,
            teacher_scored: 100
        }
    );
    let expected = all_entries(teacher.cache());
    drop(teacher);

    let dir = tempfile::tempdir().unwrap();
    let (mut fake, _) = FakeTeacher::new("alpha");
    fake.fail_after_calls = Some(3);
    let mut teacher = CachedTeacher::open(Box::new(fake), dir.path()).unwrap();
    let error = precompute(&mut teacher, stream(), Shard::ALL, 16, &mut NoProgress).unwrap_err();
    assert!(error.to_string().contains("simulated crash"));
    assert_eq!(
        teacher.cache().entries("fake|alpha").unwrap(),
        48,
        "3 chunks committed"
    );
    assert_eq!(
        count_missing(teacher.cache(), "fake|alpha", stream(), Shard::ALL).unwrap(),
        (100, 52)
    );
    drop(teacher);
    let (fake, asked) = FakeTeacher::new("alpha");
    let mut teacher = CachedTeacher::open(Box::new(fake), dir.path()).unwrap();
    let summary = precompute(&mut teacher, stream(), Shard::ALL, 16, &mut NoProgress).unwrap();
    assert_eq!(
        summary,
        PrecomputeSummary {
            pairs: 100,
            cache_hits: 48,
            teacher_scored: 52
        }
    );
    assert_eq!(asked.lock().unwrap().len(), 52);
    assert_eq!(all_entries(teacher.cache()), expected);
    let summary = precompute(&mut teacher, stream(), Shard::ALL, 16, &mut NoProgress).unwrap();
    assert_eq!(summary.teacher_scored, 0, "a warm rerun scores nothing");
}

#[test]
fn sharded_precompute_and_merge_equal_the_whole() {
    let data = pairs(90);
    let stream = || data.iter().cloned().map(Ok);
    let whole = tempfile::tempdir().unwrap();
    let (fake, _) = FakeTeacher::new("alpha");
    let mut teacher = CachedTeacher::open(Box::new(fake), whole.path()).unwrap();
    precompute(&mut teacher, stream(), Shard::ALL, 8, &mut NoProgress).unwrap();
    let expected = all_entries(teacher.cache());
    drop(teacher);

    let parts: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut total = 0;
    for (index, part) in parts.iter().enumerate() {
        let (fake, _) = FakeTeacher::new("alpha");
        let mut teacher = CachedTeacher::open(Box::new(fake), part.path()).unwrap();
        let shard = Shard::new(index as u64, 3).unwrap();
        let summary = precompute(&mut teacher, stream(), shard, 8, &mut NoProgress).unwrap();
        assert!(summary.teacher_scored > 0);
        total += summary.pairs;
    }
    assert_eq!(total, 90);
    let merged_dir = tempfile::tempdir().unwrap();
    let mut merged = ScoreCache::open(merged_dir.path()).unwrap();
    let mut report = InsertReport::default();
    for part in &parts {
        report.add(
            merged
                .merge_from(&ScoreCache::open_existing(part.path()).unwrap())
                .unwrap(),
        );
    }
    assert_eq!(report.added, expected.len() as u64);
    assert_eq!(all_entries(&merged), expected);
    // Merging again adds nothing.
    let again = merged
        .merge_from(&ScoreCache::open_existing(parts[0].path()).unwrap())
        .unwrap();
    assert_eq!(again.added, 0);
    assert!(again.present > 0);
}

fn export_import_round_trip(format: ExportFormat, file: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = ScoreCache::open(&dir.path().join("a")).unwrap();
    cache
        .insert("teacher-a", &[("q1", "p1", 0.1), ("q1", "p\"2\"\n", -3.25)])
        .unwrap();
    cache.insert("teacher-b", &[("q2", "p1", 1e-7)]).unwrap();
    let output = dir.path().join(file);
    assert_eq!(export(&cache, None, format, &output).unwrap(), 3);
    assert_eq!(
        export(
            &cache,
            Some("teacher-b"),
            format,
            &dir.path().join(format!("b-{file}"))
        )
        .unwrap(),
        1
    );
    let error = export(&cache, Some("nobody"), format, &dir.path().join("x")).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("has no scores of teacher `nobody`; it has teacher-a, teacher-b"),
        "{error}"
    );
    let mut copy = ScoreCache::open(&dir.path().join("b")).unwrap();
    let report = import(&mut copy, &output, None).unwrap();
    assert_eq!((report.rows, report.added), (3, 3));
    assert_eq!(all_entries(&copy), all_entries(&cache));
    let report = import(&mut copy, &output, None).unwrap();
    assert_eq!((report.added, report.present), (0, 3));
}

#[test]
fn export_and_import_round_trip_jsonl() {
    export_import_round_trip(ExportFormat::Jsonl, "scores.jsonl");
}

#[test]
fn export_and_import_round_trip_parquet() {
    export_import_round_trip(ExportFormat::Parquet, "scores.parquet");
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn import_names_the_teacher_and_the_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = ScoreCache::open(&dir.path().join("c")).unwrap();
    let plain = write(
        dir.path(),
        "plain.jsonl",
        "{\"query\": \"q\", \"passage\": \"p\", \"score\": 0.5}\n",
    );
    let error = import(&mut cache, &plain, None).unwrap_err().to_string();
    assert!(
        error.contains("plain.jsonl: no `teacher` column, and no --teacher given"),
        "{error}"
    );
    let report = import(&mut cache, &plain, Some("elsewhere")).unwrap();
    assert_eq!(report.added, 1);
    assert_eq!(
        cache.lookup("elsewhere", &[("q", "p")]).unwrap(),
        vec![Some(0.5)]
    );
    let mixed = write(
        dir.path(),
        "mixed.jsonl",
        "{\"query\": \"q\", \"passage\": \"p\", \"score\": 0.5, \"teacher\": \"t1\"}\n{\"query\": \"q\", \"passage\": \"p\", \"score\": 0.5, \"teacher\": \"t2\"}\n",
    );
    let error = import(&mut cache, &mixed, Some("t1"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("mixed.jsonl:2: the row's teacher `t2` is not --teacher `t1`"),
        "{error}"
    );
    let unnamed = write(
        dir.path(),
        "unnamed.jsonl",
        "{\"q\": \"q\", \"d\": \"p\", \"score\": 1}\n",
    );
    let error = import(&mut cache, &unnamed, Some("t"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("expected columns query, passage and score, found q, d"),
        "{error}"
    );
}

#[test]
fn an_empty_teacher_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = ScoreCache::open(dir.path()).unwrap();
    let error = cache
        .insert("", &[("q", "p", 1.0)])
        .unwrap_err()
        .to_string();
    assert!(error.contains("empty teacher fingerprint"), "{error}");
}
