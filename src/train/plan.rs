//! A recipe turned into the objects a run uses: built and validated once, before any training.

use std::path::PathBuf;

use candle_core::Device;

use crate::data::{count_rows, DataSource, Format};
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::loss::{Loss, LossRegistry};
use crate::model::{parse_device, CrossEncoder, LoadOptions, ScoreActivation};
use crate::pipeline::{teacher_call_pairs, ColumnRoles};
use crate::recipe::{
    BatchSampler, DataSection, LabelSource, OnNan, Recipe, Scheduler, TeacherActivation,
    TeacherKind,
};
use crate::teacher::{load_candle_teacher, Ensemble, OnnxDevice, OnnxTeacher, Teacher};

use super::schedule::{Schedule, ScheduleKind};

/// One weighted loss of the plan.
pub struct PlannedLoss {
    /// The loss.
    pub loss: Box<dyn Loss>,
    /// Where its labels come from.
    pub labels: LabelSource,
    /// Its weight in the total.
    pub weight: f64,
    /// Its key in metrics.jsonl: `loss/<kind>`, and for the second and later loss of the same
    /// kind `loss/<kind>_2`, `loss/<kind>_3`, ... (in recipe order), so each is logged apart.
    pub log_key: String,
}

/// The metrics keys of losses of these kinds, in order: `loss/<kind>` for the first of a kind,
/// `loss/<kind>_N` for the N-th.
pub fn loss_log_keys<'a>(kinds: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    kinds
        .into_iter()
        .map(|kind| {
            let count = seen.entry(kind).or_insert(0);
            *count += 1;
            match *count {
                1 => format!("loss/{kind}"),
                n => format!("loss/{kind}_{n}"),
            }
        })
        .collect()
}

/// How the producer reads and batches the training data.
#[derive(Debug, Clone)]
pub struct Batching {
    /// Rows per epoch at most (`data.train.max_rows`).
    pub max_rows: Option<usize>,
    /// Examples per batch (`train.batch_size`).
    pub batch_size: usize,
    /// Shuffle each epoch (`train.shuffle`).
    pub shuffle: bool,
    /// No batch holds the same text twice (`train.batch_sampler = "no_duplicates"`).
    pub no_duplicates: bool,
    /// Batches the channel holds (`train.channel_capacity`).
    pub channel_capacity: usize,
    /// Pairs the producer collects before calling the teacher (see `teacher_call_size`).
    pub teacher_call_pairs: usize,
    /// Whether some loss takes its labels from the teacher (else the teacher, if any, only
    /// scores the held-out pairs).
    pub teacher_labels: bool,
}

/// How one optimizer step is taken.
#[derive(Debug, Clone)]
pub struct StepSettings {
    /// Micro-batches per optimizer step (`train.gradient_accumulation`).
    pub gradient_accumulation: usize,
    /// AdamW weight decay (`train.weight_decay`).
    pub weight_decay: f64,
    /// The gradient norm is clipped to this (`train.max_grad_norm`).
    pub max_grad_norm: f64,
    /// What a non-finite teacher score, loss or gradient does (`train.on_nan`).
    pub on_nan: OnNan,
}

/// When the trainer writes what it writes along the way (every N steps; 0: never).
#[derive(Debug, Clone)]
pub struct Cadence {
    /// A metrics row (`train.log_every`).
    pub log_every: usize,
    /// An evaluation (`train.eval_every`).
    pub eval_every: usize,
    /// A checkpoint (`train.save_every`).
    pub save_every: usize,
    /// Checkpoints kept, the newest (`train.save_total_limit`; `None`: all).
    pub save_total_limit: Option<usize>,
}

/// The best-model policy (`train.metric_for_best_model`).
#[derive(Debug, Clone)]
pub struct BestModel {
    /// The metric, as the recipe names it (as `best_model::best_metric_key` reads it).
    pub metric: String,
    /// Save each new best to `best/` and make it the final model (`train.load_best_model_at_end`).
    pub load_at_end: bool,
}

