//! The training loop: pull batches from the producer, compute the weighted losses, backward,
//! clip, AdamW, log, checkpoint, and save the final student.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::Tensor;
use serde_json::{json, Value};

use super::checkpoint::{self, TrainerState};
use super::optim::{clip_grad_norm, AdamW, AdamWConfig};
use super::plan::Plan;
use crate::data::Row;
use crate::error::{Error, Result};
use crate::fsutil::{create_dir_all, write_atomic};
use crate::loss::{LossInput, LossValue};
use crate::model::{CrossEncoder, Dropout, ScoreActivation};
use crate::pipeline::{
    label_values, teacher_call_pairs, teacher_pairs, Batch, ColumnRoles, Producer, ProducerConfig,
};
use crate::recipe::{BatchSampler, LabelSource, OnNan};

/// What the trainer tells whoever watches it (the CLI renders it; library code never prints).
pub trait TrainProgress {
    /// Training starts at `step` of `total_steps`.
    fn start(&mut self, _step: usize, _total_steps: usize) {}
    /// An optimizer step finished with this (batch) loss.
    fn step(&mut self, _step: usize, _loss: f32) {}
    /// A metrics row was logged.
    fn logged(&mut self, _row: &Value) {}
    /// A human-readable event (checkpoint saved, evaluation result, ...).
    fn message(&mut self, _text: &str) {}
    /// Evaluator `name` has scored `done` of its `total` pairs.
    fn evaluating(&mut self, _name: &str, _done: usize, _total: usize) {}
}

/// A progress sink that ignores everything.
pub struct Silent;
impl TrainProgress for Silent {}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// Optimizer steps completed.
    pub steps: usize,
    /// The final student.
    pub final_dir: PathBuf,
    /// Student–teacher Spearman on held-out rows before training (when a teacher and eval data exist).
    pub agreement_before: Option<f64>,
    /// The same after training.
    pub agreement_after: Option<f64>,
    /// Teacher scores computed for the held-out rows.
    pub eval_pairs: usize,
    /// Teacher-score cache hits and misses of this process (recipe `[cache]`).
    pub cache: Option<crate::cache::CacheCounts>,
    /// Steps skipped for non-finite values (`train.on_nan = "skip"`), over the whole run.
    pub skipped_steps: usize,
}

/// Seed of the dropout stream of one micro-batch.
fn step_seed(seed: u64, step: usize, micro: usize) -> u64 {
    let mut z = seed ^ ((step as u64) << 20) ^ micro as u64;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Loss sums since the last log row.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LogWindow {
    steps: usize,
    loss: f64,
    per_loss: BTreeMap<String, f64>,
    pairs: usize,
    seconds: f64,
}

/// Run a planned training to the end (or from its latest checkpoint with `resume`).
///
/// A write that fails because the disk (or the file size limit) is full comes back as an
/// [`Error::Invalid`] that names the file and says how to go on; the run directory keeps its last
/// complete checkpoint, so `resume` continues from there.
///
/// Training runs on a rayon pool of its own (as many threads as the global pool), with the
/// calling thread waiting. Two reasons: candle's parallel CPU work started from a pool thread runs
/// on that pool with the calling thread taking part, instead of being queued into the global pool
/// and waited for op by op (the small ops of a training step lose most of their time that way:
/// a tiny student trains 15–20% faster); and the producer's teacher keeps the global pool, so
/// the trainer's short jobs do not queue behind the teacher's matrix products.
pub fn train(
    plan: Plan,
    resume: bool,
    progress: &mut (dyn TrainProgress + Send),
) -> Result<TrainReport> {
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("crossdistill-trainer-{i}"))
        .build()
        .map_err(|e| Error::Thread {
            thread: "trainer",
            message: format!("cannot start its thread pool: {e}"),
        })?;
    pool.install(|| run_training(plan, resume, progress))
        .map_err(explain_full_disk)
}

