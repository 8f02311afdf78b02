//! `--set KEY=VALUE`: change the parsed recipe tree before it is validated.
//!
//! KEY is a dotted path into the recipe: `student.model`, `train.max_steps`, `data.train.path`,
//! `loss.0.weight`. A table VALUE given for an existing table merges into it key by key
//! (`--set 'train={batch_size=2}'` keeps the rest of `[train]`). An index picks one entry of an array of tables (`teacher.0.model`); without
//! one, a key goes to the only entry (`teacher.model` with a single teacher). Index 0 of a single
//! table is that table. Missing tables are created, so `--set train.max_steps=10` works without a
//! `[train]` section. The new value is validated like the file's values, so an unknown key or a
//! wrong type from `--set` is reported like one in the file, naming the `--set` it came from.

use super::node::{parse_override_value, Entry, Node, Origin, Table, Value};

/// A `--set` that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OverrideError {
    /// The KEY part (or the whole text when there is no `=`).
    pub(super) key: String,
    /// What went wrong.
    pub(super) message: String,
    /// How to fix it.
    pub(super) hint: Option<String>,
}

/// Apply every assignment in order; later ones win. Returns the ones that could not be applied.
pub(super) fn apply_all(root: &mut Table, assignments: &[String]) -> Vec<OverrideError> {
    assignments
        .iter()
        .filter_map(|assignment| apply(root, assignment).err())
        .collect()
}

fn apply(root: &mut Table, assignment: &str) -> Result<(), OverrideError> {
    let Some((key, text)) = assignment.split_once('=') else {
        return Err(OverrideError {
            key: assignment.to_string(),
            message: format!("--set expects KEY=VALUE, found {assignment:?}"),
            hint: Some("write e.g. --set train.max_steps=100".to_string()),
        });
    };
    let key = key.trim();
    let segments: Vec<&str> = key.split('.').collect();
    if segments.iter().any(|segment| segment.is_empty()) {
        return Err(OverrideError {
            key: key.to_string(),
            message: format!("--set {assignment:?}: KEY must be a dotted path like train.max_steps, found {key:?}"),
            hint: None,
        });
    }
    let value = parse_override_value(text, assignment);
    let origin = value.origin.clone();
    set_in_table(root, &segments, value, &origin, key).map_err(|message| OverrideError {
        key: key.to_string(),
        message: format!("cannot apply --set {assignment}: {message}"),
        hint: None,
    })
}

/// Put `value` at `segments` below `table`. `key` is the whole KEY, for messages.
fn set_in_table(
    table: &mut Table,
    segments: &[&str],
    value: Node,
    origin: &Origin,
    key: &str,
) -> Result<(), String> {
    let (first, rest) = segments
        .split_first()
        .expect("callers pass at least one segment");
    if rest.is_empty() {
        match table.get_mut(first) {
            // A table given for a table merges into it (`--set 'train={batch_size=2}'` changes
            // batch_size and keeps the other keys of [train]), as TOML's dotted keys would.
            Some(Entry {
                value:
                    Node {
                        value: Value::Table(existing),
                        ..
                    },
                ..
            }) if matches!(value.value, Value::Table(_)) => {
                let Value::Table(new) = value.value else {
                    unreachable!("matched as a table above")
                };
                for entry in new.entries {
                    set_in_table(existing, &[entry.key.as_str()], entry.value, origin, key)?;
                }
            }
            Some(entry) => {
                entry.value = value;
                entry.origin = origin.clone();
            }
            None => table.entries.push(Entry {
                key: first.to_string(),
                origin: origin.clone(),
                value,
            }),
        }
        return Ok(());
    }
    if table.get(first).is_none() {
        table.entries.push(Entry {
            key: first.to_string(),
            origin: origin.clone(),
            value: Node {
                value: Value::Table(Table::default()),
                origin: origin.clone(),
            },
        });
    }
    let entry = table
        .get_mut(first)
        .expect("the entry exists or was just pushed");
    set_in_node(&mut entry.value, rest, value, origin, key)
}

