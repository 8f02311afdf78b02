//! `crossdistill train RECIPE [--resume] [--set KEY=VALUE ...]` and `crossdistill recipe check`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use serde_json::Value;

use super::progress;
use super::Outcome;
use crate::error::Result;
use crate::loss::LossRegistry;
use crate::train::{train, Plan, TrainProgress};

/// Arguments of `train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The recipe (TOML).
    pub recipe: PathBuf,
    /// Continue from the newest checkpoint in run.output_dir.
    #[arg(long)]
    pub resume: bool,
    /// Override a recipe key, e.g. --set student.model=DIR --set train.max_steps=10.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// `recipe` subcommands.
#[derive(Debug, Subcommand)]
pub enum RecipeCommand {
    /// Validate a recipe and print every problem (exit 1 when there are any).
    Check {
        /// The recipe (TOML).
        recipe: PathBuf,
        /// Override a recipe key.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
}

struct CliProgress {
    bar: Option<ProgressBar>,
}

impl TrainProgress for CliProgress {
    fn start(&mut self, step: usize, total_steps: usize) {
        let bar = progress::bar(total_steps as u64, "steps");
        bar.set_position(step as u64);
        self.bar = Some(bar);
    }

    fn step(&mut self, _step: usize, loss: f32) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("loss {loss:.4}"));
        }
    }

    fn logged(&mut self, row: &Value) {
        let text = row.to_string();
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(text),
            _ => tracing::info!("{text}"),
        }
    }

    fn message(&mut self, text: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(text),
            _ => tracing::info!("{text}"),
        }
    }

    fn evaluating(&mut self, name: &str, done: usize, total: usize) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("eval {name}: {done}/{total} pairs"));
        }
    }
}

pub(super) fn run(args: TrainArgs) -> Result<Outcome> {
    let recipe = crate::recipe::load(&args.recipe, &args.overrides)?;
    let plan = Plan::build(recipe, &LossRegistry::default())?;
    tracing::info!(
        "student {} ({} parameters), {} rows/epoch ({} examples), {} steps",
        plan.student.files().name,
        plan.student.params().num_elements(),
        plan.rows_per_epoch,
        plan.examples_per_epoch,
        plan.total_steps
    );
    let mut progress = CliProgress { bar: None };
    let report = train(plan, args.resume, &mut progress)?;
    if let Some(bar) = &progress.bar {
        bar.finish_and_clear();
    }
    let skipped = match report.skipped_steps {
        0 => String::new(),
        n => format!(" ({n} skipped for non-finite values)"),
    };
    println!(
        "trained {} steps{skipped}; final model: {}",
        report.steps,
        report.final_dir.display()
    );
    if let Some(cache) = report.cache {
        println!(
            "teacher-score cache: {} hits, {} pairs scored by the teacher",
            cache.hits, cache.misses
        );
    }
    if let (Some(before), Some(after)) = (report.agreement_before, report.agreement_after) {
        println!(
            "student-teacher Spearman on {} held-out pairs: {before:.4} before -> {after:.4} after",
            report.eval_pairs
        );
    }
    Ok(Outcome::Success)
}

pub(super) fn run_recipe(command: RecipeCommand) -> Result<Outcome> {
    match command {
        RecipeCommand::Check { recipe, overrides } => {
            let mut problems = crate::recipe::check(&recipe, &overrides);
            if problems.is_empty() {
                // The recipe reads well: now the files and models it names.
                let loaded = crate::recipe::load(&recipe, &overrides)?;
                problems = crate::train::preflight::check_inputs(&loaded, &recipe);
            }
            if problems.is_empty() {
                println!("{}: ok", recipe.display());
                Ok(Outcome::Success)
            } else {
                for problem in &problems {
                    println!("{problem}");
                }
                println!("{} problem(s)", problems.len());
                Ok(Outcome::CheckFailed)
            }
        }
    }
}