/// ENOSPC, EFBIG and EDQUOT: the disk, the file size limit or the quota is full.
fn explain_full_disk(error: Error) -> Error {
    let full = |source: &std::io::Error| {
        matches!(
            source.kind(),
            std::io::ErrorKind::StorageFull
                | std::io::ErrorKind::FileTooLarge
                | std::io::ErrorKind::QuotaExceeded
        )
    };
    match error {
        Error::Io {
            action,
            path,
            source,
        } if full(&source) => {
            let message = format!(
                "{action} {}: {source}; the run directory keeps its last complete checkpoint",
                path.display()
            );
            Error::invalid(message).with_hint(
                "free disk space (or raise the file size limit or quota), then run again with --resume",
            )
        }
        other => other,
    }
}

fn run_training(
    mut plan: Plan,
    resume: bool,
    progress: &mut (dyn TrainProgress + Send),
) -> Result<TrainReport> {
    let output_dir = plan.output_dir.clone();
    check_output_dir(&output_dir)?;
    create_dir_all(&output_dir)?;
    let _lock = lock_run_dir(&output_dir)?;
    checkpoint::remove_stale_temporaries(&output_dir)?;
    let resolved = plan.recipe.to_resolved_toml();
    let metrics_path = output_dir.join("metrics.jsonl");

    let train = plan.recipe.train.clone();
    let seed = plan.recipe.run.seed;
    let mut optimizer = AdamW::new(
        plan.student.params(),
        AdamWConfig {
            weight_decay: train.weight_decay,
            ..AdamWConfig::default()
        },
    );
    let mut state = TrainerState::default();
    if resume {
        match checkpoint::latest(&output_dir)? {
            Some(dir) => {
                super::resume::check_same_run(&dir, &output_dir, &resolved)?;
                state = checkpoint::load(&dir, &plan.student, &mut optimizer)?;
                checkpoint::rewind_logs(&output_dir, Some(&state))?;
                progress.message(&format!(
                    "resumed from {} (step {})",
                    dir.display(),
                    state.step
                ));
            }
            None => {
                checkpoint::rewind_logs(&output_dir, None)?;
                progress.message(&format!(
                    "no complete checkpoint in {} to resume from; starting from step 0",
                    output_dir.display()
                ));
            }
        }
    } else if checkpoint::latest(&output_dir)?.is_some() {
        return Err(Error::invalid(format!(
            "{} already holds checkpoints of an earlier run",
            output_dir.display()
        ))
        .with_hint("pass --resume to continue it, or choose another run.output_dir"));
    } else {
        // Logs of an earlier run that died before its first checkpoint.
        checkpoint::rewind_logs(&output_dir, None)?;
    }
    // Written after the resume check, which compares with the run's own copy.
    write_atomic(
        &output_dir.join(super::resume::RECIPE_FILE),
        resolved.as_bytes(),
    )?;

    // Held-out agreement: the student's scores before training are taken here (and kept in the
    // checkpoints); the producer's teacher scores the held-out pairs when it is otherwise idle,
    // and both agreements are computed at the end.
    let (held_out, held_out_teacher_pairs) = match (&plan.eval_source, &plan.teacher) {
        (Some(source), Some(_)) if state.step == 0 || resume => {
            let max_rows = plan.recipe.data.eval.as_ref().and_then(|e| e.max_rows);
            let (h, teacher_pairs) = HeldOut::read(source, max_rows, plan.columns.as_ref())?;
            (Some(h), teacher_pairs)
        }
        _ => (None, Vec::new()),
    };
    let teacher_labels = plan.losses.iter().any(|l| l.labels == LabelSource::Teacher);
    let producer_config = ProducerConfig {
        source: plan.train_source.clone(),
        max_rows: plan.recipe.data.train.max_rows,
        epochs: plan.epochs,
        start: state.position,
        batch_size: train.batch_size,
        shuffle: train.shuffle,
        shuffle_buffer: 10_000,
        seed,
        no_duplicates: train.batch_sampler == BatchSampler::NoDuplicates,
        teacher_pairs: teacher_call_pairs(
            plan.recipe.teachers.first().map_or(64, |t| t.batch_size),
        ),
        capacity: train.channel_capacity,
        columns: plan.columns.clone(),
        held_out: held_out_teacher_pairs,
        teacher_labels,
    };
    let teacher = if teacher_labels || held_out.is_some() {
        plan.teacher.take()
    } else {
        None
    };
    let mut producer = Producer::spawn(producer_config, teacher)?;
    if let (Some(h), 0) = (&held_out, state.step) {
        state.held_out_before = Some(h.student_scores(&plan.student)?);
    }

    progress.start(state.step, plan.total_steps);
    let vars: Vec<candle_core::Var> = plan.student.vars().to_vec();
    let mut window = state.window.clone();
    let mut finished_data = false;
    // One gradient buffer per variable for the whole run, zeroed each step: a fresh allocation
    // per step made glibc map and unmap them, faulting their pages in each time.
    let mut grads: Vec<Vec<f32>> = vars.iter().map(|v| vec![0f32; v.elem_count()]).collect();
    while state.step < plan.total_steps && !finished_data {
        let started = Instant::now();
        grads.iter_mut().for_each(|g| g.fill(0.0));
        let mut step_loss = 0f64;
        let mut step_parts: BTreeMap<String, f64> = BTreeMap::new();
        let mut micro_batches = 0usize;
        let mut pairs = 0usize;
        let mut batch_lines: Vec<usize> = Vec::new();
        let mut teacher_nan: Option<String> = None;
        for micro in 0..train.gradient_accumulation {
            let batch = match producer.next_batch() {
                Some(batch) => batch?,
                None => {
                    finished_data = true;
                    break;
                }
            };
            state.position = batch.position;
            batch_lines.extend(batch.examples.iter().map(|r| r.line));
            pairs += batch_pairs(&batch);
            if let Some(bad) = non_finite_teacher_score(&batch, &plan.recipe.data.train.resolved())
            {
                if train.on_nan == OnNan::Stop {
                    return Err(Error::invalid(format!(
                        "step {}: the teacher scored {bad}",
                        state.step + 1
                    ))
                    .with_hint("check the teacher model (its weights or its ONNX export give non-finite scores for these pairs), or set train.on_nan = \"skip\" to skip such batches"));
                }
                teacher_nan.get_or_insert(bad);
                micro_batches += 1;
                continue;
            }
            let (value, parts) = micro_step(
                &mut plan,
                &batch,
                &vars,
                &mut grads,
                step_seed(seed, state.step, micro),
                train.gradient_accumulation,
            )
            .map_err(|error| in_batch(error, &batch, &plan.recipe.data.train.resolved()))?;
            step_loss += value;
            for (k, v) in parts {
                *step_parts.entry(k).or_default() += v;
            }
            micro_batches += 1;
        }
        if micro_batches == 0 {
            break;
        }
        let scale = 1.0 / micro_batches as f64;
        step_loss *= scale;
        let non_finite = teacher_nan.is_some()
            || !step_loss.is_finite()
            || grads.iter().flatten().any(|g| !g.is_finite());
        if non_finite {
            match train.on_nan {
                OnNan::Stop => {
                    return Err(Error::invalid(format!(
                        "non-finite loss or gradient at step {} (loss {step_loss}); the batch holds the rows at lines {:?} of {}",
                        state.step + 1,
                        batch_lines,
                        plan.recipe.data.train.resolved(),
                    ))
                    .with_hint("lower train.learning_rate, check those rows and the teacher's scores for NaN/inf, or set train.on_nan = \"skip\" to skip such batches"));
                }
                OnNan::Skip => {
                    let cause = match &teacher_nan {
                        Some(bad) => format!("the teacher scored {bad}"),
                        None => format!("non-finite loss or gradient (loss {step_loss})"),
                    };
                    progress.message(&format!(
                        "step {}: {cause}, batch skipped (rows at lines {:?} of {})",
                        state.step + 1,
                        batch_lines,
                        plan.recipe.data.train.resolved(),
                    ));
                    state.step += 1;
                    state.skipped_steps += 1;
                    continue;
                }
            }
        }
        let grad_norm = clip_grad_norm(&mut grads, train.max_grad_norm);
        let lr = plan.schedule.lr(state.step);
        optimizer.step(&vars, &grads, lr)?;
        state.step += 1;
        window.steps += 1;
        window.loss += step_loss;
        for (k, v) in step_parts {
            *window.per_loss.entry(k).or_default() += v * scale;
        }
        window.pairs += pairs;
        window.seconds += started.elapsed().as_secs_f64();
        state.last_lr = lr;
        state.last_grad_norm = grad_norm;
        progress.step(state.step, step_loss as f32);

        let last = state.step >= plan.total_steps;
        if state.step % train.log_every.max(1) == 0 || last {
            let mut row = log_row(&window, state.step, plan.steps_per_epoch, lr, grad_norm);
            if let (Some(cache), Value::Object(fields)) = (&plan.cache, &mut row) {
                for (name, count) in cache.snapshot().metrics() {
                    fields.insert(name.into(), json!(count));
                }
            }
            append_metrics(&metrics_path, &row)?;
            progress.logged(&row);
            window = LogWindow::default();
        }
        if train.eval_every > 0
            && state.step % train.eval_every == 0
            && !last
            && !plan.evaluators.is_empty()
        {
            run_evaluation(&plan, &mut state, &output_dir, &metrics_path, progress)?;
        }
        if train.save_every > 0 && state.step % train.save_every == 0 && !last {
            state.window = window.clone();
            let dir = checkpoint::save(
                &output_dir,
                &plan.student,
                &optimizer,
                &state,
                &resolved,
                train.save_total_limit,
            )?;
            progress.message(&format!("saved {}", dir.display()));
        }
    }
    // The producer goes on to the held-out pairs (if it has not yet) while the trainer
    // checkpoints and evaluates.
    producer.end_batches();
    check_skipped(state.skipped_steps, state.step)?;

    // The final checkpoint, then the final evaluation and the final model. The checkpoint comes
    // first so that a run killed during what follows resumes from it and redoes all of it
    // (rewinding the logs to the checkpoint drops the rows already written).
    state.window = window;
    checkpoint::save(
        &output_dir,
        &plan.student,
        &optimizer,
        &state,
        &resolved,
        train.save_total_limit,
    )?;
    let final_results = if plan.evaluators.is_empty() {
        Vec::new()
    } else {
        run_evaluation(&plan, &mut state, &output_dir, &metrics_path, progress)?
    };
    if let Some(h) = &held_out {
        let teacher: Vec<f64> = producer
            .held_out_scores()?
            .into_iter()
            .map(f64::from)
            .collect();
        if let (None, Some(before)) = (state.agreement_before, &state.held_out_before) {
            state.agreement_before = Some(crate::eval::spearman(before, &teacher)?);
        }
        let after = h.student_scores(&plan.student)?;
        state.agreement_after = Some(crate::eval::spearman(&after, &teacher)?);
    }
    drop(producer);
    if let (Some(before), Some(after)) = (state.agreement_before, state.agreement_after) {
        let row = json!({"step": state.step, "eval/agreement/spearman_before": before, "eval/agreement/spearman": after});
        append_metrics(&metrics_path, &row)?;
        progress.logged(&row);
    }
    let final_dir = output_dir.join("final");
    let best_dir = output_dir.join("best");
    if train.load_best_model_at_end && best_dir.join("model.safetensors").is_file() {
        let best = candle_core::safetensors::load(
            best_dir.join("model.safetensors"),
            &candle_core::Device::Cpu,
        )?;
        plan.student.params().assign(&best)?;
        progress.message(&format!(
            "loaded the best model (step {})",
            state.best_step.unwrap_or(0)
        ));
    }
    plan.student
        .save(&final_dir, plan.student.default_activation())?;
    super::finish::write_card(&plan, &state, &final_results)?;
    let eval_pairs = held_out.as_ref().map_or(0, |h| h.pairs.len());
    Ok(TrainReport {
        steps: state.step,
        final_dir,
        agreement_before: state.agreement_before,
        agreement_after: state.agreement_after,
        eval_pairs,
        cache: plan.cache.as_ref().map(|c| c.snapshot()),
        skipped_steps: state.skipped_steps,
    })
}

