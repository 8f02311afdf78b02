//! Read a recipe file into a [`Recipe`], collecting every problem on the way.
//!
//! The file is parsed into a tree with lines ([`super::node`]), `--set` overrides are applied to
//! that tree ([`super::overrides`]), and then each section is walked by hand: every key is asked
//! for by name, checked, and converted. Keys nobody asked for are unknown. Nothing stops at the
//! first problem; the recipe is built only when there were none.

use std::path::{Path, PathBuf};

use super::node::{parse_document, Entry, Node, Origin, Table, Value};
use super::overrides::apply_all;
use super::problem::Problem;
use super::schema::{
    normalize, BatchSampler, CacheSection, DataSection, DataSections, EvalSection, LabelSource,
    LossSection, ModelRef, OnNan, Recipe, RecipeSource, RunSection, Scheduler, StudentSection,
    TeacherActivation, TeacherKind, TeacherSection, TrainSection, DATA_FORMATS, EVAL_KINDS,
    LOSS_KINDS, MAX_BATCH_SIZE, MAX_CHANNEL_CAPACITY,
};
use crate::model::Precision;
use crate::params::{
    Kind, BOOLEAN, NON_EMPTY_STRING, NON_NEGATIVE_INTEGER, NUMBER, POSITIVE_INTEGER,
};

/// Read `text` (the content of the recipe at `path`) with `overrides` applied. `cwd` resolves a
/// relative `path` and paths given with `--set`. Returns the recipe when there were no problems,
/// and every problem found (sorted by line; problems without a line last).
pub(super) fn read_recipe(
    path: &Path,
    text: &str,
    overrides: &[String],
    cwd: &Path,
) -> (Option<Recipe>, Vec<Problem>) {
    let absolute_path = normalize(&cwd.join(path));
    let recipe_dir = absolute_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cwd.to_path_buf());
    let mut reader = Reader {
        display_path: path.to_path_buf(),
        recipe_dir,
        cwd: cwd.to_path_buf(),
        problems: Vec::new(),
    };
    let mut root = match parse_document(text) {
        Ok(root) => root,
        Err(syntax_errors) => {
            for error in syntax_errors {
                reader.problems.push(Problem {
                    path: path.to_path_buf(),
                    line: error.line,
                    key: String::new(),
                    message: format!("invalid TOML: {}", error.message),
                    hint: None,
                });
            }
            return (None, reader.problems);
        }
    };
    for error in apply_all(&mut root, overrides) {
        reader.problems.push(Problem {
            path: path.to_path_buf(),
            line: None,
            key: error.key,
            message: error.message,
            hint: error.hint,
        });
    }
    let source = RecipeSource {
        path: absolute_path,
        text: text.to_string(),
    };
    let recipe = reader.recipe(&root, source);
    let mut problems = reader.problems;
    problems.sort_by_key(|problem| problem.line.unwrap_or(usize::MAX));
    if problems.is_empty() {
        (recipe, problems)
    } else {
        (None, problems)
    }
}

/// The table of a section the recipe does not have: reading it reports its required keys.
static EMPTY_TABLE: Table = Table {
    entries: Vec::new(),
};

/// A table being read. It records which keys were asked for; the others are unknown.
struct Section<'t> {
    table: &'t Table,
    /// Dotted key of the table (`train`, `data.train`, `teacher.0`); empty for the top level.
    key: String,
    /// How messages name the table: `[train]`, `[[teacher]] entry 0`, `the top level`.
    header: String,
    /// Where the table is written; `None` for the top level and absent sections.
    origin: Option<Origin>,
    /// The keys asked for so far, in order.
    expected: Vec<&'static str>,
}

impl<'t> Section<'t> {
    fn new(table: &'t Table, key: String, header: String, origin: Option<Origin>) -> Self {
        Self {
            table,
            key,
            header,
            origin,
            expected: Vec::new(),
        }
    }

    /// The value of `name`, recording `name` as a key this section knows.
    fn field(&mut self, name: &'static str) -> Option<&'t Node> {
        self.expected.push(name);
        self.table.get(name).map(|entry| &entry.value)
    }

    /// True when the table has `name` (whether or not it was asked for).
    fn has(&self, name: &str) -> bool {
        self.table.get(name).is_some()
    }

    /// The dotted key of `name` in this section.
    fn key_of(&self, name: &str) -> String {
        if self.key.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.key)
        }
    }

    /// The entries no one asked for, in file order.
    fn rest(&self) -> impl Iterator<Item = &'t Entry> + '_ {
        self.table
            .entries
            .iter()
            .filter(|entry| !self.expected.contains(&entry.key.as_str()))
    }
}

/// Walks the tree into typed sections and collects problems.
struct Reader {
    /// The recipe path as the caller named it (problems show it this way).
    display_path: PathBuf,
    /// Absolute directory of the recipe: file paths resolve against it.
    recipe_dir: PathBuf,
    /// Working directory: `--set` paths resolve against it.
    cwd: PathBuf,
    problems: Vec<Problem>,
}

impl Reader {
    fn report(
        &mut self,
        origin: Option<&Origin>,
        key: String,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let mut message = message.into();
        if let Some(Origin::Set { assignment }) = origin {
            message.push_str(&format!(" (from --set {assignment})"));
        }
        self.problems.push(Problem {
            path: self.display_path.clone(),
            line: origin.and_then(Origin::line),
            key,
            message,
            hint,
        });
    }

