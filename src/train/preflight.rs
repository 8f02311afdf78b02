//! What `recipe check` verifies beyond the recipe's own text, without loading a model: the
//! data files exist and have the columns the recipe names, local models exist (with their config, weights and tokenizer), the evaluators
//! can read their data, and `train.metric_for_best_model` names one of their metrics.

use std::path::Path;

use crate::error::{Error, Result};
use crate::model::{looks_like_hub_id, ModelFiles};
use crate::recipe::{ModelRef, Problem, Recipe};

use super::best_model::check_best_metric;
use super::evals::from_section;
use super::plan::training_sources;

/// Every problem of the files and models `recipe` names; `display_path` is the recipe as the
/// user named it (problems are reported against it).
pub fn check_inputs(recipe: &Recipe, display_path: &Path) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut report = |key: &str, line: Option<usize>, error: Error| {
        problems.push(Problem {
            path: display_path.to_path_buf(),
            line,
            key: key.to_string(),
            message: error.to_string(),
            hint: None,
        })
    };
    if let Err(error) = missing_model(&recipe.student.model) {
        report("student.model", None, error);
    }
    // Reduced precision on a CPU device (the run's, or a candle teacher's own) is refused by
    // `train`; say so before it runs.
    let cpu = |name: &str| name == "cpu";
    if cpu(&recipe.run.device) {
        if let Err(error) = recipe
            .train
            .precision
            .check_device(&candle_core::Device::Cpu, "train.precision")
        {
            report("train.precision", None, error);
        }
    }
    for (index, teacher) in recipe.teachers.iter().enumerate() {
        let device = teacher.device.as_deref().unwrap_or(&recipe.run.device);
        if teacher.kind == crate::recipe::TeacherKind::Candle && cpu(device) {
            if let Err(error) = teacher
                .dtype
                .check_device(&candle_core::Device::Cpu, "teacher.dtype")
            {
                report(&format!("teacher.{index}.dtype"), teacher.line, error);
            }
        }
    }
    for (index, teacher) in recipe.teachers.iter().enumerate() {
        if let Err(error) = missing_model(&teacher.model) {
            report(&format!("teacher.{index}.model"), teacher.line, error);
        }
    }
    match training_sources(recipe) {
        Err(error) => report("data", None, error),
        Ok((train, eval, _)) => {
            let remote = |section: &crate::recipe::DataSection| section.is_remote();
            if !remote(&recipe.data.train) {
                if let Err(error) = train.open() {
                    report("data.train", None, error);
                }
            }
            if let (Some(source), Some(section)) = (eval, &recipe.data.eval) {
                if !remote(section) {
                    if let Err(error) = source.open() {
                        report("data.eval", None, error);
                    }
                }
            }
        }
    }
    let mut evaluators = Vec::new();
    for (index, section) in recipe.evals.iter().enumerate() {
        match from_section(section, &recipe.source.path, recipe.student.num_labels) {
            Ok(evaluator) => evaluators.push(evaluator),
            Err(error) => report(&format!("eval.{index}"), section.line, error),
        }
    }
    if let (Some(wanted), true) = (
        &recipe.train.metric_for_best_model,
        evaluators.len() == recipe.evals.len(),
    ) {
        if let Err(error) = check_best_metric(wanted, &evaluators) {
            report("train.metric_for_best_model", None, error);
        }
    }
    problems
}

/// A model reference that is not a hub id must be a local model directory: located as loading
/// it would (same errors), without reading its weights. Hub ids are not looked up (no network).
fn missing_model(model: &ModelRef) -> Result<()> {
    if looks_like_hub_id(&model.spec) {
        return Ok(());
    }
    ModelFiles::locate(&model.spec, Some(&model.base_dir)).map(|_| ())
}
