//! The teacher-score cache end to end, through the binary: `kill -9` of `score` and `train` at
//! random moments never loses a committed score and a rerun finishes exactly as an uninterrupted
//! run; a warm rerun scores nothing; two teachers never mix; three shards merged equal one
//! unsharded run; export/import round trips; errors exit 2.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossdistill::cache::ScoreCache;
use serde_json::Value;

use crate::common::{crossdistill, fixture, stderr, Random};

/// Cache contents: (teacher, query, passage) → score bits.
type Entries = BTreeMap<(String, String, String), u32>;

/// `rows` (query, positive, negative) training rows and 10 held-out rows in `dir`.
fn write_data(dir: &Path, rows: usize, seed: u64) {
    let mut random = Random(seed);
    let mut write = |name: &str, rows: usize| {
        let lines: Vec<String> = (0..rows)
            .map(|i| {
                let (q, p, n) = (4, 5 + random.below(25), 5 + random.below(25));
                serde_json::json!({
                    "query": format!("q{} {}", i % 50, random.words(q)),
                    "positive": random.words(p),
                    "negative": random.words(n),
                })
                .to_string()
            })
            .collect();
        std::fs::write(dir.join(name), lines.join("\n") + "\n").unwrap();
    };
    write("train.jsonl", rows);
    write("eval.jsonl", 10);
}

/// A recipe distilling the tiny BERT fixture into itself with margin MSE.
fn write_recipe(dir: &Path, teacher_batch: usize) -> PathBuf {
    let teacher = fixture("tiny-bert-ce");
    let text = format!(
        r#"version = 1
[run]
output_dir = "run"
seed = 7
[teacher]
kind = "candle"
model = "{teacher}"
max_length = 64
batch_size = {teacher_batch}
[cache]
dir = "cache"
[student]
model = "{teacher}"
max_length = 64
[data.train]
path = "train.jsonl"
[data.eval]
path = "eval.jsonl"
[[loss]]
kind = "margin_mse"
labels = "teacher"
[train]
max_steps = 12
batch_size = 8
learning_rate = 1e-3
log_every = 3
save_every = 3
"#,
        teacher = teacher.display()
    );
    let path = dir.join("recipe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn set(key: &str, value: &Path) -> String {
    format!("{key}={}", value.display())
}

fn run_ok(args: &[&str]) -> Output {
    let output = crossdistill(args);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        stderr(&output)
    );
    output
}

/// `score --json` and its summary.
fn score(recipe: &Path, cache: &Path, extra: &[&str]) -> Value {
    let cache_set = set("cache.dir", cache);
    let mut args = vec![
        "score",
        recipe.to_str().unwrap(),
        "--set",
        &cache_set,
        "--json",
    ];
    args.extend(extra);
    let output = run_ok(&args);
    serde_json::from_slice(&output.stdout).unwrap()
}

fn entries(cache: &Path) -> Entries {
    let cache = ScoreCache::open_existing(cache).expect("the cache reopens");
    let mut out = Entries::new();
    cache
        .for_each(None, |e| {
            out.insert(
                (e.teacher.into(), e.query.into(), e.passage.into()),
                e.score.to_bits(),
            );
            Ok(())
        })
        .unwrap();
    out
}

/// Note a "... committed N new scores, M entries for this teacher" line; true when it was one.
fn note(line: &str, committed: &mut u64) -> bool {
    match line.strip_suffix(" entries for this teacher") {
        Some(head) => {
            let count = head.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
            *committed = (*committed).max(count);
            true
        }
        None => false,
    }
}