    /// The directory a relative path written at `origin` resolves against.
    fn base_dir(&self, origin: &Origin) -> &Path {
        match origin {
            Origin::File { .. } => &self.recipe_dir,
            Origin::Set { .. } => &self.cwd,
        }
    }

    /// Report keys of `section` that were not asked for.
    fn finish(&mut self, section: Section<'_>) {
        let unknown: Vec<&Entry> = section.rest().collect();
        for entry in unknown {
            let hint = closest(&entry.key, &section.expected)
                .map(|known| format!("did you mean `{known}`?"));
            self.report(
                Some(&entry.origin),
                section.key_of(&entry.key),
                format!(
                    "unknown key `{}` in {}; expected one of: {}",
                    entry.key,
                    section.header,
                    section.expected.join(", ")
                ),
                hint,
            );
        }
    }

    /// Report a missing required key of `section`.
    fn missing(&mut self, section: &Section<'_>, name: &str, expected: &str, example: &str) {
        let header = section.header.clone();
        let hint = if section.key.is_empty() {
            format!("add `{example}` at the top of the recipe")
        } else {
            format!("add `{example}` to {header}")
        };
        self.report(
            section.origin.as_ref(),
            section.key_of(name),
            format!("missing required key `{name}` in {header}; expected {expected}"),
            Some(hint),
        );
    }

    /// Read `name` with `convert`; report `expected` vs the value found when it returns `None`.
    fn read<'t, T>(
        &mut self,
        section: &mut Section<'t>,
        name: &'static str,
        expected: &str,
        convert: impl FnOnce(&'t Node) -> Option<T>,
    ) -> Option<T> {
        let node = section.field(name)?;
        let converted = convert(node);
        if converted.is_none() {
            let hint = match (&node.origin, &node.value) {
                (Origin::Set { .. }, Value::Integer(_) | Value::Float(_) | Value::Boolean(_))
                    if expected.contains("string") =>
                {
                    Some(format!(
                        "quote it: --set '{}=\"...\"'",
                        section.key_of(name)
                    ))
                }
                _ => None,
            };
            self.report(
                Some(&node.origin),
                section.key_of(name),
                format!("expected {expected}, found {}", node.value.describe()),
                hint,
            );
        }
        converted
    }

    /// Read `name` as `kind`, one of the parameter kinds every reader shares.
    fn read_kind<T>(
        &mut self,
        section: &mut Section<'_>,
        name: &'static str,
        kind: &Kind<T>,
    ) -> Option<T> {
        self.read(section, name, kind.expected, |node| {
            (kind.read)(&node.value.to_toml())
        })
    }

    fn positive_integer(&mut self, section: &mut Section<'_>, name: &'static str) -> Option<usize> {
        self.read_kind(section, name, &POSITIVE_INTEGER)
    }

    /// A positive integer no larger than `max`: sizes that set how much memory is taken up
    /// front (a batch, the producer's queue), so a typo cannot ask for terabytes.
    fn positive_integer_at_most(
        &mut self,
        section: &mut Section<'_>,
        name: &'static str,
        max: usize,
    ) -> Option<usize> {
        let value = self.positive_integer(section, name)?;
        if value <= max {
            return Some(value);
        }
        let origin = section.table.get(name).map(|entry| entry.origin.clone());
        self.report(
            origin.as_ref(),
            section.key_of(name),
            format!("expected a positive integer at most {max}, found {value}"),
            Some(format!(
                "{name} sets what is allocated up front; use at most {max}"
            )),
        );
        None
    }

    fn non_negative_integer(
        &mut self,
        section: &mut Section<'_>,
        name: &'static str,
    ) -> Option<usize> {
        self.read_kind(section, name, &NON_NEGATIVE_INTEGER)
    }

    /// A float (integers are accepted) that `valid` accepts; `expected` describes the range.
    fn number(
        &mut self,
        section: &mut Section<'_>,
        name: &'static str,
        expected: &str,
        valid: fn(f64) -> bool,
    ) -> Option<f64> {
        self.read(section, name, expected, |node| {
            (NUMBER.read)(&node.value.to_toml())
                .filter(|&number| number.is_finite() && valid(number))
        })
    }

    fn boolean(&mut self, section: &mut Section<'_>, name: &'static str) -> Option<bool> {
        self.read_kind(section, name, &BOOLEAN)
    }

    fn string(&mut self, section: &mut Section<'_>, name: &'static str) -> Option<String> {
        self.read_kind(section, name, &NON_EMPTY_STRING)
    }

