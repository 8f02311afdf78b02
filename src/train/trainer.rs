//! The training loop: open the run, then step (pull batches from the producer, losses forward
//! and backward, clip, AdamW) and after each step log, evaluate and checkpoint, then finish (the
//! final checkpoint, evaluation and agreement, the final model and its card).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Var;
use serde_json::{json, Value};

use super::best_model::{best_metric_key, is_better};
use super::checkpoint;
use super::deferred_steps::{DeferredSteps, SettledStep};
use super::evaluation;
use super::held_out::HeldOut;
use super::metrics_log::append_metrics;
use super::micro_batch::{batch_pairs, in_batch, micro_step, step_seed};
use super::model_card::write_card;
use super::nan_policy::{
    check_skipped, non_finite_teacher_score, teacher_scored_non_finite, NonFiniteStep,
};
use super::optim::{AdamW, AdamWConfig};
use super::plan::Plan;
use super::progress::TrainProgress;
use super::resume;
use super::run_dir::{check_output_dir, explain_full_disk, lock_run_dir};
use super::step_losses::StepLosses;
use super::step_optimizer::{StepEnd, StepOptimizer};
use super::trainer_state::{LogWindow, TrainerState};
use crate::card::EvalResult;
use crate::error::{Error, Result};
use crate::fsutil::{create_dir_all, write_atomic};
use crate::pipeline::{Producer, ProducerConfig};
use crate::recipe::OnNan;

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

fn run_training(
    plan: Plan,
    resume: bool,
    progress: &mut (dyn TrainProgress + Send),
) -> Result<TrainReport> {
    let mut trainer = Trainer::open(plan, resume, progress)?;
    while trainer.state.step < trainer.plan.total_steps && !trainer.out_of_data {
        match trainer.step()? {
            Step::Taken => trainer.after_step()?,
            Step::Skipped => {}
            Step::NoBatch => break,
        }
    }
    trainer.finish()
}

/// What one call of [`Trainer::step`] did.
enum Step {
    /// The optimizer took a step.
    Taken,
    /// The step's batches held non-finite values and `train.on_nan = "skip"`: the step counts,
    /// the weights did not change.
    Skipped,
    /// The data ended before the step's first micro-batch.
    NoBatch,
}

/// A run in progress: the plan, the optimizer and the trainer state, the producer the batches
/// come from, and the open run directory.
struct Trainer<'a> {
    plan: Plan,
    progress: &'a mut (dyn TrainProgress + Send),
    /// The step's gradients and AdamW: host buffers updated in place on CPU, device tensors
    /// elsewhere (kept for the whole run: a fresh allocation per step made glibc map and unmap
    /// the host buffers, faulting their pages in each time).
    optimizer: StepOptimizer,
    state: TrainerState,
    /// Loss sums since the last log row (copied into `state` when a checkpoint is taken).
    window: LogWindow,
    /// The device path's steps not yet read from the device (empty on the host path, and
    /// whenever a log row, evaluation or checkpoint is written).
    deferred: DeferredSteps,
    producer: Producer,
    held_out: Option<HeldOut>,
    vars: Vec<Var>,
    metrics_path: PathBuf,
    /// The producer has no more batches.
    out_of_data: bool,
    /// Held for the whole run: the lock on the run directory.
    _lock: std::fs::File,
}

