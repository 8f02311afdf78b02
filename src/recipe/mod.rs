//! Recipes: the TOML file that describes a distillation run, parsed and validated once.
//!
//! [`load`] reads a recipe, applies `--set KEY=VALUE` overrides and returns a typed [`Recipe`] in
//! which every value is checked, every default filled in and every local path absolute. It never
//! stops at the first problem: [`check`] returns all of them (for `crossdistill recipe check`),
//! and [`load`] turns them into one error. Each [`Problem`] names the file, the line, the dotted
//! key, what was expected and what was found, e.g.
//! `recipes/x.toml:12: train.batch_size: expected a positive integer, found -3`.
//!
//! Rules:
//! - Unknown keys are errors that list the keys the section knows (loss and eval sections pass
//!   their extra keys on as `params`, for the loss and eval modules to check).
//! - `[teacher]` (one table) and `[[teacher]]` (several) are both accepted; so are `[loss]` and
//!   `[[loss]]`, `[eval]` and `[[eval]]`.
//! - Relative paths in the file resolve against the recipe's directory; relative paths given
//!   with `--set` resolve against the working directory (the user typed them in a shell).
//!   `hf://` data paths are kept as written. Model references stay as written in
//!   [`ModelRef`]; [`ModelRef::local_path`] decides between a local directory and a hub id.
//! - `--set` VALUEs are TOML when they parse as TOML (`3`, `2e-5`, `true`, `["a"]`, `"x"`) and
//!   plain strings otherwise (`../models/x`, `cuda:0`).
//!
//! ```no_run
//! let recipe = crossdistill::recipe::load(
//!     std::path::Path::new("recipes/quickstart.toml"),
//!     &["train.max_steps=10".to_string()],
//! )?;
//! assert_eq!(recipe.train.max_steps, 10);
//! std::fs::write("recipe.resolved.toml", recipe.to_resolved_toml()).expect("writable");
//! # Ok::<(), crossdistill::error::Error>(())
//! ```

mod load;
mod node;
mod overrides;
mod problem;
mod resolved;
mod schema;

use std::path::Path;

use crate::error::{Error, Result};

pub use problem::Problem;
pub use schema::{
    BatchSampler, CacheSection, DataSection, DataSections, EvalSection, LabelSource, LossSection,
    ModelRef, OnNan, ParallelColumns, Recipe, RecipeSource, RunSection, Scheduler, StudentSection,
    TeacherActivation, TeacherKind, TeacherSection, TrainSection, DATA_FORMATS,
    DEFAULT_SAVE_TOTAL_LIMIT, EVAL_KINDS, LOSS_KINDS, MAX_BATCH_SIZE, MAX_CHANNEL_CAPACITY,
};

/// Read and validate the recipe at `path` with `overrides` (`KEY=VALUE` strings from `--set`)
/// applied in order.
///
/// Errors: [`Error::Io`] when the file cannot be read; otherwise every problem found, as one
/// [`Error::Input`] when there is one and [`Error::Many`] when there are several.
pub fn load(path: &Path, overrides: &[String]) -> Result<Recipe> {
    let cwd = std::env::current_dir()
        .map_err(|source| Error::io("cannot read the working directory", ".", source))?;
    load_in(path, overrides, &cwd)
}

/// Every problem of the recipe at `path` with `overrides` applied; empty when it is valid.
/// An unreadable file is one problem without a line.
pub fn check(path: &Path, overrides: &[String]) -> Vec<Problem> {
    match std::env::current_dir() {
        Ok(cwd) => check_in(path, overrides, &cwd),
        Err(source) => vec![Problem {
            path: path.to_path_buf(),
            line: None,
            key: String::new(),
            message: format!("cannot read the working directory: {source}"),
            hint: None,
        }],
    }
}

/// [`load`] with an explicit working directory (for `--set` paths and a relative `path`).
fn load_in(path: &Path, overrides: &[String], cwd: &Path) -> Result<Recipe> {
    let file = cwd.join(path);
    let text =
        std::fs::read_to_string(&file).map_err(|source| Error::io("cannot read", path, source))?;
    let (recipe, problems) = load::read_recipe(path, &text, overrides, cwd);
    match Problem::into_error(problems) {
        Some(error) => Err(error),
        None => Ok(recipe.expect("the reader builds the recipe whenever it found no problem")),
    }
}

/// [`check`] with an explicit working directory.
fn check_in(path: &Path, overrides: &[String], cwd: &Path) -> Vec<Problem> {
    match std::fs::read_to_string(cwd.join(path)) {
        Ok(text) => load::read_recipe(path, &text, overrides, cwd).1,
        Err(source) => vec![Problem {
            path: path.to_path_buf(),
            line: None,
            key: String::new(),
            message: format!("cannot read the recipe: {source}"),
            hint: None,
        }],
    }
}

#[cfg(test)]
mod tests;