/// `output_dir`, or the first of its parents that exists, must be a directory: say so with the
/// recipe key rather than as an OS error from creating it.
fn check_output_dir(output_dir: &Path) -> Result<()> {
    let mut path = output_dir;
    loop {
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(Error::invalid(format!(
                    "run.output_dir {} cannot be created: {} is a file, expected a directory",
                    output_dir.display(),
                    path.display()
                ))
                .with_hint("set run.output_dir (or --set run.output_dir=DIR) to a directory path, or move the file away"))
            }
            Err(_) => match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => path = parent,
                _ => return Ok(()),
            },
        }
    }
}

/// An exclusive lock on `output_dir/.lock`, held for the whole run: a second run on the same
/// directory gets an error naming the process that holds it. Released when the file closes
/// (also when the process dies).
fn lock_run_dir(output_dir: &Path) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let path = output_dir.join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("cannot open", &path, e))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)
                .map_err(|e| Error::io("cannot write", &path, e))?;
            file.rewind()
                .map_err(|e| Error::io("cannot write", &path, e))?;
            write!(file, "{}", std::process::id())
                .map_err(|e| Error::io("cannot write", &path, e))?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "whose id is not written yet".to_string(),
                pid => pid.to_string(),
            };
            Err(Error::invalid(format!(
                "{} is in use by another crossdistill run (process {holder}, holding {})",
                output_dir.display(),
                path.display()
            ))
            .with_hint("wait for it to finish, or choose another run.output_dir"))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("cannot lock", &path, e)),
    }
}