    /// A string and where it was written (for paths, which resolve against their origin).
    fn string_at<'t>(
        &mut self,
        section: &mut Section<'t>,
        name: &'static str,
        expected: &str,
    ) -> Option<(String, &'t Origin)> {
        self.read(section, name, expected, |node| match &node.value {
            Value::String(text) if !text.is_empty() => Some((text.clone(), &node.origin)),
            _ => None,
        })
    }

    /// A path, made absolute against the directory of where it was written.
    fn path(&mut self, section: &mut Section<'_>, name: &'static str) -> Option<PathBuf> {
        let (text, origin) = self.string_at(section, name, "a path (a non-empty string)")?;
        Some(normalize(&self.base_dir(origin).join(text)))
    }

    fn model(&mut self, section: &mut Section<'_>, name: &'static str) -> Option<ModelRef> {
        let expected = "a model directory or hub id (a non-empty string)";
        let (spec, origin) = self.string_at(section, name, expected)?;
        Some(ModelRef {
            spec,
            base_dir: self.base_dir(origin).to_path_buf(),
        })
    }

    fn strings(&mut self, section: &mut Section<'_>, name: &'static str) -> Option<Vec<String>> {
        self.read(section, name, "a non-empty array of strings", |node| {
            let Value::Array(items) = &node.value else {
                return None;
            };
            let strings: Option<Vec<String>> = items
                .iter()
                .map(|item| match &item.value {
                    Value::String(text) => Some(text.clone()),
                    _ => None,
                })
                .collect();
            strings.filter(|strings| !strings.is_empty())
        })
    }

    /// A list of column names, or a list of such lists (one group each) of equal length.
    fn column_groups(
        &mut self,
        section: &mut Section<'_>,
        name: &'static str,
    ) -> Option<Vec<Vec<String>>> {
        fn names(node: &Node) -> Option<Vec<String>> {
            let Value::Array(items) = &node.value else {
                return None;
            };
            let names: Option<Vec<String>> = items
                .iter()
                .map(|item| match &item.value {
                    Value::String(text) => Some(text.clone()),
                    _ => None,
                })
                .collect();
            names.filter(|names| !names.is_empty())
        }
        let groups = self.read(
            section,
            name,
            "a non-empty array of column names, or an array of such arrays (one per language)",
            |node| {
                let Value::Array(items) = &node.value else {
                    return None;
                };
                if items
                    .iter()
                    .all(|item| matches!(item.value, Value::String(_)))
                {
                    return names(node).map(|group| vec![group]);
                }
                let groups: Option<Vec<Vec<String>>> = items.iter().map(names).collect();
                groups.filter(|groups| !groups.is_empty())
            },
        )?;
        let width = groups[0].len();
        if let Some(other) = groups.iter().find(|group| group.len() != width) {
            let origin = section.table.get(name).map(|entry| entry.origin.clone());
            self.report(
                origin.as_ref(),
                section.key_of(name),
                format!(
                    "every column group must have the same length: {:?} has {width} columns, {:?} has {}",
                    groups[0],
                    other,
                    other.len()
                ),
                Some("give every language the same columns, e.g. [[\"de_1\", \"de_2\"], [\"es_1\", \"es_2\"]]".to_string()),
            );
            return None;
        }
        Some(groups)
    }

    fn integers(&mut self, section: &mut Section<'_>, name: &'static str) -> Option<Vec<usize>> {
        self.read(
            section,
            name,
            "a non-empty array of non-negative integers",
            |node| {
                let Value::Array(items) = &node.value else {
                    return None;
                };
                let numbers: Option<Vec<usize>> = items
                    .iter()
                    .map(|item| match item.value {
                        Value::Integer(number) => usize::try_from(number).ok(),
                        _ => None,
                    })
                    .collect();
                numbers.filter(|numbers| !numbers.is_empty())
            },
        )
    }

    /// One of `names`, converted by `from_name`. Reports the allowed words and the closest one.
    fn word<T>(
        &mut self,
        section: &mut Section<'_>,
        name: &'static str,
        names: &[&str],
        from_name: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let node = section.field(name)?;
        let allowed = names
            .iter()
            .map(|word| format!("{word:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let (found, hint) = match &node.value {
            Value::String(text) => match from_name(text) {
                Some(value) => return Some(value),
                None => (
                    node.value.describe(),
                    closest(text, names).map(|word| format!("did you mean {word:?}?")),
                ),
            },
            other => (other.describe(), None),
        };
        self.report(
            Some(&node.origin),
            section.key_of(name),
            format!("expected one of {allowed}, found {found}"),
            hint,
        );
        None
    }

    /// The table at `name`, or `None` (reported) when it is something else.
    fn table<'t>(&mut self, parent: &mut Section<'t>, name: &'static str) -> Option<Section<'t>> {
        let key = parent.key_of(name);
        let node = parent.field(name)?;
        match &node.value {
            Value::Table(table) => Some(Section::new(
                table,
                key.clone(),
                format!("[{key}]"),
                Some(node.origin.clone()),
            )),
            other => {
                self.report(
                    Some(&node.origin),
                    key.clone(),
                    format!("expected a table [{key}], found {}", other.describe()),
                    None,
                );
                None
            }
        }
    }

    /// The table at `name`; an empty one (so its required keys are reported) when absent;
    /// `None` when it is not a table (reported).
    fn required_table<'t>(
        &mut self,
        parent: &mut Section<'t>,
        name: &'static str,
    ) -> Option<Section<'t>> {
        if parent.has(name) {
            return self.table(parent, name);
        }
        parent.field(name);
        let key = parent.key_of(name);
        let header = format!("[{key}]");
        Some(Section::new(
            &EMPTY_TABLE,
            key,
            header,
            parent.origin.clone(),
        ))
    }

    /// `[name]` (one table) or `[[name]]` (an array of tables), as a list of sections.
    fn table_list<'t>(&mut self, parent: &mut Section<'t>, name: &'static str) -> Vec<Section<'t>> {
        let Some(node) = parent.field(name) else {
            return Vec::new();
        };
        match &node.value {
            Value::Table(table) => vec![Section::new(
                table,
                name.to_string(),
                format!("[{name}]"),
                Some(node.origin.clone()),
            )],
            Value::Array(items) => {
                let mut sections = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    match &item.value {
                        Value::Table(table) => sections.push(Section::new(
                            table,
                            format!("{name}.{index}"),
                            format!("[[{name}]] entry {index}"),
                            Some(item.origin.clone()),
                        )),
                        other => self.report(
                            Some(&item.origin),
                            format!("{name}.{index}"),
                            format!("expected a table, found {}", other.describe()),
                            Some(format!("write each entry as a [[{name}]] section")),
                        ),
                    }
                }
                sections
            }
            other => {
                self.report(
                    Some(&node.origin),
                    name.to_string(),
                    format!(
                        "expected a table [{name}] or an array of tables [[{name}]], found {}",
                        other.describe()
                    ),
                    None,
                );
                Vec::new()
            }
        }
    }

    fn recipe(&mut self, root: &Table, source: RecipeSource) -> Option<Recipe> {
        let mut top = Section::new(root, String::new(), "the top level".to_string(), None);
        let version = self.version(&mut top);
        let run = self.run(&mut top);
        let teachers: Vec<Option<TeacherSection>> = self
            .table_list(&mut top, "teacher")
            .into_iter()
            .map(|section| self.teacher(section))
            .collect();
        let cache = self.cache(&mut top);
        let student = self.student(&mut top);
        let data = self.data(&mut top);
        let has_teacher = !teachers.is_empty();
        let losses = self.losses(&mut top, has_teacher);
        let train = self.train(&mut top);
        let evals = self.evals(&mut top);
        self.finish(top);

        let recipe = Recipe {
            version: version?,
            run: run?,
            teachers: teachers.into_iter().collect::<Option<Vec<_>>>()?,
            cache: cache?,
            student: student?,
            data: data?,
            losses: losses?,
            train: train?,
            evals: evals?,
            source,
        };
        self.check_columns(root, &recipe);
        self.check_held_out(root, &recipe);
        Some(recipe)
    }

    /// `[data.eval]` holds the held-out rows of the student–teacher agreement: without a teacher
    /// nothing would read them, which is refused rather than ignored.
    fn check_held_out(&mut self, root: &Table, recipe: &Recipe) {
        if recipe.data.eval.is_none() || !recipe.teachers.is_empty() {
            return;
        }
        let origin = match root.get("data").map(|entry| &entry.value.value) {
            Some(Value::Table(table)) => table.get("eval").map(|entry| entry.origin.clone()),
            _ => None,
        };
        self.report(
            origin.as_ref(),
            "data.eval".to_string(),
            "[data.eval] holds the held-out rows of the student–teacher agreement, but the recipe has no [teacher]: nothing would evaluate on them",
            Some(
                "to evaluate the student on held-out data without a teacher, use an [[eval]] section (e.g. kind = \"correlation\" or \"reranking\" with path = ...); or add a [teacher]"
                    .to_string(),
            ),
        );
    }

    /// Parallel-data columns: the teachers read the same columns, as many as each student group,
    /// and every named column is one the data sections read.
    fn check_columns(&mut self, root: &Table, recipe: &Recipe) {
        let student_origin = match root.get("student").map(|entry| &entry.value.value) {
            Some(Value::Table(table)) => table.get("columns").map(|entry| entry.origin.clone()),
            _ => None,
        };
        let teacher_columns = recipe.teachers.first().and_then(|t| t.columns.clone());
        for (index, teacher) in recipe.teachers.iter().enumerate().skip(1) {
            if teacher.columns != teacher_columns {
                self.report(
                    teacher.line.map(|line| Origin::File { line }).as_ref(),
                    format!("teacher.{index}.columns"),
                    format!(
                        "the teachers of an ensemble score the same pairs, but this one reads {} and the first reads {}",
                        describe_columns(teacher.columns.as_deref()),
                        describe_columns(teacher_columns.as_deref())
                    ),
                    Some("give every [[teacher]] the same columns".to_string()),
                );
            }
        }
        let student_groups = recipe.student.columns.as_deref();
        if let (Some(columns), None, None) = (&teacher_columns, student_groups, &student_origin) {
            self.report(
                recipe.teachers[0].line.map(|line| Origin::File { line }).as_ref(),
                "teacher.columns".to_string(),
                format!(
                    "the teacher reads {columns:?}, but the student's columns are not named"
                ),
                Some(
                    "set [student] columns to the columns the student trains on, e.g. columns = [\"de_1\", \"de_2\"]"
                        .to_string(),
                ),
            );
        }
        if let (Some(columns), Some(groups)) = (&teacher_columns, student_groups) {
            if columns.len() != groups[0].len() {
                self.report(
                    student_origin.as_ref(),
                    "student.columns".to_string(),
                    format!(
                        "each student example needs one teacher score per document: the teacher reads {} columns {columns:?}, the student {} columns {:?}",
                        columns.len(),
                        groups[0].len(),
                        groups[0]
                    ),
                    Some("name as many student columns (per group) as teacher columns".to_string()),
                );
            }
        }
        if teacher_columns.is_none() && student_groups.is_none() {
            return;
        }
        let data_sections = std::iter::once(("data.train", &recipe.data.train))
            .chain(recipe.data.eval.iter().map(|eval| ("data.eval", eval)));
        for (key, data) in data_sections {
            let Some(read) = &data.columns else { continue };
            let named = student_groups
                .into_iter()
                .flatten()
                .flatten()
                .map(|name| ("student.columns", name))
                .chain(
                    teacher_columns
                        .iter()
                        .flatten()
                        .map(|name| ("teacher.columns", name)),
                );
            for (role, name) in named {
                if !read.contains(name) {
                    let origin = if role == "student.columns" {
                        student_origin.clone()
                    } else {
                        recipe.teachers[0].line.map(|line| Origin::File { line })
                    };
                    self.report(
                        origin.as_ref(),
                        role.to_string(),
                        format!("column {name:?} is not among the columns {key} reads: {read:?}"),
                        Some(format!(
                            "add {name:?} to {key}.columns, or remove {key}.columns to read every column the student and teacher name"
                        )),
                    );
                }
            }
        }
    }

    fn version(&mut self, top: &mut Section<'_>) -> Option<u32> {
        let version = self.read(top, "version", "1 (the only recipe version)", |node| {
            matches!(node.value, Value::Integer(1)).then_some(1)
        });
        if !top.has("version") {
            self.missing(top, "version", "the recipe format version", "version = 1");
        }
        version
    }

    fn run(&mut self, top: &mut Section<'_>) -> Option<RunSection> {
        let mut section = self.required_table(top, "run")?;
        let output_dir = self.path(&mut section, "output_dir");
        if !section.has("output_dir") {
            self.missing(
                &section,
                "output_dir",
                "the directory for checkpoints and the final model",
                "output_dir = \"runs/NAME\"",
            );
        }
        let seed = self.non_negative_integer(&mut section, "seed");
        let device = self.device(&mut section, "device");
        self.finish(section);
        Some(RunSection {
            output_dir: output_dir?,
            seed: seed.map_or(42, |seed| seed as u64),
            device: device.unwrap_or_else(|| "cpu".to_string()),
        })
    }

    /// A device name: "cpu", "cuda" or "cuda:N".
    fn device(&mut self, section: &mut Section<'_>, name: &'static str) -> Option<String> {
        self.read(
            section,
            name,
            "\"cpu\", \"cuda\" or \"cuda:N\"",
            |node| match &node.value {
                Value::String(device) if is_device(device) => Some(device.clone()),
                _ => None,
            },
        )
    }

    fn teacher(&mut self, mut section: Section<'_>) -> Option<TeacherSection> {
        let kind = self.word(
            &mut section,
            "kind",
            TeacherKind::NAMES,
            TeacherKind::from_name,
        );
        if !section.has("kind") {
            self.missing(
                &section,
                "kind",
                "one of \"candle\", \"onnx\"",
                "kind = \"candle\"",
            );
        }
        let model = self.model(&mut section, "model");
        if !section.has("model") {
            self.missing(
                &section,
                "model",
                "a model directory or hub id",
                "model = \"org/name\"",
            );
        }
        let onnx_file = self.string(&mut section, "onnx_file");
        if let (Some(TeacherKind::Candle), Some(_)) = (kind, &onnx_file) {
            let origin = section
                .table
                .get("onnx_file")
                .map(|entry| entry.origin.clone());
            self.report(
                origin.as_ref(),
                section.key_of("onnx_file"),
                "onnx_file is only for kind = \"onnx\" teachers, found it on a kind = \"candle\" teacher",
                Some("remove onnx_file, or set kind = \"onnx\"".to_string()),
            );
        }
        let max_length = self.positive_integer(&mut section, "max_length");
        let batch_size = self.positive_integer(&mut section, "batch_size");
        let activation = self.word(
            &mut section,
            "activation",
            TeacherActivation::NAMES,
            TeacherActivation::from_name,
        );
        let columns = self.strings(&mut section, "columns");
        let dtype = self.word(
            &mut section,
            "dtype",
            Precision::NAMES,
            Precision::from_name,
        );
        if let (Some(TeacherKind::Onnx), Some(dtype)) = (kind, dtype) {
            if !dtype.is_f32() {
                let origin = section.table.get("dtype").map(|entry| entry.origin.clone());
                self.report(
                    origin.as_ref(),
                    section.key_of("dtype"),
                    format!("dtype = \"{dtype}\" is for kind = \"candle\" teachers; an onnx teacher runs the exported graph in the precision it was exported in"),
                    Some("remove dtype, or export the model in that precision".to_string()),
                );
            }
        }
        let device = self.device(&mut section, "device");
        let line = section.origin.as_ref().and_then(Origin::line);
        self.finish(section);
        Some(TeacherSection {
            kind: kind?,
            model: model?,
            onnx_file,
            max_length,
            batch_size: batch_size.unwrap_or(64),
            activation: activation.unwrap_or_default(),
            columns,
            dtype: dtype.unwrap_or_default(),
            device,
            line,
        })
    }

    /// `Some(None)` without a `[cache]`, `None` when it has problems.
    fn cache(&mut self, top: &mut Section<'_>) -> Option<Option<CacheSection>> {
        if !top.has("cache") {
            top.field("cache");
            return Some(None);
        }
        let mut section = self.table(top, "cache")?;
        let dir = self.path(&mut section, "dir");
        if !section.has("dir") {
            self.missing(&section, "dir", "the cache directory", "dir = \"cache\"");
        }
        self.finish(section);
        Some(Some(CacheSection { dir: dir? }))
    }

    fn student(&mut self, top: &mut Section<'_>) -> Option<StudentSection> {
        let mut section = self.required_table(top, "student")?;
        let model = self.model(&mut section, "model");
        if !section.has("model") {
            self.missing(
                &section,
                "model",
                "the student's model directory or hub id",
                "model = \"org/name\"",
            );
        }
        let max_length = self.positive_integer(&mut section, "max_length");
        let num_labels = self.positive_integer(&mut section, "num_labels");
        let layers = self.integers(&mut section, "layers");
        let columns = self.column_groups(&mut section, "columns");
        self.finish(section);
        Some(StudentSection {
            model: model?,
            max_length,
            num_labels: num_labels.unwrap_or(1),
            layers,
            columns,
        })
    }

    fn data(&mut self, top: &mut Section<'_>) -> Option<DataSections> {
        let mut section = self.required_table(top, "data")?;
        let train = self
            .required_table(&mut section, "train")
            .and_then(|train_section| self.data_section(train_section));
        let eval = match self.table(&mut section, "eval") {
            Some(eval_section) => self.data_section(eval_section).map(Some),
            None if section.has("eval") => None,
            None => Some(None),
        };
        self.finish(section);
        Some(DataSections {
            train: train?,
            eval: eval?,
        })
    }

    fn data_section(&mut self, mut section: Section<'_>) -> Option<DataSection> {
        let path = self.string_at(&mut section, "path", "a data file path or hf:// URL");
        if !section.has("path") {
            self.missing(
                &section,
                "path",
                "a .jsonl, .csv, .tsv or .parquet file",
                "path = \"train.jsonl\"",
            );
        }
        let columns = self.strings(&mut section, "columns");
        let label = self.string(&mut section, "label");
        let names = self.strings(&mut section, "names");
        let format = self.word(&mut section, "format", DATA_FORMATS, |word| {
            DATA_FORMATS.contains(&word).then(|| word.to_string())
        });
        let max_rows = self.positive_integer(&mut section, "max_rows");
        self.finish(section);
        let (path, origin) = path?;
        Some(DataSection {
            path,
            base_dir: self.base_dir(origin).to_path_buf(),
            columns,
            label,
            names,
            format,
            max_rows,
        })
    }

    fn losses(&mut self, top: &mut Section<'_>, has_teacher: bool) -> Option<Vec<LossSection>> {
        let sections = self.table_list(top, "loss");
        let empty_array = top.table.get("loss").is_some_and(
            |entry| matches!(&entry.value.value, Value::Array(items) if items.is_empty()),
        );
        if empty_array {
            self.report(
                top.table.get("loss").map(|entry| &entry.origin),
                "loss".to_string(),
                "expected at least one [[loss]] section, found an empty array: nothing would be trained",
                Some(format!(
                    "replace `loss = []` with a [[loss]] section, e.g. kind = \"{}\"",
                    if has_teacher {
                        "margin_mse"
                    } else {
                        "binary_cross_entropy"
                    }
                )),
            );
        }
        if sections.is_empty() && !top.has("loss") {
            self.report(
                None,
                "loss".to_string(),
                "missing: expected at least one [[loss]] section",
                Some(format!(
                    "add e.g. [[loss]] with kind = \"{}\"",
                    if has_teacher {
                        "margin_mse"
                    } else {
                        "binary_cross_entropy"
                    }
                )),
            );
        }
        let losses: Vec<Option<LossSection>> = sections
            .into_iter()
            .map(|section| self.loss(section, has_teacher))
            .collect();
        losses.into_iter().collect()
    }

    fn loss(&mut self, mut section: Section<'_>, has_teacher: bool) -> Option<LossSection> {
        // The built-in kinds plus losses registered with crate::loss::register_custom_loss.
        let custom = crate::loss::custom_loss_kinds();
        let known: Vec<&str> = LOSS_KINDS
            .iter()
            .copied()
            .chain(custom.iter().map(String::as_str))
            .collect();
        let kind = self.word(&mut section, "kind", &known, |word| {
            known.contains(&word).then(|| word.to_string())
        });
        if !section.has("kind") {
            self.missing(
                &section,
                "kind",
                &format!("one of {}", known.join(", ")),
                "kind = \"margin_mse\"",
            );
        }
        let labels = self.word(
            &mut section,
            "labels",
            LabelSource::NAMES,
            LabelSource::from_name,
        );
        if labels == Some(LabelSource::Teacher) && !has_teacher {
            let origin = section
                .table
                .get("labels")
                .map(|entry| entry.origin.clone());
            self.report(
                origin.as_ref(),
                section.key_of("labels"),
                "labels = \"teacher\" needs a [teacher] section, found none",
                Some("add a [teacher] section, or set labels = \"data\"".to_string()),
            );
        }
        let weight = self.number(&mut section, "weight", "a number >= 0", |weight| {
            weight >= 0.0
        });
        let params: toml::Table = section
            .rest()
            .map(|entry| (entry.key.clone(), entry.value.value.to_toml()))
            .collect();
        let line = section.origin.as_ref().and_then(Origin::line);
        let default_labels = if has_teacher {
            LabelSource::Teacher
        } else {
            LabelSource::Data
        };
        Some(LossSection {
            kind: kind?,
            labels: labels.unwrap_or(default_labels),
            weight: weight.unwrap_or(1.0),
            params,
            line,
        })
    }

    fn train(&mut self, top: &mut Section<'_>) -> Option<TrainSection> {
        let mut section = match self.table(top, "train") {
            Some(section) => section,
            None if top.has("train") => return None,
            None => Section::new(
                &EMPTY_TABLE,
                "train".to_string(),
                "[train]".to_string(),
                None,
            ),
        };
        let defaults = TrainSection::default();
        let before = self.problems.len();
        let epochs = self.non_negative_integer(&mut section, "epochs");
        let max_steps = self.non_negative_integer(&mut section, "max_steps");
        let batch_size = self.positive_integer_at_most(&mut section, "batch_size", MAX_BATCH_SIZE);
        let learning_rate = self.number(&mut section, "learning_rate", "a number > 0", |rate| {
            rate > 0.0
        });
        let weight_decay = self.number(&mut section, "weight_decay", "a number >= 0", |decay| {
            decay >= 0.0
        });
        let warmup_ratio = self.number(
            &mut section,
            "warmup_ratio",
            "a number in [0, 1]",
            |ratio| (0.0..=1.0).contains(&ratio),
        );
        let warmup_steps = self.non_negative_integer(&mut section, "warmup_steps");
        let scheduler = self.word(
            &mut section,
            "scheduler",
            Scheduler::NAMES,
            Scheduler::from_name,
        );
        let max_grad_norm = self.number(
            &mut section,
            "max_grad_norm",
            "a number >= 0 (0 = no clipping)",
            |norm| norm >= 0.0,
        );
        let gradient_accumulation = self.positive_integer(&mut section, "gradient_accumulation");
        let shuffle = self.boolean(&mut section, "shuffle");
        let batch_sampler = self.word(
            &mut section,
            "batch_sampler",
            BatchSampler::NAMES,
            BatchSampler::from_name,
        );
        let log_every = self.positive_integer(&mut section, "log_every");
        let save_every = self.non_negative_integer(&mut section, "save_every");
        let eval_every = self.non_negative_integer(&mut section, "eval_every");
        // 0 keeps every checkpoint; absent keeps the default number.
        let save_total_limit = self
            .non_negative_integer(&mut section, "save_total_limit")
            .map(|limit| (limit > 0).then_some(limit));
        let on_nan = self.word(&mut section, "on_nan", OnNan::NAMES, OnNan::from_name);
        let metric_for_best_model = self.string(&mut section, "metric_for_best_model");
        let load_best_model_at_end = self.boolean(&mut section, "load_best_model_at_end");
        let channel_capacity =
            self.positive_integer_at_most(&mut section, "channel_capacity", MAX_CHANNEL_CAPACITY);
        let precision = self.word(&mut section, "precision", TRAIN_PRECISIONS, |name| {
            Precision::from_name(name).filter(|p| *p != Precision::F16)
        });

        let train = TrainSection {
            epochs: epochs.unwrap_or(defaults.epochs),
            max_steps: max_steps.unwrap_or(defaults.max_steps),
            batch_size: batch_size.unwrap_or(defaults.batch_size),
            learning_rate: learning_rate.unwrap_or(defaults.learning_rate),
            weight_decay: weight_decay.unwrap_or(defaults.weight_decay),
            warmup_ratio: warmup_ratio.unwrap_or(defaults.warmup_ratio),
            warmup_steps: warmup_steps.unwrap_or(defaults.warmup_steps),
            scheduler: scheduler.unwrap_or(defaults.scheduler),
            max_grad_norm: max_grad_norm.unwrap_or(defaults.max_grad_norm),
            gradient_accumulation: gradient_accumulation.unwrap_or(defaults.gradient_accumulation),
            shuffle: shuffle.unwrap_or(defaults.shuffle),
            batch_sampler: batch_sampler.unwrap_or(defaults.batch_sampler),
            log_every: log_every.unwrap_or(defaults.log_every),
            save_every: save_every.unwrap_or(defaults.save_every),
            eval_every: eval_every.unwrap_or(defaults.eval_every),
            save_total_limit: save_total_limit.unwrap_or(defaults.save_total_limit),
            on_nan: on_nan.unwrap_or(defaults.on_nan),
            metric_for_best_model,
            load_best_model_at_end: load_best_model_at_end
                .unwrap_or(defaults.load_best_model_at_end),
            channel_capacity: channel_capacity.unwrap_or(defaults.channel_capacity),
            precision: precision.unwrap_or(defaults.precision),
        };
        if epochs == Some(0) && train.max_steps == 0 {
            let origin = section
                .table
                .get("epochs")
                .map(|entry| entry.origin.clone());
            self.report(
                origin.as_ref(),
                section.key_of("epochs"),
                "epochs = 0 with max_steps = 0 would train nothing: expected epochs >= 1 or max_steps >= 1",
                Some("set epochs = 1, or max_steps to the number of optimizer steps".to_string()),
            );
        }
        if train.load_best_model_at_end && train.metric_for_best_model.is_none() {
            let origin = section
                .table
                .get("load_best_model_at_end")
                .map(|entry| entry.origin.clone());
            self.report(
                origin.as_ref(),
                section.key_of("load_best_model_at_end"),
                "load_best_model_at_end = true needs metric_for_best_model, found none",
                Some("add metric_for_best_model = \"eval/NAME/ndcg@10\"".to_string()),
            );
        }
        self.finish(section);
        (self.problems.len() == before).then_some(train)
    }

    fn evals(&mut self, top: &mut Section<'_>) -> Option<Vec<EvalSection>> {
        let sections = self.table_list(top, "eval");
        let evals: Vec<Option<EvalSection>> = sections
            .into_iter()
            .map(|section| self.eval(section))
            .collect();
        let evals: Vec<EvalSection> = evals.into_iter().collect::<Option<_>>()?;
        for (index, eval) in evals.iter().enumerate() {
            if let Some(first) = evals[..index].iter().find(|other| other.name == eval.name) {
                let line_note = first
                    .line
                    .map(|line| format!(" (line {line})"))
                    .unwrap_or_default();
                self.report(
                    eval.line.map(|line| Origin::File { line }).as_ref(),
                    format!("eval.{index}.name"),
                    format!(
                        "expected a unique name, found {:?} again: an earlier [[eval]]{line_note} has it",
                        eval.name
                    ),
                    Some("give each [[eval]] its own name = \"...\"".to_string()),
                );
                return None;
            }
        }
        Some(evals)
    }

    fn eval(&mut self, mut section: Section<'_>) -> Option<EvalSection> {
        let kind = self.word(&mut section, "kind", EVAL_KINDS, |word| {
            EVAL_KINDS.contains(&word).then(|| word.to_string())
        });
        if !section.has("kind") {
            self.missing(
                &section,
                "kind",
                &format!("one of {}", EVAL_KINDS.join(", ")),
                "kind = \"reranking\"",
            );
        }
        let name = self.string(&mut section, "name");
        let path = self
            .string_at(&mut section, "path", "a data file path or hf:// URL")
            .map(|(path, origin)| {
                if path.starts_with("hf://") {
                    PathBuf::from(path)
                } else {
                    normalize(&self.base_dir(origin).join(path))
                }
            });
        let needs_path = kind.as_deref().is_some_and(|kind| kind != "nano_beir");
        if needs_path && !section.has("path") {
            self.missing(
                &section,
                "path",
                "the evaluation data file",
                "path = \"eval.jsonl\"",
            );
        }
        let params: toml::Table = section
            .rest()
            .map(|entry| (entry.key.clone(), entry.value.value.to_toml()))
            .collect();
        let line = section.origin.as_ref().and_then(Origin::line);
        let kind = kind?;
        Some(EvalSection {
            name: name.unwrap_or_else(|| kind.clone()),
            kind,
            path,
            params,
            line,
        })
    }
}

