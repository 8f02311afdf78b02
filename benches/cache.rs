//! Teacher-score cache benchmark: cached lookups per second, and training throughput with a warm
//! cache against training without a teacher at all (and, for scale, with an uncached teacher).
//!
//! ```text
//! cargo bench --bench cache                 # 1M cached entries, 5 rounds of training
//! cargo bench --bench cache -- 200000 3     # entries, training rounds
//! ```
//!
//! Everything runs on the CPU with the tiny test fixtures (tests/fixtures/tiny-bert-ce as
//! teacher and student): the smallest student makes any producer-side overhead as visible as it
//! can be. The training configurations are interleaved round by round, so machine noise hits
//! them alike; the median of the rounds is reported.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crossdistill::cache::{precompute, CachedTeacher, NoProgress, PairKey, ScoreCache, Shard};
use crossdistill::data::DataSource;
use crossdistill::loss::LossRegistry;
use crossdistill::pipeline::teacher_pairs;
use crossdistill::train::plan::build_teacher;
use crossdistill::train::{train, Plan, Silent};

const LOOKUP_BATCH: usize = 4096;
const TRAIN_ROWS: usize = 4000;
const TRAIN_STEPS: usize = 150;
const TRAIN_BATCH: usize = 16;

fn text(seed: u64, words: usize) -> String {
    const WORDS: &[&str] = &[
        "river", "mountain", "city", "language", "python", "rust", "paris", "france", "weather",
        "tropical", "capital", "program", "model", "teacher", "student", "score", "cache",
        "memory", "disk", "train", "query", "passage", "night", "day",
    ];
    let mut z = seed;
    (0..words)
        .map(|_| {
            z = z
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            WORDS[(z >> 33) as usize % WORDS.len()]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn lookups(dir: &Path, entries: usize) {
    let pairs: Vec<(String, String)> = (0..entries)
        .map(|i| {
            (
                format!("query {} {}", i / 32, text(i as u64, 4)),
                format!("passage {i} {}", text(i as u64 + 7, 40)),
            )
        })
        .collect();
    let mut cache = ScoreCache::open(&dir.join("lookup-cache")).expect("cache opens");
    let started = Instant::now();
    for (index, chunk) in pairs.chunks(50_000).enumerate() {
        let rows: Vec<(&str, &str, f32)> = chunk
            .iter()
            .enumerate()
            .map(|(i, (q, p))| (q.as_str(), p.as_str(), (index * 50_000 + i) as f32))
            .collect();
        cache.insert("bench-teacher", &rows).expect("insert");
    }
    let insert_seconds = started.elapsed().as_secs_f64();
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(q, p)| (q.as_str(), p.as_str()))
        .collect();
    let keys = PairKey::of_pairs(&refs);
    // One untimed pass warms redb's page cache, as a long training run's would be.
    for chunk in keys.chunks(LOOKUP_BATCH) {
        cache.lookup_keys("bench-teacher", chunk).expect("lookup");
    }
    let started = Instant::now();
    let mut found = 0usize;
    for chunk in refs.chunks(LOOKUP_BATCH) {
        found += cache
            .lookup("bench-teacher", chunk)
            .expect("lookup")
            .iter()
            .flatten()
            .count();
    }
    let with_hashing = started.elapsed().as_secs_f64();
    assert_eq!(found, entries, "every pair is cached");
    let started = Instant::now();
    for chunk in keys.chunks(LOOKUP_BATCH) {
        cache.lookup_keys("bench-teacher", chunk).expect("lookup");
    }
    let keys_only = started.elapsed().as_secs_f64();
    let bytes = cache.stats().expect("stats").bytes;
    println!(
        "cache of {entries} entries ({:.1} MiB, inserted in {:.1} s = {:.0} inserts/s)",
        bytes as f64 / (1 << 20) as f64,
        insert_seconds,
        entries as f64 / insert_seconds
    );
    println!(
        "  lookup (hash + get), batches of {LOOKUP_BATCH}: {:.2} M lookups/s",
        entries as f64 / with_hashing / 1e6
    );
    println!(
        "  lookup_keys (get only):                {:.2} M lookups/s",
        entries as f64 / keys_only / 1e6
    );
}

fn write_data(dir: &Path) -> PathBuf {
    let lines: Vec<String> = (0..TRAIN_ROWS)
        .map(|i| {
            serde_json::json!({
                "query": format!("q{} {}", i % 200, text(i as u64, 4)),
                "passage": text(i as u64 * 31 + 5, 10 + i % 30),
                "score": (i % 5) as f32 / 4.0,
            })
            .to_string()
        })
        .collect();
    let path = dir.join("train.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write data");
    path
}

/// tests/fixtures/tiny-bert-ce: under the working directory when run from a checkout (a copied
/// bench binary), else under the crate that built it.
fn fixture_model() -> PathBuf {
    let relative = Path::new("tests/fixtures/tiny-bert-ce");
    match relative.canonicalize() {
        Ok(found) => found,
        Err(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join(relative),
    }
}

fn write_recipe(dir: &Path, name: &str, teacher: bool, cache: bool) -> PathBuf {
    let model = fixture_model();
    let mut text = format!(
        "version = 1\n[run]\noutput_dir = \"run-{name}\"\nseed = 1\n[student]\nmodel = \"{}\"\nmax_length = 64\n[data.train]\npath = \"train.jsonl\"\n",
        model.display()
    );
    if teacher {
        text += &format!(
            "[teacher]\nkind = \"candle\"\nmodel = \"{}\"\nmax_length = 64\nbatch_size = 64\n",
            model.display()
        );
    }
    if cache {
        text += "[cache]\ndir = \"cache\"\n";
    }
    let labels = if teacher { "teacher" } else { "data" };
    text += &format!(
        "[[loss]]\nkind = \"mse\"\nlabels = \"{labels}\"\n[train]\nmax_steps = {TRAIN_STEPS}\nbatch_size = {TRAIN_BATCH}\nlearning_rate = 1e-4\nlog_every = 1000\nsave_every = 0\n"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write recipe");
    path
}

fn warm_cache(recipe: &Path) {
    let recipe = crossdistill::recipe::load(recipe, &[]).expect("recipe");
    let device = candle_core::Device::Cpu;
    let teacher = build_teacher(&recipe, &device)
        .expect("teacher")
        .expect("a teacher");
    let dir = &recipe.cache.as_ref().expect("[cache]").dir;
    let mut teacher = CachedTeacher::open(teacher, dir).expect("cache");
    let source = DataSource::new(
        recipe.data.train.path.clone(),
        recipe.data.train.base_dir.clone(),
    );
    let pairs = source.open().expect("data").flat_map(|row| {
        let row = row.expect("row");
        teacher_pairs(&row, None)
            .expect("pairs")
            .into_iter()
            .map(|(q, p)| Ok((q.to_string(), p.to_string())))
            .collect::<Vec<_>>()
    });
    let summary =
        precompute(&mut teacher, pairs, Shard::ALL, 1024, &mut NoProgress).expect("precompute");
    println!("warmed the cache: {} pairs scored", summary.teacher_scored);
}

/// CPU seconds (user + system, all threads) this process has used, from /proc/self/stat
/// (Linux; 0 elsewhere). Less sensitive than wall time to other load on a shared machine.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the ")" that closes the command name: state is field 3, utime 14, stime 15.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Wall and CPU seconds of one training run (plan building, i.e. model loading, not counted).
fn train_seconds(recipe: &Path, expect_misses: Option<u64>) -> (f64, f64) {
    let recipe = crossdistill::recipe::load(recipe, &[]).expect("recipe");
    let output_dir = recipe.run.output_dir.clone();
    let _ = std::fs::remove_dir_all(&output_dir);
    let plan = Plan::build(recipe, &LossRegistry::default()).expect("plan");
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let report = train(plan, false, &mut Silent).expect("train");
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_started;
    assert_eq!(report.steps, TRAIN_STEPS);
    if let Some(misses) = expect_misses {
        assert_eq!(
            report.cache.expect("cache counts").misses,
            misses,
            "warm cache"
        );
    }
    (seconds, cpu)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let entries: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().expect("temporary directory");
    lookups(dir.path(), entries);

    write_data(dir.path());
    let no_teacher = write_recipe(dir.path(), "no-teacher", false, false);
    let warm = write_recipe(dir.path(), "warm-cache", true, true);
    let uncached = write_recipe(dir.path(), "uncached-teacher", true, false);
    warm_cache(&warm);
    let configs = [
        ("no teacher", &no_teacher, None),
        ("teacher, warm cache", &warm, Some(0)),
        ("teacher, no cache", &uncached, None),
    ];
    let mut wall = vec![Vec::new(); configs.len()];
    let mut cpu = vec![Vec::new(); configs.len()];
    for _ in 0..rounds {
        for (i, (_, recipe, misses)) in configs.iter().enumerate() {
            let (seconds, cpu_seconds) = train_seconds(recipe, *misses);
            wall[i].push(seconds);
            cpu[i].push(cpu_seconds);
        }
    }
    let pairs = (TRAIN_STEPS * TRAIN_BATCH) as f64;
    println!("training {TRAIN_STEPS} steps x {TRAIN_BATCH} pairs, median of {rounds} interleaved rounds:");
    let base_wall = median(&mut wall[0].clone());
    let base_cpu = median(&mut cpu[0].clone());
    for (i, (name, _, _)) in configs.iter().enumerate() {
        let (w, c) = (median(&mut wall[i]), median(&mut cpu[i]));
        println!(
            "  {name:<20} {:>7.0} pairs/s wall ({w:.3} s, {:.3} x no teacher), {c:.2} CPU s ({:.3} x no teacher)",
            pairs / w,
            base_wall / w,
            c / base_cpu
        );
    }
}