/// Evaluate, log `eval/...` metrics, and keep the best model when asked to.
fn run_evaluation(
    plan: &Plan,
    state: &mut TrainerState,
    output_dir: &Path,
    metrics_path: &Path,
    progress: &mut dyn TrainProgress,
) -> Result<Vec<crate::card::EvalResult>> {
    let (flat, results) = super::finish::evaluate(plan, state.step, output_dir, progress)?;
    let mut row = serde_json::Map::new();
    row.insert("step".into(), json!(state.step));
    for (key, value) in &flat {
        row.insert(key.clone(), json!(value));
    }
    let row = Value::Object(row);
    append_metrics(metrics_path, &row)?;
    progress.logged(&row);
    if let Some(wanted) = &plan.recipe.train.metric_for_best_model {
        let key = super::finish::best_metric_key(wanted, &flat)?;
        let value = flat[&key];
        if super::finish::is_better(&key, value, state.best_metric) {
            state.best_metric = Some(value);
            state.best_step = Some(state.step);
            if plan.recipe.train.load_best_model_at_end {
                plan.student
                    .save(&output_dir.join("best"), plan.student.default_activation())?;
            }
            progress.message(&format!(
                "new best {key} = {value:.4} at step {}",
                state.step
            ));
        }
    }
    Ok(results)
}

