//! `kill -9` of `crossdistill train` at seeded random moments — while loading, before the first
//! checkpoint, while a checkpoint is being written, while the final model is written — then
//! `train --resume` (killed again in some trials) until it finishes: the final weights equal an
//! uninterrupted run's (≤ 1e-6), metrics.jsonl has the same rows (same steps and losses, none
//! twice) and so do the evaluator CSVs. Also: a second run on a locked run directory is refused
//! with the other process's id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::Device;
use serde_json::Value;

use crate::common::{crossdistill, fixture, stderr, write_scored_pairs, Random};

/// The tiny BERT trained on data labels for 24 steps: a checkpoint every 2 steps (only the last
/// 2 kept, so old ones are removed as the run goes), a metrics row every 3 (a partly filled log
/// window sits in most checkpoints), an evaluation every 5 (metrics rows and a CSV).
fn write_recipe(dir: &Path) -> PathBuf {
    let text = format!(
        r#"version = 1
[run]
output_dir = "run"
seed = 11
[student]
model = "{student}"
max_length = 32
[data.train]
path = "train.jsonl"
columns = ["query", "passage"]
[[loss]]
kind = "mse"
labels = "data"
[[eval]]
kind = "correlation"
name = "dev"
path = "eval.jsonl"
columns = ["query", "passage"]
label = "score"
[train]
epochs = 2
batch_size = 4
learning_rate = 5e-3
log_every = 3
save_every = 2
save_total_limit = 2
eval_every = 5
"#,
        student = fixture("tiny-bert-ce").display()
    );
    let path = dir.join("recipe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// When to send SIGKILL.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// This long after the start.
    After(Duration),
    /// When the `nth` (1-based) checkpoint staging directory appears, plus a spin of `extra`.
    CheckpointWrite { nth: usize, extra: Duration },
    /// When the final model's staging directory appears, plus a spin of `extra`.
    FinalWrite { extra: Duration },
    /// When metrics.jsonl has `rows` complete rows.
    MetricsRows { rows: usize },
    /// When the run directory's lock file appears (the run is about to start its first step),
    /// plus a spin of `extra`.
    Locked { extra: Duration },
}

/// What the run directory looked like right after the kill.
#[derive(Debug, Default)]
struct Killed {
    /// The process was still running when killed.
    interrupted: bool,
    /// A complete checkpoint existed.
    had_checkpoint: bool,
    /// A staging directory (a checkpoint or the final model half written) was left behind.
    staging_left: bool,
}

fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn complete_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count())
        .unwrap_or(0)
}

fn spawn_train(recipe: &Path, resume: bool, log: &Path) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crossdistill"));
    command.arg("train").arg(recipe);
    if resume {
        command.arg("--resume");
    }
    command
        .env("HF_HUB_OFFLINE", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Run `train` and SIGKILL it at `moment` (or let it finish if it gets there first).
fn run_and_kill(recipe: &Path, resume: bool, moment: Moment, log: &Path) -> Killed {
    let run = recipe.parent().unwrap().join("run");
    let mut child = spawn_train(recipe, resume, log);
    let started = Instant::now();
    let mut staging_seen: Vec<String> = Vec::new();
    let deadline = Duration::from_secs(120);
    let finished = loop {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break true;
        }
        assert!(started.elapsed() < deadline, "train ran for 2 minutes");
        let spin = match moment {
            Moment::After(delay) => (started.elapsed() >= delay).then_some(Duration::ZERO),
            Moment::CheckpointWrite { nth, extra } => {
                for name in names_in(&run) {
                    if name.starts_with(".checkpoint-")
                        && name.contains(".staging-")
                        && !staging_seen.contains(&name)
                    {
                        staging_seen.push(name);
                    }
                }
                (staging_seen.len() >= nth).then_some(extra)
            }
            Moment::FinalWrite { extra } => names_in(&run)
                .iter()
                .any(|n| n.starts_with(".final.staging-"))
                .then_some(extra),
            Moment::Locked { extra } => run.join(".lock").exists().then_some(extra),
            Moment::MetricsRows { rows } => {
                (complete_lines(&run.join("metrics.jsonl")) >= rows).then_some(Duration::ZERO)
            }
        };
        if let Some(spin) = spin {
            let until = Instant::now() + spin;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            break false;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let finished = finished || matches!(child.try_wait(), Ok(Some(_)));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let names = names_in(&run);
    Killed {
        interrupted: !finished && !status.success(),
        had_checkpoint: names.iter().any(|n| {
            n.starts_with("checkpoint-") && run.join(n).join("trainer_state.json").is_file()
        }),
        staging_left: names.iter().any(|n| n.contains(".staging-")),
    }
}

fn weights(dir: &Path) -> BTreeMap<String, Vec<f32>> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

/// metrics.jsonl as rows without the timing field (`pairs_per_s` depends on the clock).
fn metrics(run: &Path) -> Vec<BTreeMap<String, Value>> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let mut row: BTreeMap<String, Value> = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("metrics row {line:?} is not JSON: {e}"));
            row.remove("pairs_per_s");
            row
        })
        .collect()
}