/// Run the binary with `args` and kill it with SIGKILL: when `after_commits` is given, that many
/// cache commits after it reported them (plus `delay`), else `delay` after the start. Returns
/// whether the kill interrupted it and the largest committed entry count it reported.
fn run_and_kill(args: &[String], after_commits: Option<usize>, delay: Duration) -> (bool, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crossdistill"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("CROSSDISTILL_LOG", "crossdistill::cache=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, received) = mpsc::channel();
    let reader = BufReader::new(child.stderr.take().unwrap());
    let forward = std::thread::spawn(move || {
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut committed = 0u64;
    let mut commits = 0usize;
    if let Some(wanted) = after_commits {
        let deadline = Instant::now() + Duration::from_secs(60);
        while commits < wanted && Instant::now() < deadline {
            match received.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => commits += note(&line, &mut committed) as usize,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    }
    std::thread::sleep(delay);
    let finished_before_kill = matches!(child.try_wait(), Ok(Some(_)));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    forward.join().unwrap();
    for line in received.try_iter() {
        note(&line, &mut committed);
    }
    let interrupted = !finished_before_kill && !status.success();
    (interrupted, committed)
}

/// Kill moments: half the trials a random time after the start (model loading, opening the
/// cache, the first commits), half right after a random one of the first `commits` commits
/// plus a random part of a chunk.
fn kill_moment(
    random: &mut Random,
    trial: usize,
    total: Duration,
    commits: u64,
) -> (Option<usize>, Duration) {
    let fraction = |random: &mut Random| random.below(1000) as f64 / 1000.0;
    if trial.is_multiple_of(2) {
        (None, total.mul_f64(fraction(random)))
    } else {
        let commit = 1 + random.below(commits) as usize;
        (Some(commit), total.mul_f64(fraction(random) * 0.1))
    }
}

fn assert_subset(cache: &Path, reference: &Entries, committed: u64, trial: usize) -> usize {
    let found = entries(cache);
    assert!(
        found.len() as u64 >= committed,
        "trial {trial}: {} entries after the kill, but {committed} were reported committed",
        found.len()
    );
    for (key, bits) in &found {
        assert_eq!(
            reference.get(key),
            Some(bits),
            "trial {trial}: {key:?} differs from the uninterrupted run"
        );
    }
    found.len()
}

#[test]
fn score_survives_kill_9_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path(), 600, 1);
    let recipe = write_recipe(dir.path(), 8);
    let reference_dir = dir.path().join("reference");
    let started = Instant::now();
    let summary = score(&recipe, &reference_dir, &[]);
    let took = started.elapsed();
    let reference = entries(&reference_dir);
    assert_eq!(summary["pairs"], 1220);
    assert_eq!(
        summary["teacher_scored"].as_u64(),
        Some(reference.len() as u64)
    );

    let mut random = Random(42);
    let mut interrupted_trials = 0;
    for trial in 0..10 {
        let cache = dir.path().join(format!("cache-{trial}"));
        // 1220 pairs in chunks of 8 * 16 = 128: ten commits.
        let (after, delay) = kill_moment(&mut random, trial, took, 9);
        let args: Vec<String> = vec![
            "score".into(),
            recipe.display().to_string(),
            "--set".into(),
            set("cache.dir", &cache),
            "--json".into(),
        ];
        let (interrupted, committed) = run_and_kill(&args, after, delay);
        interrupted_trials += interrupted as usize;
        let kept = if cache.join("scores.redb").exists() {
            assert_subset(&cache, &reference, committed, trial)
        } else {
            0
        };
        eprintln!(
            "score trial {trial}: kill after {after:?} commits + {delay:?}: interrupted {interrupted}, {committed} reported committed, {kept} of {} kept",
            reference.len()
        );
        let rerun = score(&recipe, &cache, &[]);
        assert_eq!(
            rerun["teacher_scored"].as_u64(),
            Some((reference.len() - kept) as u64),
            "trial {trial}: the rerun scores exactly what is missing"
        );
        assert_eq!(entries(&cache), reference, "trial {trial}");
    }
    assert!(interrupted_trials > 0, "no kill landed while score ran");
}