/// Most steps a run may skip (`train.on_nan = "skip"`), as a fraction of its steps: a run that
/// skipped more learned from too little of its data to be reported as a success.
pub const MAX_SKIPPED_FRACTION: f64 = 0.5;

/// Fail a run that skipped every step, or more than [`MAX_SKIPPED_FRACTION`] of them.
fn check_skipped(skipped: usize, steps: usize) -> Result<()> {
    if skipped == 0 || (skipped as f64) <= MAX_SKIPPED_FRACTION * steps as f64 {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{skipped} of {steps} steps were skipped (train.on_nan = \"skip\"): non-finite teacher scores, losses or gradients; the student was {} trained",
        if skipped == steps { "not" } else { "barely" }
    ))
    .with_hint(format!(
        "the log names the rows of each skipped batch: fix them (or the teacher, or lower train.learning_rate) and train again; a run may skip at most {}% of its steps",
        (MAX_SKIPPED_FRACTION * 100.0) as usize
    )))
}

/// The first non-finite teacher score of a batch, with its pair and row, and how many more the
/// batch holds; `None` when every score is finite (or there are none).
fn non_finite_teacher_score(batch: &Batch, train_file: &str) -> Option<String> {
    let scores = batch.teacher_scores.as_ref()?;
    let mut first: Option<String> = None;
    let mut count = 0usize;
    for (example, example_scores) in batch.examples.iter().zip(scores) {
        for (index, score) in example_scores.iter().enumerate() {
            if score.is_finite() {
                continue;
            }
            count += 1;
            if first.is_none() {
                let pair = teacher_pairs(example, None)
                    .ok()
                    .and_then(|pairs| pairs.get(index).copied())
                    .map_or_else(
                        || format!("pair {}", index + 1),
                        |(query, document)| {
                            format!("({:?}, {:?})", shorten(query), shorten(document))
                        },
                    );
                first = Some(format!(
                    "{score} for {pair} of the row at line {} of {train_file}",
                    example.line
                ));
            }
        }
    }
    first.map(|first| match count {
        1 => first,
        n => format!("{first}, and {} more non-finite scores in the batch", n - 1),
    })
}