/// Everything a training run needs, validated: the trainer reads this, never the recipe.
pub struct Plan {
    /// The recipe it came from, as the model card reports it.
    pub recipe: Recipe,
    /// The recipe as `recipe.resolved.toml` holds it (a resume is compared with it).
    pub resolved_recipe: String,
    /// The run seed (`run.seed`).
    pub seed: u64,
    /// The device.
    pub device: Device,
    /// The student.
    pub student: CrossEncoder,
    /// The teacher (an ensemble of every `[[teacher]]`), if any.
    pub teacher: Option<Box<dyn Teacher>>,
    /// Teacher fingerprint and description, kept for the model card after the teacher moves
    /// to the producer thread.
    pub teacher_info: Option<(String, String)>,
    /// Hit and miss counts of the teacher-score cache (recipe `[cache]` with a teacher).
    pub cache: Option<crate::cache::CacheCounters>,
    /// The losses.
    pub losses: Vec<PlannedLoss>,
    /// The training data.
    pub train_source: DataSource,
    /// The training data as messages name it (the resolved path or hub id).
    pub train_name: String,
    /// Held-out data, if any.
    pub eval_source: Option<DataSource>,
    /// Held-out rows used at most (`data.eval.max_rows`).
    pub eval_max_rows: Option<usize>,
    /// Parallel data: the student's column groups and the teacher's columns (`[student]
    /// columns`), as field indices of the train and held-out sources.
    pub columns: Option<ColumnRoles>,
    /// How the producer batches the training data.
    pub batching: Batching,
    /// How an optimizer step is taken.
    pub step: StepSettings,
    /// When metrics, evaluations and checkpoints are written.
    pub cadence: Cadence,
    /// The best-model policy, when the recipe sets `train.metric_for_best_model`.
    pub best_model: Option<BestModel>,
    /// Rows per epoch (after `max_rows`).
    pub rows_per_epoch: usize,
    /// Training examples per epoch: rows × student column groups.
    pub examples_per_epoch: usize,
    /// Optimizer steps per epoch.
    pub steps_per_epoch: usize,
    /// Optimizer steps of the run.
    pub total_steps: usize,
    /// Epochs the producer runs.
    pub epochs: usize,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// The `[[eval]]` evaluators.
    pub evaluators: Vec<Box<dyn Evaluator>>,
    /// The run directory.
    pub output_dir: PathBuf,
}

/// A recipe data section as a data source.
pub fn data_source(section: &DataSection) -> Result<DataSource> {
    let format = match section.format.as_deref() {
        None => None,
        Some(name) => Some(name.parse::<Format>()?),
    };
    Ok(DataSource {
        path: section.path.clone(),
        base_dir: section.base_dir.clone(),
        columns: section.columns.clone(),
        label: section.label.clone(),
        names: section.names.clone(),
        format,
    })
}

/// The training and held-out data sources of a recipe, with the parallel-data column roles when
/// `[student] columns` names them (then each source reads the columns those roles need).
pub fn training_sources(
    recipe: &Recipe,
) -> Result<(DataSource, Option<DataSource>, Option<ColumnRoles>)> {
    let mut train_source = data_source(&recipe.data.train)?;
    let mut eval_source = recipe.data.eval.as_ref().map(data_source).transpose()?;
    let columns = match recipe.parallel_columns() {
        Some(parallel) => {
            let read = parallel.read(&recipe.data.train);
            let roles = ColumnRoles::from_names(&parallel, &read)?;
            train_source.columns = Some(read);
            if let (Some(source), Some(section)) = (&mut eval_source, &recipe.data.eval) {
                let read = parallel.read(section);
                if ColumnRoles::from_names(&parallel, &read)? != roles {
                    return Err(Error::invalid(format!(
                        "data.eval reads its columns in another order than data.train ({:?} vs {:?})",
                        read,
                        train_source.columns
                    ))
                    .with_hint("give data.eval the same columns as data.train, or leave both unset"));
                }
                source.columns = Some(read);
            }
            Some(roles)
        }
        None => None,
    };
    Ok((train_source, eval_source, columns))
}

fn activation(activation: TeacherActivation) -> ScoreActivation {
    match activation {
        TeacherActivation::Identity => ScoreActivation::Identity,
        TeacherActivation::Sigmoid => ScoreActivation::Sigmoid,
    }
}