impl<'a> Trainer<'a> {
    /// Open the run: check and lock its directory, resume from the latest checkpoint (or make
    /// sure there is none), write the resolved recipe, read the held-out pairs and start the
    /// producer.
    fn open(
        mut plan: Plan,
        resume: bool,
        progress: &'a mut (dyn TrainProgress + Send),
    ) -> Result<Self> {
        let output_dir = plan.output_dir.clone();
        check_output_dir(&output_dir)?;
        create_dir_all(&output_dir)?;
        let lock = lock_run_dir(&output_dir)?;
        checkpoint::remove_stale_temporaries(&output_dir)?;
        let mut optimizer = AdamW::new(
            plan.student.params(),
            AdamWConfig {
                weight_decay: plan.step.weight_decay,
                ..AdamWConfig::default()
            },
        );
        let mut state = TrainerState::default();
        if resume {
            match checkpoint::latest(&output_dir)? {
                Some(dir) => {
                    resume::check_same_run(&dir, &output_dir, &plan.resolved_recipe)?;
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
            &output_dir.join(resume::RECIPE_FILE),
            plan.resolved_recipe.as_bytes(),
        )?;

        // Held-out agreement: the student's scores before training are taken here (and kept in
        // the checkpoints); the producer's teacher scores the held-out pairs when it is otherwise
        // idle, and both agreements are computed at the end.
        let (held_out, held_out_teacher_pairs) = match (&plan.eval_source, &plan.teacher) {
            (Some(source), Some(_)) if state.step == 0 || resume => {
                let (h, teacher_pairs) =
                    HeldOut::read(source, plan.eval_max_rows, plan.columns.as_ref())?;
                (Some(h), teacher_pairs)
            }
            _ => (None, Vec::new()),
        };
        let batching = &plan.batching;
        let producer_config = ProducerConfig {
            source: plan.train_source.clone(),
            max_rows: batching.max_rows,
            epochs: plan.epochs,
            start: state.position,
            batch_size: batching.batch_size,
            shuffle: batching.shuffle,
            shuffle_buffer: 10_000,
            seed: plan.seed,
            no_duplicates: batching.no_duplicates,
            teacher_pairs: batching.teacher_call_pairs,
            capacity: batching.channel_capacity,
            columns: plan.columns.clone(),
            held_out: held_out_teacher_pairs,
            teacher_labels: batching.teacher_labels,
        };
        let teacher = if batching.teacher_labels || held_out.is_some() {
            plan.teacher.take()
        } else {
            None
        };
        let producer = Producer::spawn(producer_config, teacher)?;
        if let (Some(h), 0) = (&held_out, state.step) {
            state.held_out_before = Some(h.student_scores(&plan.student)?);
        }

        progress.start(state.step, plan.total_steps);
        let vars: Vec<Var> = plan.student.vars().to_vec();
        let optimizer = StepOptimizer::for_params(plan.student.params(), optimizer)?;
        if matches!(optimizer, StepOptimizer::Device { .. }) {
            progress.message(&format!(
                "device-resident step on {:?}: gradients, clipping and AdamW stay there; losses and gradient norms are read once per log window (train.log_every = {})",
                plan.student.device().location(),
                plan.cadence.log_every
            ));
        }
        Ok(Self {
            window: state.window.clone(),
            deferred: DeferredSteps::default(),
            metrics_path: output_dir.join("metrics.jsonl"),
            plan,
            progress,
            optimizer,
            state,
            producer,
            held_out,
            vars,
            out_of_data: false,
            _lock: lock,
        })
    }

    /// One optimizer step: `train.gradient_accumulation` micro-batches forward and backward, then
    /// the non-finite check, gradient clipping and AdamW. On the host path the step is settled
    /// (logged, or skipped / stopped when not finite) at once; on the device path its scalars
    /// wait on the device until [`Trainer::settle_deferred`].
    fn step(&mut self) -> Result<Step> {
        let started = Instant::now();
        let plan_step = self.plan.step.clone();
        self.optimizer.zero();
        let mut losses = StepLosses::new(self.plan.student.device());
        let mut micro_batches = 0usize;
        let mut pairs = 0usize;
        let mut batch_lines: Vec<usize> = Vec::new();
        let mut teacher_nan: Option<String> = None;
        for micro in 0..plan_step.gradient_accumulation {
            let batch = match self.producer.next_batch() {
                Some(batch) => batch?,
                None => {
                    self.out_of_data = true;
                    break;
                }
            };
            self.state.position = batch.position;
            batch_lines.extend(batch.examples.iter().map(|r| r.line));
            pairs += batch_pairs(&batch);
            if let Some(bad) = non_finite_teacher_score(&batch, &self.plan.train_name) {
                if plan_step.on_nan == OnNan::Stop {
                    return Err(teacher_scored_non_finite(self.state.step + 1, &bad));
                }
                teacher_nan.get_or_insert(bad);
                micro_batches += 1;
                continue;
            }
            let seed = step_seed(self.plan.seed, self.state.step, micro);
            micro_step(
                &mut self.plan,
                &batch,
                &self.vars,
                &mut self.optimizer,
                seed,
                plan_step.gradient_accumulation,
                &mut losses,
            )
            .map_err(|error| in_batch(error, &batch, &self.plan.train_name))?;
            micro_batches += 1;
        }
        if micro_batches == 0 {
            return Ok(Step::NoBatch);
        }
        if let Some(bad) = teacher_nan {
            // Known on the host (the teacher's scores are): skipped without an update.
            let skipped = NonFiniteStep {
                step: self.state.step + 1,
                teacher_score: Some(&bad),
                loss: f64::NAN,
                lines: &batch_lines,
                train_name: &self.plan.train_name,
            }
            .skip_or_stop(plan_step.on_nan)?;
            self.progress.message(&skipped);
            self.state.step += 1;
            self.state.skipped_steps += 1;
            return Ok(Step::Skipped);
        }
        let scale = 1.0 / micro_batches as f64;
        let loss = losses.total(scale)?;
        let lr = self.plan.schedule.lr(self.state.step);
        let end = self
            .optimizer
            .finish(&self.vars, &loss, plan_step.max_grad_norm, lr)?;
        self.state.step += 1;
        let settled = SettledStep {
            step: self.state.step,
            loss: f64::NAN,
            parts: BTreeMap::new(),
            scale,
            norm: f64::NAN,
            lr,
            pairs,
            seconds: started.elapsed().as_secs_f64(),
            lines: batch_lines,
        };
        match end {
            StepEnd::Known { loss: value, norm } => {
                let settled = SettledStep {
                    loss: value,
                    norm,
                    parts: losses.read_parts()?,
                    ..settled
                };
                Ok(if self.settle(settled)? {
                    Step::Taken
                } else {
                    Step::Skipped
                })
            }
            StepEnd::Deferred { norm } => {
                self.deferred.push(&loss, &norm, &losses, settled)?;
                Ok(Step::Taken)
            }
        }
    }

    /// Account for a step whose scalars are on the host: a finite one goes into the log window;
    /// a non-finite one (its update was not applied) is skipped with a message or stops the run
    /// (`train.on_nan`). Returns whether the step counted as taken.
    fn settle(&mut self, step: SettledStep) -> Result<bool> {
        if step.is_finite() {
            self.state.last_lr = step.lr;
            self.state.last_grad_norm = step.norm;
            self.progress.step(step.step, step.loss as f32);
            self.window
                .add_step(step.loss, step.parts, step.scale, step.pairs, step.seconds);
            return Ok(true);
        }
        let skipped = NonFiniteStep {
            step: step.step,
            teacher_score: None,
            loss: step.loss,
            lines: &step.lines,
            train_name: &self.plan.train_name,
        }
        .skip_or_stop(self.plan.step.on_nan)?;
        self.progress.message(&skipped);
        self.state.skipped_steps += 1;
        Ok(false)
    }

    /// Read the device path's waiting steps (one copy from the device) and settle each.
    fn settle_deferred(&mut self) -> Result<()> {
        for step in self.deferred.read()? {
            self.settle(step)?;
        }
        Ok(())
    }

    /// After a step: log a metrics row, evaluate and checkpoint when their turn has come (the
    /// last step's evaluation and checkpoint are left to [`Trainer::finish`]).
    fn after_step(&mut self) -> Result<()> {
        let step = self.state.step;
        let cadence = &self.plan.cadence;
        let last = step >= self.plan.total_steps;
        let log_now = step.is_multiple_of(cadence.log_every.max(1)) || last;
        let evaluate_now =
            cadence.eval_every > 0 && step.is_multiple_of(cadence.eval_every) && !last;
        let save_now = cadence.save_every > 0 && step.is_multiple_of(cadence.save_every) && !last;
        if log_now || evaluate_now || save_now {
            self.settle_deferred()?;
        }
        // A window whose every step was skipped has nothing to log (the host path does not
        // reach here after a skipped step).
        if log_now && !self.window.is_empty() {
            let mut row = self.window.row(
                step,
                self.plan.steps_per_epoch,
                self.state.last_lr,
                self.state.last_grad_norm,
            );
            if let (Some(cache), Value::Object(fields)) = (&self.plan.cache, &mut row) {
                for (name, count) in cache.snapshot().metrics() {
                    fields.insert(name.into(), json!(count));
                }
            }
            self.log(&row)?;
            self.window = LogWindow::default();
        }
        if evaluate_now && !self.plan.evaluators.is_empty() {
            self.evaluate()?;
        }
        if save_now {
            self.state.window = self.window.clone();
            let dir = self.save_checkpoint()?;
            self.progress.message(&format!("saved {}", dir.display()));
        }
        Ok(())
    }

    /// End the run: the final checkpoint, evaluation and agreement, then the final model (the
    /// best one when asked for) and its card.
    fn finish(mut self) -> Result<TrainReport> {
        // The producer goes on to the held-out pairs (if it has not yet) while the trainer
        // checkpoints and evaluates.
        self.producer.end_batches();
        self.settle_deferred()?;
        check_skipped(self.state.skipped_steps, self.state.step)?;

        // The final checkpoint, then the final evaluation and the final model. The checkpoint
        // comes first so that a run killed during what follows resumes from it and redoes all of
        // it (rewinding the logs to the checkpoint drops the rows already written).
        self.state.window = std::mem::take(&mut self.window);
        self.save_checkpoint()?;
        let final_results = if self.plan.evaluators.is_empty() {
            Vec::new()
        } else {
            self.evaluate()?
        };
        self.measure_agreement()?;
        self.producer.stop();
        if let (Some(before), Some(after)) =
            (self.state.agreement_before, self.state.agreement_after)
        {
            self.log(&json!({"step": self.state.step, "eval/agreement/spearman_before": before, "eval/agreement/spearman": after}))?;
        }
        let output_dir = &self.plan.output_dir;
        let final_dir = output_dir.join("final");
        let best_weights = output_dir.join("best").join("model.safetensors");
        let load_best = self.plan.best_model.as_ref().is_some_and(|b| b.load_at_end);
        if load_best && best_weights.is_file() {
            let best = candle_core::safetensors::load(&best_weights, &candle_core::Device::Cpu)?;
            self.plan.student.params().assign(&best)?;
            self.progress.message(&format!(
                "loaded the best model (step {})",
                self.state.best_step.unwrap_or(0)
            ));
        }
        let student = &self.plan.student;
        student.save(&final_dir, student.default_activation())?;
        write_card(&self.plan, &self.state, &final_results)?;
        Ok(TrainReport {
            steps: self.state.step,
            final_dir,
            agreement_before: self.state.agreement_before,
            agreement_after: self.state.agreement_after,
            eval_pairs: self.held_out.as_ref().map_or(0, |h| h.pairs.len()),
            cache: self.plan.cache.as_ref().map(|c| c.snapshot()),
            skipped_steps: self.state.skipped_steps,
        })
    }

    /// Evaluate, log `eval/...` metrics, and keep the best model when asked to.
    fn evaluate(&mut self) -> Result<Vec<EvalResult>> {
        let step = self.state.step;
        let (flat, results) =
            evaluation::evaluate(&self.plan, step, &self.plan.output_dir, self.progress)?;
        let mut row = serde_json::Map::new();
        row.insert("step".into(), json!(step));
        for (key, value) in &flat {
            row.insert(key.clone(), json!(value));
        }
        self.log(&Value::Object(row))?;
        if let Some(best_model) = &self.plan.best_model {
            let key = best_metric_key(&best_model.metric, &flat)?;
            let value = flat[&key];
            if is_better(&key, value, self.state.best_metric) {
                self.state.best_metric = Some(value);
                self.state.best_step = Some(step);
                if best_model.load_at_end {
                    let student = &self.plan.student;
                    student.save(
                        &self.plan.output_dir.join("best"),
                        student.default_activation(),
                    )?;
                }
                self.progress
                    .message(&format!("new best {key} = {value:.4} at step {step}"));
            }
        }
        Ok(results)
    }

    /// Student–teacher agreement on the held-out pairs: the teacher's scores (from the producer)
    /// against the student's before training and now.
    fn measure_agreement(&mut self) -> Result<()> {
        let Some(held_out) = &self.held_out else {
            return Ok(());
        };
        let teacher: Vec<f64> = self
            .producer
            .held_out_scores()?
            .into_iter()
            .map(f64::from)
            .collect();
        let state = &mut self.state;
        if let (None, Some(before)) = (state.agreement_before, &state.held_out_before) {
            state.agreement_before = Some(crate::eval::spearman(before, &teacher)?);
        }
        let after = held_out.student_scores(&self.plan.student)?;
        state.agreement_after = Some(crate::eval::spearman(&after, &teacher)?);
        Ok(())
    }

    /// Write `checkpoint-STEP/` of the current state.
    fn save_checkpoint(&self) -> Result<PathBuf> {
        checkpoint::save(
            &self.plan.output_dir,
            &self.plan.student,
            &*self.optimizer.host_state(self.plan.student.params())?,
            &self.state,
            &self.plan.resolved_recipe,
            self.plan.cadence.save_total_limit,
        )
    }

    /// Append a metrics row and tell the progress sink.
    fn log(&mut self, row: &Value) -> Result<()> {
        append_metrics(&self.metrics_path, row)?;
        self.progress.logged(row);
        Ok(())
    }
}