/// A text cut to its first 60 characters, for messages.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// A loss's complaint about a batch (a label out of range, a wrong number of columns), told with
/// the file and lines of the rows it holds: losses see a batch, the user knows the file.
fn in_batch(error: Error, batch: &Batch, train_file: &str) -> Error {
    match error {
        Error::Invalid { message, hint } => {
            let lines: Vec<usize> = batch.examples.iter().map(|row| row.line).collect();
            Error::Invalid {
                message: format!(
                    "{message}; the batch holds the rows at lines {lines:?} of {train_file}"
                ),
                hint,
            }
        }
        other => other,
    }
}

fn batch_pairs(batch: &Batch) -> usize {
    batch
        .examples
        .iter()
        .map(|row| {
            row.fields
                .iter()
                .skip(1)
                .map(|f| match f {
                    crate::data::Field::Text(_) => 1,
                    crate::data::Field::List(l) => l.len(),
                })
                .sum::<usize>()
        })
        .sum()
}

/// Forward and backward of every loss on one micro-batch; adds `grad / accumulation` into
/// `grads`. Returns the weighted total and each loss's value.
fn micro_step(
    plan: &mut Plan,
    batch: &Batch,
    vars: &[candle_core::Var],
    grads: &mut [Vec<f32>],
    seed: u64,
    accumulation: usize,
) -> Result<(f64, BTreeMap<String, f64>)> {
    let data_labels: Option<Vec<Vec<f32>>> = batch
        .examples
        .iter()
        .map(|row| row.label.as_ref().map(label_values))
        .collect();
    let mut graph: Option<Tensor> = None;
    let mut total = 0f64;
    let mut parts = BTreeMap::new();
    let mut own_grads: Vec<(f64, GradStore)> = Vec::new();
    for (index, planned) in plan.losses.iter_mut().enumerate() {
        let labels: Option<&[Vec<f32>]> = match planned.labels {
            LabelSource::Teacher => batch.teacher_scores.as_deref(),
            LabelSource::Data => data_labels.as_deref(),
        };
        let input = LossInput {
            examples: &batch.examples,
            labels,
            seed: seed ^ index as u64,
        };
        let mut dropout = Dropout::new(seed);
        let value = planned.loss.compute(&plan.student, &input, &mut dropout)?;
        let kind = planned.log_key.clone();
        match value {
            LossValue::Graph(loss) => {
                let scalar = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
                total += planned.weight * scalar;
                *parts.entry(kind).or_insert(0.0) += scalar;
                let weighted = (loss.to_dtype(candle_core::DType::F32)? * planned.weight)?;
                graph = Some(match graph {
                    Some(g) => (g + weighted)?,
                    None => weighted,
                });
            }
            LossValue::Backpropagated { value, grads } => {
                total += planned.weight * value as f64;
                *parts.entry(kind).or_insert(0.0) += value as f64;
                own_grads.push((planned.weight, grads));
            }
        }
    }
    let scale = 1.0 / accumulation as f64;
    if let Some(graph) = graph {
        let store = graph.backward()?;
        add_grads(vars, &store, grads, scale)?;
    }
    for (weight, store) in own_grads {
        add_grads(vars, &store, grads, weight * scale)?;
    }
    Ok((total, parts))
}