/// Put `value` at `segments` below `node`, a table or an array of tables.
fn set_in_node(
    node: &mut Node,
    segments: &[&str],
    value: Node,
    origin: &Origin,
    key: &str,
) -> Result<(), String> {
    let index = segments[0].parse::<usize>().ok();
    match (&mut node.value, index) {
        (Value::Table(table), Some(0)) if segments.len() > 1 => {
            set_in_table(table, &segments[1..], value, origin, key)
        }
        (Value::Table(table), _) => set_in_table(table, segments, value, origin, key),
        (Value::Array(items), Some(index)) => {
            let count = items.len();
            let Some(item) = items.get_mut(index) else {
                return Err(format!(
                    "index {index} is out of range: the recipe has {count} entr{} there",
                    if count == 1 { "y" } else { "ies" }
                ));
            };
            if segments.len() == 1 {
                *item = value;
                Ok(())
            } else {
                set_in_node(item, &segments[1..], value, origin, key)
            }
        }
        (Value::Array(items), None) if items.len() == 1 => {
            set_in_node(&mut items[0], segments, value, origin, key)
        }
        (Value::Array(items), None) => {
            let parent = key
                .strip_suffix(&segments.join("."))
                .unwrap_or(key)
                .trim_end_matches('.');
            Err(format!(
                "{parent} has {} entries; say which one, e.g. {parent}.0.{}",
                items.len(),
                segments.join(".")
            ))
        }
        (scalar, _) => Err(format!(
            "the value above {:?} is {}, not a table",
            segments.join("."),
            scalar.describe()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::node::parse_document;
    use super::*;

    fn value_at<'t>(table: &'t Table, path: &[&str]) -> &'t Node {
        let entry = table.get(path[0]).expect("key present");
        if path.len() == 1 {
            return &entry.value;
        }
        match &entry.value.value {
            Value::Table(table) => value_at(table, &path[1..]),
            Value::Array(items) => {
                let index: usize = path[1].parse().expect("index");
                match &items[index].value {
                    Value::Table(table) => value_at(table, &path[2..]),
                    other => panic!("not a table: {other:?}"),
                }
            }
            other => panic!("not a table: {other:?}"),
        }
    }

    fn set(text: &str, assignments: &[&str]) -> (Table, Vec<OverrideError>) {
        let mut table = parse_document(text).expect("valid TOML");
        let assignments: Vec<String> = assignments.iter().map(|a| a.to_string()).collect();
        let errors = apply_all(&mut table, &assignments);
        (table, errors)
    }

    #[test]
    fn a_table_value_merges_into_the_table_it_replaces() {
        let (table, errors) = set(
            "[train]\nmax_steps = 5\nbatch_size = 16\n[train.inner]\na = 1\nb = 2\n",
            &["train={batch_size=2, inner={b=3}}"],
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            value_at(&table, &["train", "max_steps"]).value.describe(),
            "5"
        );
        assert_eq!(
            value_at(&table, &["train", "batch_size"]).value.describe(),
            "2"
        );
        assert_eq!(
            value_at(&table, &["train", "inner", "a"]).value.describe(),
            "1"
        );
        assert_eq!(
            value_at(&table, &["train", "inner", "b"]).value.describe(),
            "3"
        );
    }

    #[test]
    fn sets_replace_and_create_values() {
        let (table, errors) = set(
            "[train]\nmax_steps = 5\n",
            &[
                "train.max_steps=10",
                "student.model=../x",
                "train.shuffle=false",
            ],
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            value_at(&table, &["train", "max_steps"]).value.describe(),
            "10"
        );
        assert_eq!(
            value_at(&table, &["train", "shuffle"]).value.describe(),
            "false"
        );
        let model = value_at(&table, &["student", "model"]);
        assert_eq!(model.value.describe(), "string \"../x\"");
        assert_eq!(
            model.origin,
            Origin::Set {
                assignment: "student.model=../x".to_string()
            }
        );
    }

    #[test]
    fn indices_pick_array_entries_and_single_entries_need_none() {
        let text =
            "[[loss]]\nkind = \"mse\"\n[[loss]]\nkind = \"lambda\"\n[teacher]\nmodel = \"t\"\n";
        let (table, errors) = set(
            text,
            &[
                "loss.1.weight=0.5",
                "teacher.model=u",
                "teacher.0.batch_size=8",
            ],
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            value_at(&table, &["loss", "1", "weight"]).value.describe(),
            "0.5"
        );
        assert_eq!(
            value_at(&table, &["teacher", "model"]).value.describe(),
            "string \"u\""
        );
        assert_eq!(
            value_at(&table, &["teacher", "batch_size"])
                .value
                .describe(),
            "8"
        );
    }

    #[test]
    fn ambiguous_or_impossible_paths_are_errors() {
        let text = "[[loss]]\nkind = \"mse\"\n[[loss]]\nkind = \"lambda\"\n[train]\nepochs = 1\n";
        let (_, errors) = set(
            text,
            &[
                "loss.weight=2",
                "loss.5.weight=2",
                "train.epochs.x=1",
                "nonsense",
                "a..b=1",
            ],
        );
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(errors.len(), 5, "{messages:?}");
        assert!(
            messages[0].contains("loss has 2 entries; say which one, e.g. loss.0.weight"),
            "{}",
            messages[0]
        );
        assert!(
            messages[1].contains("index 5 is out of range: the recipe has 2 entries"),
            "{}",
            messages[1]
        );
        assert!(messages[2].contains("is 1, not a table"), "{}", messages[2]);
        assert!(
            messages[3].contains("expects KEY=VALUE, found \"nonsense\""),
            "{}",
            messages[3]
        );
        assert!(messages[4].contains("dotted path"), "{}", messages[4]);
    }
}