/// Load the teachers of a recipe (an ensemble when there are several), each on its own
/// `device` when it names one, else on `device` (the run's).
pub fn build_teacher(recipe: &Recipe, device: &Device) -> Result<Option<Box<dyn Teacher>>> {
    let mut members: Vec<Box<dyn Teacher>> = Vec::new();
    for section in &recipe.teachers {
        match section.kind {
            TeacherKind::Candle => {
                let device = match &section.device {
                    Some(name) => parse_device(name)?,
                    None => device.clone(),
                };
                section.dtype.check_device(&device, "teacher.dtype")?;
                let options = LoadOptions {
                    device,
                    max_length: section.max_length,
                    dtype: section.dtype,
                    ..LoadOptions::default()
                };
                members.push(Box::new(load_candle_teacher(
                    &section.model.spec,
                    Some(&section.model.base_dir),
                    &options,
                    section.batch_size,
                    Some(activation(section.activation)),
                )?));
            }
            TeacherKind::Onnx => {
                let model = section
                    .model
                    .local_path()
                    .map_or_else(|| section.model.spec.clone(), |p| p.display().to_string());
                let onnx_file = section.onnx_file.as_deref().unwrap_or("model.onnx");
                // ONNX Runtime runs on the CPU unless this teacher names a GPU itself: the
                // run's CUDA device is for candle, and onnxruntime-gpu is a separate install.
                let device = match &section.device {
                    Some(name) => OnnxDevice::parse(name)?,
                    None => OnnxDevice::Cpu,
                };
                members.push(Box::new(OnnxTeacher::new_on(
                    &model,
                    onnx_file,
                    section.max_length,
                    section.batch_size,
                    Some(activation(section.activation)),
                    None,
                    device,
                )?));
            }
        }
    }
    Ok(match members.len() {
        0 => None,
        1 => members.pop(),
        _ => Some(Box::new(Ensemble::new(members)?)),
    })
}

