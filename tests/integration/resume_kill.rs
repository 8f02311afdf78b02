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

/// The tiny XLM-R teaches the tiny BERT with MSE on teacher scores computed on the fly (no
/// cache): 64 pairs of varied lengths in batches of 4 over 2 epochs (32 steps), a checkpoint
/// every step. Teacher batches of 4 pairs make a teacher call 8 training batches long.
fn write_teacher_recipe(dir: &Path) -> PathBuf {
    let mut random = Random(77);
    let lines: Vec<String> = (0..64)
        .map(|_| {
            let query_words = 2 + random.below(5);
            let passage_words = 3 + random.below(18);
            serde_json::json!({
                "query": random.words(query_words),
                "passage": random.words(passage_words),
            })
            .to_string()
        })
        .collect();
    std::fs::write(dir.join("train.jsonl"), lines.join("\n") + "\n").unwrap();
    let text = format!(
        r#"version = 1
[run]
output_dir = "run"
seed = 5
[teacher]
kind = "candle"
model = "{teacher}"
batch_size = 4
[student]
model = "{student}"
max_length = 32
[data.train]
path = "train.jsonl"
columns = ["query", "passage"]
[[loss]]
kind = "mse"
labels = "teacher"
[train]
epochs = 2
batch_size = 4
learning_rate = 5e-3
log_every = 1
save_every = 1
"#,
        teacher = fixture("tiny-xlmr-ce").display(),
        student = fixture("tiny-bert-ce").display()
    );
    let path = dir.join("recipe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_run_killed_inside_a_teacher_call_resumes_bit_for_bit_without_a_cache() {
    // Teacher scores depend in their last bits on the other pairs of their teacher call
    // (padding), so a resumed producer must score in the same calls as an uninterrupted one.
    let window = 8;
    let root = tempfile::tempdir().unwrap();
    let reference_dir = root.path().join("reference");
    std::fs::create_dir(&reference_dir).unwrap();
    let recipe = write_teacher_recipe(&reference_dir);
    let full = crossdistill(&["train", recipe.to_str().unwrap()]);
    assert!(full.status.success(), "{}", stderr(&full));
    let reference_run = reference_dir.join("run");
    let reference_weights = weights(&reference_run.join("final"));
    let reference_metrics = metrics(&reference_run);
    // Kill while checkpoints 3 (epoch 0), 13 (epoch 0, second call) and 21 (epoch 1) are written.
    for (trial, nth) in [3usize, 13, 21].into_iter().enumerate() {
        let dir = root.path().join(format!("trial-{trial}"));
        std::fs::create_dir(&dir).unwrap();
        let recipe = write_teacher_recipe(&dir);
        let run = dir.join("run");
        let moment = Moment::CheckpointWrite {
            nth,
            extra: Duration::ZERO,
        };
        let killed = run_and_kill(&recipe, false, moment, &dir.join("first.log"));
        assert!(killed.interrupted && killed.had_checkpoint, "{killed:?}");
        let (step, _) = checkpoint_steps(&run).pop().unwrap();
        assert!(
            step % window != 0,
            "trial {trial}: the kill left checkpoint {step}, at the end of a teacher call"
        );
        let resumed = crossdistill(&["train", recipe.to_str().unwrap(), "--resume"]);
        assert!(
            resumed.status.success(),
            "trial {trial}: {}",
            stderr(&resumed)
        );
        assert!(
            stderr(&resumed).contains(&format!("(step {step})")),
            "trial {trial}: {}",
            stderr(&resumed)
        );
        let got = weights(&run.join("final"));
        for (name, want) in &reference_weights {
            let same = want
                .iter()
                .zip(&got[name])
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "trial {trial} (resumed at step {step}): {name} differs from the uninterrupted run by {}",
                crate::common::max_abs_diff(want, &got[name])
            );
        }
        assert_same_metrics(&reference_metrics, &metrics(&run), trial);
    }
}