fn assert_same_metrics(
    reference: &[BTreeMap<String, Value>],
    got: &[BTreeMap<String, Value>],
    trial: usize,
) {
    let steps = |rows: &[BTreeMap<String, Value>]| -> Vec<(u64, bool)> {
        rows.iter()
            .map(|r| (r["step"].as_u64().unwrap(), r.contains_key("loss")))
            .collect()
    };
    assert_eq!(
        steps(got),
        steps(reference),
        "trial {trial}: metrics rows (step, is a training row) differ"
    );
    let mut seen = std::collections::BTreeSet::new();
    for (step, training) in steps(got) {
        assert!(
            seen.insert((step, training)),
            "trial {trial}: step {step} logged twice"
        );
    }
    for (want, row) in reference.iter().zip(got) {
        assert_eq!(
            want.keys().collect::<Vec<_>>(),
            row.keys().collect::<Vec<_>>(),
            "trial {trial}: keys of the row at step {}",
            want["step"]
        );
        for (key, value) in want {
            let (a, b) = (value.as_f64().unwrap(), row[key].as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                "trial {trial}: {key} at step {} is {b}, uninterrupted {a}",
                want["step"]
            );
        }
    }
}

fn assert_same_weights(
    reference: &BTreeMap<String, Vec<f32>>,
    got: &BTreeMap<String, Vec<f32>>,
    trial: usize,
) -> f32 {
    assert_eq!(
        reference.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "trial {trial}: tensor names"
    );
    let mut worst = 0f32;
    for (name, a) in reference {
        let diff = crate::common::max_abs_diff(a, &got[name]);
        assert!(
            diff <= 1e-6,
            "trial {trial}: {name} differs from the uninterrupted run by {diff}"
        );
        worst = worst.max(diff);
    }
    worst
}