#[test]
fn train_survives_kill_9_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path(), 200, 2);
    // Teacher batch size 1: a pair's score then does not depend on which pairs share its batch
    // (padding changes the last bits), so caches of differently grouped runs compare exactly.
    let recipe = write_recipe(dir.path(), 1);
    let reference_run = dir.path().join("reference-run");
    let reference_cache = dir.path().join("reference-cache");
    let started = Instant::now();
    let output = run_ok(&[
        "train",
        recipe.to_str().unwrap(),
        "--set",
        &set("run.output_dir", &reference_run),
        "--set",
        &set("cache.dir", &reference_cache),
    ]);
    let took = started.elapsed();
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("teacher-score cache: 0 hits"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let model = std::fs::read(reference_run.join("final/model.safetensors")).unwrap();
    let reference = entries(&reference_cache);

    let mut random = Random(7);
    let mut interrupted_trials = 0;
    for trial in 0..10 {
        let run = dir.path().join(format!("run-{trial}"));
        let cache = dir.path().join(format!("cache-{trial}"));
        // One commit for the held-out pairs, then one per batch of 16 pairs (12 steps and the
        // batches the producer runs ahead).
        let (after, delay) = kill_moment(&mut random, trial, took, 16);
        let args: Vec<String> = vec![
            "train".into(),
            recipe.display().to_string(),
            "--set".into(),
            set("run.output_dir", &run),
            "--set".into(),
            set("cache.dir", &cache),
        ];
        let (interrupted, committed) = run_and_kill(&args, after, delay);
        interrupted_trials += interrupted as usize;
        if cache.join("scores.redb").exists() {
            // Every score is the teacher's score of that pair; the reference run may have
            // prefetched fewer or more batches, so the sets need not be equal.
            let found = entries(&cache);
            assert!(found.len() as u64 >= committed, "trial {trial}");
            for (key, bits) in &found {
                if let Some(expected) = reference.get(key) {
                    assert_eq!(bits, expected, "trial {trial}: {key:?}");
                }
            }
        }
        eprintln!(
            "train trial {trial}: kill after {after:?} commits + {delay:?}: interrupted {interrupted}, {committed} reported committed"
        );
        let mut rerun = args.clone();
        rerun.push("--resume".into());
        let rerun: Vec<&str> = rerun.iter().map(String::as_str).collect();
        run_ok(&rerun);
        assert!(
            std::fs::read(run.join("final/model.safetensors")).unwrap() == model,
            "trial {trial}: the resumed run's model differs from the uninterrupted one"
        );
    }
    assert!(interrupted_trials > 0, "no kill landed while train ran");
}

#[test]
fn a_warm_rerun_scores_nothing_and_teachers_never_mix() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path(), 40, 3);
    let recipe = write_recipe(dir.path(), 8);
    let cache = dir.path().join("cache");
    let cold = score(&recipe, &cache, &[]);
    assert_eq!(
        (
            cold["pairs"].as_u64(),
            cold["cache_hits"].as_u64(),
            cold["teacher_scored"].as_u64()
        ),
        (Some(100), Some(0), Some(100))
    );
    let warm = score(&recipe, &cache, &[]);
    assert_eq!(
        (warm["cache_hits"].as_u64(), warm["teacher_scored"].as_u64()),
        (Some(100), Some(0))
    );
    // Training after `score` asks the teacher for nothing, and logs it.
    let run = dir.path().join("run");
    let output = run_ok(&[
        "train",
        recipe.to_str().unwrap(),
        "--set",
        &set("run.output_dir", &run),
        "--set",
        &set("cache.dir", &cache),
    ]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("pairs scored by the teacher"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let rows: Vec<Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|row: &Value| row.get("loss").is_some())
        .collect();
    assert!(!rows.is_empty());
    for row in &rows {
        assert_eq!(row["cache/misses"], 0, "{row}");
        assert!(row["cache/hits"].as_u64().unwrap() > 0, "{row}");
    }
    // The same model with a sigmoid is another teacher: it gets none of the first one's scores.
    let sigmoid = score(&recipe, &cache, &["--set", "teacher.activation=sigmoid"]);
    assert_eq!(sigmoid["teacher_scored"].as_u64(), Some(100));
    let stats = run_ok(&["cache", "stats", cache.to_str().unwrap(), "--json"]);
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    let teachers = stats["teachers"].as_array().unwrap();
    assert_eq!(teachers.len(), 2, "{stats}");
    assert!(teachers.iter().all(|t| t["entries"] == 100), "{stats}");
    assert_eq!(stats["pairs"], 100, "{stats}");
    let all = entries(&cache);
    let identity = &teachers[0]["teacher"].as_str().unwrap().to_string();
    let with_sigmoid = &teachers[1]["teacher"].as_str().unwrap().to_string();
    assert!(
        identity.contains("activation=Identity") && with_sigmoid.contains("activation=Sigmoid")
    );
    for ((teacher, query, passage), bits) in &all {
        if teacher == with_sigmoid {
            let logit = f32::from_bits(all[&(identity.clone(), query.clone(), passage.clone())]);
            let expected = 1.0 / (1.0 + (-logit).exp());
            let found = f32::from_bits(*bits);
            assert!(
                (found - expected).abs() < 1e-6,
                "{found} vs sigmoid({logit})"
            );
            assert_ne!(found, logit);
        }
    }
}

