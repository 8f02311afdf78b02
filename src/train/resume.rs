//! `--resume` continues the run its checkpoint belongs to, not another one: the resolved recipe
//! of the resumed run is compared with the one the checkpoint was taken under, and any change
//! that alters what the run computes (data, batches, losses, models, schedule, seed, ...) is
//! refused, naming each changed key. Keys that only change what is written along the way may
//! change: [`MAY_CHANGE_ON_RESUME`].

use std::path::Path;

use toml::{Table, Value};

use crate::error::{Error, Result};

/// Recipe keys a resumed run may change: they decide when metrics are logged, evaluations run and
/// checkpoints are written (and where the run directory is), never what the student learns.
pub const MAY_CHANGE_ON_RESUME: &[&str] = &[
    "run.output_dir",
    "train.log_every",
    "train.eval_every",
    "train.save_every",
    "train.save_total_limit",
];

/// One recipe key whose value differs between the checkpoint's run and the resumed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Dotted key (`train.batch_size`, `loss.0.kind`).
    pub key: String,
    /// The value in the checkpoint's recipe (`unset` when absent).
    pub old: String,
    /// The value now (`unset` when absent).
    pub new: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} → {}", self.key, self.old, self.new)
    }
}

/// The keys whose values differ between two resolved recipes (TOML texts), except those of
/// [`MAY_CHANGE_ON_RESUME`], in key order. Tables and arrays of tables are compared key by key;
/// other arrays as a whole.
pub fn run_changes(old: &str, new: &str) -> std::result::Result<Vec<Change>, toml::de::Error> {
    let old: Table = toml::from_str(old)?;
    let new: Table = toml::from_str(new)?;
    let mut old_flat = std::collections::BTreeMap::new();
    let mut new_flat = std::collections::BTreeMap::new();
    flatten("", &Value::Table(old), &mut old_flat);
    flatten("", &Value::Table(new), &mut new_flat);
    let keys: std::collections::BTreeSet<&String> =
        old_flat.keys().chain(new_flat.keys()).collect();
    let unset = "unset".to_string();
    Ok(keys
        .into_iter()
        .filter(|key| !MAY_CHANGE_ON_RESUME.contains(&key.as_str()))
        .filter_map(|key| {
            let (a, b) = (old_flat.get(key), new_flat.get(key));
            (a != b).then(|| Change {
                key: key.clone(),
                old: a.unwrap_or(&unset).clone(),
                new: b.unwrap_or(&unset).clone(),
            })
        })
        .collect())
}

fn flatten(prefix: &str, value: &Value, out: &mut std::collections::BTreeMap<String, String>) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match value {
        Value::Table(table) => {
            for (key, value) in table {
                flatten(&join(key), value, out);
            }
        }
        Value::Array(items) if items.iter().all(Value::is_table) && !items.is_empty() => {
            for (index, item) in items.iter().enumerate() {
                flatten(&join(&index.to_string()), item, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// Refuse to resume `checkpoint` under a recipe (`resolved`, the text of
/// `recipe.resolved.toml`) that changes the run. The checkpoint's recipe is its own copy
/// (`checkpoint-STEP/recipe.resolved.toml`), or for checkpoints written before it had one, the
/// run directory's; without either there is nothing to compare.
pub fn check_same_run(checkpoint: &Path, output_dir: &Path, resolved: &str) -> Result<()> {
    let Some(recorded) = [checkpoint.join(RECIPE_FILE), output_dir.join(RECIPE_FILE)]
        .into_iter()
        .find(|path| path.is_file())
    else {
        return Ok(());
    };
    let old =
        std::fs::read_to_string(&recorded).map_err(|e| Error::io("cannot read", &recorded, e))?;
    let changes = run_changes(&old, resolved).map_err(|e| {
        Error::input(&recorded, None, format!("not a valid resolved recipe: {e}"))
            .with_hint("the run directory is damaged; start a new run in another run.output_dir")
    })?;
    if changes.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = changes.iter().map(Change::to_string).collect();
    Err(Error::invalid(format!(
        "cannot resume {}: the recipe differs from the run's ({}) in {} that {} what the run computes: {}",
        checkpoint.display(),
        recorded.display(),
        match changes.len() {
            1 => "1 key".to_string(),
            n => format!("{n} keys"),
        },
        if changes.len() == 1 { "changes" } else { "change" },
        list.join("; ")
    ))
    .with_hint(format!(
        "resume with the recipe the run started with (only {} may change), or start a new run in another run.output_dir",
        MAY_CHANGE_ON_RESUME.join(", ")
    )))
}

/// The resolved recipe's file name, in the run directory and in each checkpoint.
pub const RECIPE_FILE: &str = "recipe.resolved.toml";

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPE: &str = r#"
[run]
output_dir = "/runs/a"
seed = 1
[[loss]]
kind = "mse"
weight = 1.0
[[loss]]
kind = "margin_mse"
weight = 1.0
[train]
batch_size = 4
log_every = 10
columns = ["a", "b"]
"#;

    #[test]
    fn cadence_and_output_dir_may_change() {
        let new = RECIPE
            .replace("log_every = 10", "log_every = 3")
            .replace("/runs/a", "/runs/moved");
        assert_eq!(run_changes(RECIPE, &new).unwrap(), vec![]);
    }

    #[test]
    fn every_other_change_is_named_with_both_values() {
        let new = RECIPE
            .replace("batch_size = 4", "batch_size = 8")
            .replace("kind = \"margin_mse\"", "kind = \"lambda\"")
            .replace("[\"a\", \"b\"]", "[\"a\"]")
            .replace("seed = 1\n", "");
        let changes: Vec<String> = run_changes(RECIPE, &new)
            .unwrap()
            .iter()
            .map(Change::to_string)
            .collect();
        assert_eq!(
            changes,
            vec![
                "loss.1.kind: \"margin_mse\" → \"lambda\"",
                "run.seed: 1 → unset",
                "train.batch_size: 4 → 8",
                "train.columns: [\"a\", \"b\"] → [\"a\"]",
            ]
        );
    }

    #[test]
    fn a_removed_table_entry_is_a_change() {
        let new = RECIPE.replace("[[loss]]\nkind = \"margin_mse\"\nweight = 1.0\n", "");
        let keys: Vec<String> = run_changes(RECIPE, &new)
            .unwrap()
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert_eq!(keys, vec!["loss.1.kind", "loss.1.weight"]);
    }
}