#[test]
fn train_resumed_after_kill_9_at_random_moments_equals_the_uninterrupted_run() {
    let root = tempfile::tempdir().unwrap();
    let reference_dir = root.path().join("reference");
    std::fs::create_dir(&reference_dir).unwrap();
    write_scored_pairs(&reference_dir, 48, 8);
    let recipe = write_recipe(&reference_dir);
    let started = Instant::now();
    let full = crossdistill(&["train", recipe.to_str().unwrap()]);
    let took = started.elapsed();
    assert!(full.status.success(), "{}", stderr(&full));
    let reference_run = reference_dir.join("run");
    let reference_weights = weights(&reference_run.join("final"));
    let reference_metrics = metrics(&reference_run);
    let reference_csv =
        std::fs::read_to_string(reference_run.join("eval/dev_results.csv")).unwrap();
    assert_eq!(
        reference_metrics
            .iter()
            .filter(|r| r.contains_key("loss"))
            .count(),
        8,
        "24 steps logged every 3"
    );
    assert_eq!(
        reference_csv.lines().count(),
        1 + 5,
        "a header and evaluations at steps 5, 10, 15, 20 and 24"
    );
    // 11 intermediate checkpoints (2, 4, ..., 22) and the final one (24).
    let checkpoint_writes = 12;

    let mut random = Random(2024);
    let (mut interrupted, mut before_first_checkpoint, mut during_a_write) = (0, 0, 0);
    let trials = 12;
    for trial in 0..trials {
        let dir = root.path().join(format!("trial-{trial}"));
        std::fs::create_dir(&dir).unwrap();
        write_scored_pairs(&dir, 48, 8);
        let recipe = write_recipe(&dir);
        let run = dir.join("run");
        let moment = match trial % 4 {
            // The first steps, before any checkpoint.
            0 if trial == 0 => Moment::Locked {
                extra: random.duration_below(Duration::from_millis(10)),
            },
            // Model loading and the first steps.
            0 => Moment::After(random.duration_below(Duration::from_millis(400))),
            1 => Moment::CheckpointWrite {
                nth: 1 + random.below(checkpoint_writes) as usize,
                extra: random.duration_below(Duration::from_millis(20)),
            },
            2 => Moment::After(random.duration_below(took)),
            _ if trial % 8 == 3 => Moment::FinalWrite {
                extra: random.duration_below(Duration::from_millis(5)),
            },
            _ => Moment::MetricsRows {
                rows: 1 + random.below(13) as usize,
            },
        };
        let killed = run_and_kill(&recipe, false, moment, &dir.join("first.log"));
        interrupted += killed.interrupted as usize;
        before_first_checkpoint += (killed.interrupted && !killed.had_checkpoint) as usize;
        during_a_write += killed.staging_left as usize;
        eprintln!("trial {trial}: kill at {moment:?}: {killed:?}");

        // Every other trial kills the resumed run too, anywhere.
        if trial % 2 == 1 {
            let again = Moment::After(random.duration_below(took));
            let killed = run_and_kill(&recipe, true, again, &dir.join("second.log"));
            interrupted += killed.interrupted as usize;
            eprintln!("trial {trial}: resumed run killed at {again:?}: {killed:?}");
        }
        let had_checkpoint = names_in(&run).iter().any(|n| {
            n.starts_with("checkpoint-") && run.join(n).join("trainer_state.json").is_file()
        });
        let resumed = crossdistill(&["train", recipe.to_str().unwrap(), "--resume"]);
        assert!(
            resumed.status.success(),
            "trial {trial}: {}",
            stderr(&resumed)
        );
        let said = stderr(&resumed);
        if had_checkpoint {
            assert!(said.contains("resumed from"), "trial {trial}: {said}");
        } else {
            assert!(
                said.contains("no complete checkpoint in") && said.contains("starting from step 0"),
                "trial {trial}: {said}"
            );
        }
        let diff = assert_same_weights(&reference_weights, &weights(&run.join("final")), trial);
        assert_same_metrics(&reference_metrics, &metrics(&run), trial);
        assert_eq!(
            std::fs::read_to_string(run.join("eval/dev_results.csv")).unwrap(),
            reference_csv,
            "trial {trial}: the evaluator CSV"
        );
        let leftovers: Vec<String> = names_in(&run)
            .into_iter()
            .filter(|n| n.contains(".staging-") || n.contains(".tmp-") || n.contains(".old-"))
            .collect();
        assert!(leftovers.is_empty(), "trial {trial}: left {leftovers:?}");
        eprintln!("trial {trial}: resumed; final weights within {diff} of the uninterrupted run");
    }
    // The moments above are chosen to land in each phase; check that they did.
    assert!(
        interrupted >= trials,
        "only {interrupted} kills interrupted a run"
    );
    assert!(
        before_first_checkpoint > 0,
        "no kill landed before the first checkpoint"
    );
    assert!(
        during_a_write > 0,
        "no kill landed while a checkpoint or the final model was written"
    );
}

#[test]
fn a_second_run_on_a_locked_run_directory_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    write_scored_pairs(dir.path(), 48, 8);
    let recipe = write_recipe(dir.path());
    let run = dir.path().join("run");
    let log = dir.path().join("first.log");
    let mut first = Command::new(env!("CARGO_BIN_EXE_crossdistill"))
        .args([
            "train",
            recipe.to_str().unwrap(),
            "--set",
            "train.epochs=200",
        ])
        .env("HF_HUB_OFFLINE", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // The lock is taken before the first metrics row is written.
    while complete_lines(&run.join("metrics.jsonl")) == 0 {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = crossdistill(&["train", recipe.to_str().unwrap(), "--resume"]);
    let still_running = first.try_wait().unwrap().is_none();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        still_running,
        "the first run ended before the second started"
    );
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    // The error is the last line, after the progress lines.
    let message = stderr(&second);
    let message = message.lines().last().unwrap_or_default();
    assert!(message.starts_with("error: "), "{message}");
    assert!(
        message.contains(&format!(
            "is in use by another crossdistill run (process {},",
            first.id()
        )),
        "{message}"
    );
    assert!(message.contains(".lock"), "{message}");
    assert!(
        message.contains("choose another run.output_dir"),
        "{message}"
    );
}