fn add_grads(
    vars: &[candle_core::Var],
    store: &GradStore,
    grads: &mut [Vec<f32>],
    scale: f64,
) -> Result<()> {
    let scale = scale as f32;
    for (var, acc) in vars.iter().zip(grads.iter_mut()) {
        if let Some(grad) = store.get(var.as_tensor()) {
            crate::model::ops::add_scaled_into(grad, acc, scale)?;
        }
    }
    Ok(())
}

fn log_row(
    window: &LogWindow,
    step: usize,
    steps_per_epoch: usize,
    lr: f64,
    grad_norm: f64,
) -> Value {
    let n = window.steps.max(1) as f64;
    let mut row = serde_json::Map::new();
    row.insert("step".into(), json!(step));
    row.insert(
        "epoch".into(),
        json!(round(step as f64 / steps_per_epoch.max(1) as f64, 4)),
    );
    row.insert("loss".into(), json!(window.loss / n));
    for (kind, sum) in &window.per_loss {
        row.insert(kind.clone(), json!(sum / n));
    }
    row.insert("learning_rate".into(), json!(lr));
    row.insert("grad_norm".into(), json!(grad_norm));
    let pairs_per_s = if window.seconds > 0.0 {
        window.pairs as f64 / window.seconds
    } else {
        0.0
    };
    row.insert("pairs_per_s".into(), json!(round(pairs_per_s, 2)));
    Value::Object(row)
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Append one JSON row to metrics.jsonl and fsync it.
fn append_metrics(path: &Path, row: &Value) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("cannot open", path, e))?;
    let mut line = serde_json::to_vec(row)?;
    line.push(b'\n');
    file.write_all(&line)
        .and_then(|_| file.sync_data())
        .map_err(|e| Error::io("cannot write", path, e))
}

/// The held-out pairs the student scores, for student–teacher agreement.
struct HeldOut {
    pairs: Vec<(String, String)>,
}

impl HeldOut {
    /// The held-out rows (the first `max_rows`) as student pairs, and the teacher's pair for
    /// each (its own columns with parallel data), which the producer scores. With parallel
    /// columns the student is judged on each of its column groups against the teacher's score
    /// of the teacher's columns.
    fn read(
        source: &crate::data::DataSource,
        max_rows: Option<usize>,
        columns: Option<&ColumnRoles>,
    ) -> Result<(Self, Vec<(String, String)>)> {
        let teacher_fields = columns.and_then(ColumnRoles::teacher_fields);
        let mut student_pairs = Vec::new();
        let mut teacher_pairs_text = Vec::new();
        for row in source.open()?.take(max_rows.unwrap_or(usize::MAX)) {
            let row: Row = row?;
            let examples = match columns {
                Some(roles) => roles.expand(&row, true)?,
                None => vec![row],
            };
            for example in examples {
                let width = columns.map_or(example.fields.len(), ColumnRoles::student_width);
                let scored = teacher_pairs(&example, teacher_fields.as_deref())?;
                let mut student_view = example.clone();
                student_view.fields.truncate(width);
                let learned = teacher_pairs(&student_view, None)?;
                if learned.len() != scored.len() {
                    return Err(Error::invalid(format!(
                        "held-out row {}: the student reads {} pairs, the teacher scores {}",
                        example.line,
                        learned.len(),
                        scored.len()
                    )));
                }
                for ((q, d), (tq, td)) in learned.into_iter().zip(scored) {
                    student_pairs.push((q.to_string(), d.to_string()));
                    teacher_pairs_text.push((tq.to_string(), td.to_string()));
                }
            }
        }
        Ok((
            Self {
                pairs: student_pairs,
            },
            teacher_pairs_text,
        ))
    }

    /// The student's raw scores (logits) of the held-out pairs.
    fn student_scores(&self, student: &CrossEncoder) -> Result<Vec<f64>> {
        Ok(student
            .predict(&self.pairs, 32, ScoreActivation::Identity)?
            .into_iter()
            .map(f64::from)
            .collect())
    }
}