#[test]
fn three_shards_merged_equal_unsharded_scoring() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path(), 100, 4);
    // Batch size 1, so a score does not depend on which pairs share its batch (see above).
    let recipe = write_recipe(dir.path(), 1);
    let whole = dir.path().join("whole");
    let summary = score(&recipe, &whole, &[]);
    let mut sharded_pairs = 0;
    let mut parts = Vec::new();
    for index in 0..3 {
        let part = dir.path().join(format!("shard-{index}"));
        let shard = format!("{index}/3");
        let summary = score(&recipe, &part, &["--shard", &shard]);
        sharded_pairs += summary["pairs"].as_u64().unwrap();
        assert!(summary["teacher_scored"].as_u64().unwrap() > 0);
        parts.push(part);
    }
    assert_eq!(Some(sharded_pairs), summary["pairs"].as_u64());
    let merged = dir.path().join("merged");
    let mut args = vec!["cache", "merge", merged.to_str().unwrap()];
    args.extend(parts.iter().map(|p| p.to_str().unwrap()));
    let output = run_ok(&args);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("220 new scores"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(entries(&merged), entries(&whole));
}

#[test]
fn export_and_import_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path(), 20, 5);
    let recipe = write_recipe(dir.path(), 8);
    let cache = dir.path().join("cache");
    score(&recipe, &cache, &[]);
    for file in ["scores.parquet", "scores.jsonl"] {
        let output = dir.path().join(file);
        run_ok(&[
            "cache",
            "export",
            cache.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]);
        let copy = dir.path().join(format!("copy-{file}"));
        run_ok(&[
            "cache",
            "import",
            copy.to_str().unwrap(),
            "--input",
            output.to_str().unwrap(),
        ]);
        assert_eq!(entries(&copy), entries(&cache), "{file}");
    }
    let first = std::fs::read_to_string(dir.path().join("scores.jsonl")).unwrap();
    let row: Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    let keys: Vec<&str> = row
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["query", "passage", "score", "teacher"]);
}

#[test]
fn cache_errors_exit_2_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path(), 5, 6);
    let recipe = write_recipe(dir.path(), 8);
    let no_cache = dir.path().join("no-cache.toml");
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(&no_cache, text.replace("[cache]\ndir = \"cache\"\n", "")).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["score".into(), no_cache.display().to_string()],
            "no [cache]: `score` writes teacher scores into the cache that training reads (hint: add `[cache]`",
        ),
        (
            vec!["score".into(), recipe.display().to_string(), "--shard".into(), "3/3".into()],
            "shard 3/3: expected I/N with N >= 1 and 0 <= I < N",
        ),
        (
            vec!["cache".into(), "stats".into(), dir.path().join("nothing").display().to_string()],
            "no score cache here: expected the file scores.redb, found none",
        ),
        (
            vec![
                "cache".into(),
                "export".into(),
                dir.path().display().to_string(),
                "--output".into(),
                "out.txt".into(),
            ],
            "cannot tell the export format of out.txt",
        ),
    ];
    for (args, message) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = crossdistill(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let err = stderr(&output);
        assert!(
            err.starts_with("error: ") && err.contains(message),
            "{args:?}: {err}"
        );
    }
    let cache = dir.path().join("cache");
    score(&recipe, &cache, &[]);
    let output = crossdistill(&[
        "cache",
        "merge",
        cache.to_str().unwrap(),
        cache.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("into itself"),
        "{}",
        stderr(&output)
    );
}