/// The complete checkpoints of a run directory, by step.
fn checkpoint_steps(run: &Path) -> Vec<(usize, PathBuf)> {
    let mut steps: Vec<(usize, PathBuf)> = names_in(run)
        .into_iter()
        .filter_map(|name| {
            let step = name.strip_prefix("checkpoint-")?.parse().ok()?;
            let dir = run.join(&name);
            dir.join("trainer_state.json")
                .is_file()
                .then_some((step, dir))
        })
        .collect();
    steps.sort();
    steps
}

#[test]
fn resume_refuses_another_run_and_names_damaged_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    write_scored_pairs(dir.path(), 48, 8);
    // The student is a copy, so that another model can take its place under the same path.
    let student = dir.path().join("student");
    std::fs::create_dir(&student).unwrap();
    for entry in std::fs::read_dir(fixture("tiny-bert-ce")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), student.join(entry.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(write_recipe(dir.path()))
        .unwrap()
        .replace(&fixture("tiny-bert-ce").display().to_string(), "student");
    let recipe = dir.path().join("recipe.toml");
    std::fs::write(&recipe, text).unwrap();
    let recipe = recipe.to_str().unwrap();
    let run = dir.path().join("run");
    let full = crossdistill(&["train", recipe]);
    assert!(full.status.success(), "{}", stderr(&full));
    let refused = |args: &[&str]| -> String {
        let mut all = vec!["train", recipe, "--resume"];
        all.extend_from_slice(args);
        let output = crossdistill(&all);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        let text = stderr(&output);
        let last = text.lines().last().unwrap_or_default().to_string();
        assert!(last.starts_with("error: "), "{text}");
        last
    };

    // Changes that alter the run are refused, each named with both values.
    let other_data = format!(
        "data.train.path={}",
        dir.path().join("eval.jsonl").display()
    );
    let message = refused(&[
        "--set",
        "train.batch_size=8",
        "--set",
        &other_data,
        "--set",
        "train.log_every=5",
    ]);
    let checkpoint = run.join("checkpoint-24");
    assert!(
        message.contains(&format!("cannot resume {}", checkpoint.display())),
        "{message}"
    );
    assert!(
        message.contains("in 2 keys that change what the run computes"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "data.train.path: \"{}\" → \"{}\"",
            dir.path().join("train.jsonl").display(),
            dir.path().join("eval.jsonl").display()
        )),
        "{message}"
    );
    assert!(message.contains("train.batch_size: 4 → 8"), "{message}");
    assert!(!message.contains("log_every:"), "{message}");
    assert!(
        message.contains("only run.output_dir, train.log_every"),
        "{message}"
    );
    let message = refused(&["--set", "loss.0.kind=margin_mse", "--set", "run.seed=12"]);
    assert!(
        message.contains("loss.0.kind: \"mse\" → \"margin_mse\"; run.seed: 11 → 12"),
        "{message}"
    );

    // Cadences may change.
    let resumed = crossdistill(&["train", recipe, "--resume", "--set", "train.log_every=5"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));

    // Another model at the student's path: the checkpoint's weights do not fit it.
    for name in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        let from = fixture("tiny-xlmr-ce").join(name);
        if from.is_file() {
            std::fs::copy(from, student.join(name)).unwrap();
        }
    }
    let message = refused(&[]);
    assert!(
        message.contains(&format!(
            "cannot resume from {}: its model.safetensors does not fit the student",
            checkpoint.display()
        )),
        "{message}"
    );
    assert!(
        message.contains("resume with the student model the run started with"),
        "{message}"
    );
    for entry in std::fs::read_dir(fixture("tiny-bert-ce")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), student.join(entry.file_name())).unwrap();
    }

    // A damaged checkpoint file is named, with the checkpoint before it.
    std::fs::write(checkpoint.join("model.safetensors"), b"\x07\x00").unwrap();
    let message = refused(&[]);
    assert!(
        message.contains(&format!(
            "{}: cannot resume from this checkpoint:",
            checkpoint.join("model.safetensors").display()
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "move {} away and run again with --resume to continue from the previous checkpoint {}",
            checkpoint.display(),
            run.join("checkpoint-22").display()
        )),
        "{message}"
    );
}