impl Plan {
    /// Build the plan: load models, build losses, count the data.
    pub fn build(recipe: Recipe, registry: &LossRegistry) -> Result<Self> {
        let device = parse_device(&recipe.run.device)?;
        recipe
            .train
            .precision
            .check_device(&device, "train.precision")?;
        let student_options = LoadOptions {
            device: device.clone(),
            max_length: recipe.student.max_length,
            num_labels: Some(recipe.student.num_labels),
            layers: recipe.student.layers.clone(),
            seed: recipe.run.seed,
            train_precision: recipe.train.precision,
            ..LoadOptions::default()
        };
        let load_student = || {
            CrossEncoder::load(
                &recipe.student.model.spec,
                Some(&recipe.student.model.base_dir),
                &student_options,
            )
        };
        // Local teachers (the slower load: larger weights, hashed for their fingerprint) load on
        // a second thread while the student loads on this one. A hub teacher loads after the
        // student, so that a bad student is reported before anything is downloaded.
        let local_teachers = recipe
            .teachers
            .iter()
            .all(|t| t.model.local_path().is_some());
        let (student, teacher) = if local_teachers {
            std::thread::scope(|scope| {
                let teacher = scope.spawn(|| build_teacher(&recipe, &device));
                let student = load_student();
                let teacher = teacher.join().unwrap_or_else(|panic| {
                    Err(Error::Thread {
                        thread: "teacher loader",
                        message: crate::pipeline::panic_message(&panic),
                    })
                });
                Ok::<_, Error>((student?, teacher?))
            })?
        } else {
            (load_student()?, build_teacher(&recipe, &device)?)
        };
        let cache_dir = recipe.cache.as_ref().map(|c| c.dir.as_path());
        let (teacher, cache) = crate::cache::attach(teacher, cache_dir)?;
        let teacher_info = teacher.as_ref().map(|t| (t.describe(), t.fingerprint()));
        let mut losses = Vec::new();
        for section in &recipe.losses {
            let loss = registry
                .build(&section.kind, &section.params, recipe.student.num_labels)
                .map_err(|e| {
                    locate(
                        e,
                        &recipe,
                        section.line,
                        &format!("loss `{}`", section.kind),
                    )
                })?;
            if section.labels == LabelSource::Teacher && teacher.is_none() {
                return Err(locate(
                    Error::invalid(format!(
                        "loss `{}` takes labels from the teacher, but the recipe has no [teacher]",
                        section.kind
                    )),
                    &recipe,
                    section.line,
                    "loss",
                ));
            }
            losses.push(PlannedLoss {
                loss,
                labels: section.labels,
                weight: section.weight,
                log_key: String::new(),
            });
        }
        let kinds: Vec<String> = losses.iter().map(|l| l.loss.kind().to_string()).collect();
        let keys = loss_log_keys(kinds.iter().map(String::as_str));
        for (planned, key) in losses.iter_mut().zip(keys) {
            planned.log_key = key;
        }
        let (train_source, eval_source, columns) = training_sources(&recipe)?;
        let mut rows_per_epoch = count_rows(&train_source)?;
        if let Some(max) = recipe.data.train.max_rows {
            rows_per_epoch = rows_per_epoch.min(max);
        }
        if rows_per_epoch == 0 {
            return Err(Error::invalid(format!(
                "the training data {} has no rows",
                recipe.data.train.resolved()
            )));
        }
        let train = &recipe.train;
        let examples_per_epoch = rows_per_epoch * columns.as_ref().map_or(1, ColumnRoles::groups);
        let batches_per_epoch = examples_per_epoch.div_ceil(train.batch_size);
        let steps_per_epoch = batches_per_epoch
            .div_ceil(train.gradient_accumulation)
            .max(1);
        let (total_steps, epochs) = if train.max_steps > 0 {
            (
                train.max_steps,
                train.max_steps.div_ceil(steps_per_epoch).max(1),
            )
        } else {
            (train.epochs * steps_per_epoch, train.epochs)
        };
        let kind = match train.scheduler {
            Scheduler::Linear => ScheduleKind::Linear,
            Scheduler::Cosine => ScheduleKind::Cosine,
            Scheduler::Constant => ScheduleKind::Constant,
        };
        let schedule = Schedule::new(
            kind,
            train.learning_rate,
            total_steps,
            train.warmup_ratio,
            train.warmup_steps,
        );
        let output_dir = recipe.run.output_dir.clone();
        let mut evaluators = Vec::new();
        for section in &recipe.evals {
            evaluators.push(super::evals::from_section(
                section,
                &recipe.source.path,
                recipe.student.num_labels,
            )?);
        }
        if let Some(wanted) = &recipe.train.metric_for_best_model {
            super::best_model::check_best_metric(wanted, &evaluators)?;
        }
        let batching = Batching {
            max_rows: recipe.data.train.max_rows,
            batch_size: train.batch_size,
            shuffle: train.shuffle,
            no_duplicates: train.batch_sampler == BatchSampler::NoDuplicates,
            channel_capacity: train.channel_capacity,
            teacher_call_pairs: teacher_call_size(recipe.teachers.iter().map(|t| t.batch_size)),
            teacher_labels: losses.iter().any(|l| l.labels == LabelSource::Teacher),
        };
        let step = StepSettings {
            gradient_accumulation: train.gradient_accumulation,
            weight_decay: train.weight_decay,
            max_grad_norm: train.max_grad_norm,
            on_nan: train.on_nan,
        };
        let cadence = Cadence {
            log_every: train.log_every,
            eval_every: train.eval_every,
            save_every: train.save_every,
            save_total_limit: train.save_total_limit,
        };
        let best_model = train.metric_for_best_model.clone().map(|metric| BestModel {
            metric,
            load_at_end: train.load_best_model_at_end,
        });
        Ok(Self {
            resolved_recipe: recipe.to_resolved_toml(),
            seed: recipe.run.seed,
            train_name: recipe.data.train.resolved(),
            eval_max_rows: recipe.data.eval.as_ref().and_then(|e| e.max_rows),
            batching,
            step,
            cadence,
            best_model,
            device,
            student,
            teacher,
            teacher_info,
            cache,
            losses,
            train_source,
            eval_source,
            columns,
            rows_per_epoch,
            examples_per_epoch,
            steps_per_epoch,
            total_steps,
            epochs,
            schedule,
            evaluators,
            output_dir,
            recipe,
        })
    }
}

/// Pairs the producer collects per teacher call, from the `[[teacher]]` batch sizes: eight
/// batches of the largest (each member of an ensemble scores the call in batches of its own
/// size, so each sorts at least eight of them by length); 0 without a teacher.
fn teacher_call_size(batch_sizes: impl IntoIterator<Item = usize>) -> usize {
    batch_sizes.into_iter().max().map_or(0, teacher_call_pairs)
}

/// Put a recipe location in front of an error raised while building a section.
fn locate(error: Error, recipe: &Recipe, line: Option<usize>, what: &str) -> Error {
    Error::input(&recipe.source.path, line, format!("{what}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_teacher_call_holds_eight_batches_of_the_largest_teacher() {
        assert_eq!(teacher_call_size([32]), 256);
        assert_eq!(teacher_call_size([16, 64, 8]), 512);
        assert_eq!(teacher_call_size([]), 0);
    }
}