/// `cpu`, `cuda` or `cuda:N`.
/// The precisions `[train] precision` takes: f16 training needs loss scaling, which
/// crossdistill does not do (bf16 has f32's range and needs none).
const TRAIN_PRECISIONS: &[&str] = &["f32", "bf16"];

fn is_device(device: &str) -> bool {
    match device {
        "cpu" | "cuda" => true,
        _ => device.strip_prefix("cuda:").is_some_and(|ordinal| {
            !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit())
        }),
    }
}

/// The word of `candidates` closest to `word` by edit distance, when it is close enough to be a
/// typo (at most a third of the word's letters differ).
fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len().max(3) / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edit distance over chars where inserting, deleting, replacing one char or swapping two
/// neighbours each count 1 (optimal string alignment), so `batch_szie` is 1 from `batch_size`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // distances[i][j]: distance between the first i chars of a and the first j chars of b.
    let mut distances = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in distances.iter_mut().enumerate() {
        row[0] = i;
    }
    distances[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let replace = distances[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]);
            let mut best = replace
                .min(distances[i - 1][j] + 1)
                .min(distances[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(distances[i - 2][j - 2] + 1);
            }
            distances[i][j] = best;
        }
    }
    distances[a.len()][b.len()]
}

/// A teacher's `columns` for messages.
fn describe_columns(columns: Option<&[String]>) -> String {
    match columns {
        Some(columns) => format!("{columns:?}"),
        None => "the student's columns (no `columns`)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("batch_size", "batch_size"), 0);
        assert_eq!(edit_distance("batch_szie", "batch_size"), 1);
        assert_eq!(edit_distance("modle", "model"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("cosin", "cosine"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn closest_suggests_typos_only() {
        assert_eq!(
            closest("batch_szie", &["epochs", "batch_size"]),
            Some("batch_size")
        );
        assert_eq!(
            closest("cosin", &["linear", "cosine", "constant"]),
            Some("cosine")
        );
        assert_eq!(closest("zzz", &["linear", "cosine"]), None);
    }

    #[test]
    fn devices() {
        for device in ["cpu", "cuda", "cuda:0", "cuda:12"] {
            assert!(is_device(device), "{device}");
        }
        for device in ["gpu", "cuda:", "cuda:x", "cpu:0", ""] {
            assert!(!is_device(device), "{device}");
        }
    }
}
