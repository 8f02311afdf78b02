//! Recipe loading end to end: files on disk, overrides, every error message, round trips.

use std::path::{Path, PathBuf};

use super::*;
use crate::model::Precision;

/// A temporary directory holding `recipes/x.toml` (and whatever a test adds), used as the
/// working directory.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Write `recipes/x.toml` and return its path relative to the working directory.
    fn recipe(&self, text: &str) -> PathBuf {
        self.file("recipes/x.toml", text);
        PathBuf::from("recipes/x.toml")
    }

    fn file(&self, relative: &str, text: &str) {
        let path = self.root().join(relative);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn mkdir(&self, relative: &str) -> PathBuf {
        let path = self.root().join(relative);
        std::fs::create_dir_all(&path).expect("mkdir");
        path
    }

    fn load(&self, text: &str, overrides: &[&str]) -> Result<Recipe> {
        let path = self.recipe(text);
        load_in(&path, &strings(overrides), self.root())
    }

    fn check(&self, text: &str, overrides: &[&str]) -> Vec<Problem> {
        let path = self.recipe(text);
        check_in(&path, &strings(overrides), self.root())
    }
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|text| text.to_string()).collect()
}

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the recipe"))
        + 1
}

const MINIMAL: &str = r#"version = 1

[run]
output_dir = "runs/x"

[student]
model = "org/student"

[data.train]
path = "train.jsonl"

[[loss]]
kind = "binary_cross_entropy"
"#;

/// The example recipe of DESIGN.md ("Recipe (contract ...)"), with the placeholders made
/// concrete and the extra keys this module adds.
const DESIGN_EXAMPLE: &str = r#"version = 1

[run]
output_dir = "runs/quickstart"   # checkpoints, final model, metrics.jsonl, model card, plots
seed = 7
device = "cuda:0"

[teacher]
kind = "onnx"
model = "../models/teacher"
onnx_file = "model.onnx"
max_length = 256
batch_size = 32
activation = "sigmoid"
device = "cuda:1"

[cache]
dir = "cache"

[student]
model = "cross-encoder/ms-marco-MiniLM-L6-v2"
max_length = 128
num_labels = 1
layers = [0, 2, 4]

[data.train]
path = "train.jsonl"
columns = ["query", "positive", "negative"]
label = "score"
max_rows = 1000

[data.eval]
path = "hf://datasets/org/eval/dev.jsonl"
format = "jsonl"

[[loss]]
kind = "margin_mse"
labels = "teacher"
weight = 0.5

[[loss]]
kind = "multiple_negatives_ranking"
labels = "data"
scale = 10.0
num_negatives = 4
activation_fn = "sigmoid"

[train]
epochs = 2
max_steps = 100
batch_size = 8
learning_rate = 3e-5
weight_decay = 0.0
warmup_ratio = 0.2
warmup_steps = 5
scheduler = "cosine"
max_grad_norm = 2.0
gradient_accumulation = 4
shuffle = false
batch_sampler = "no_duplicates"
log_every = 1
save_every = 50
eval_every = 25
save_total_limit = 2
on_nan = "skip"
metric_for_best_model = "eval/dev/ndcg@10"
load_best_model_at_end = true
channel_capacity = 8
precision = "bf16"

[[eval]]
kind = "reranking"
name = "dev"
path = "dev.jsonl"
at_k = 10
"#;

#[test]
fn the_design_example_loads_with_every_field_as_written() {
    let workspace = Workspace::new();
    let teacher_dir = workspace.mkdir("models/teacher");
    let recipe = workspace.load(DESIGN_EXAMPLE, &[]).expect("valid recipe");
    let recipes = workspace.root().join("recipes");

    assert_eq!(recipe.version, 1);
    assert_eq!(
        recipe.run,
        RunSection {
            output_dir: recipes.join("runs/quickstart"),
            seed: 7,
            device: "cuda:0".to_string(),
        }
    );

    assert_eq!(recipe.teachers.len(), 1);
    let teacher = &recipe.teachers[0];
    assert_eq!(teacher.kind, TeacherKind::Onnx);
    assert_eq!(teacher.model.spec, "../models/teacher");
    assert_eq!(teacher.model.base_dir, recipes);
    assert_eq!(
        teacher.model.local_path(),
        Some(teacher_dir.canonicalize().expect("exists"))
    );
    assert_eq!(teacher.onnx_file.as_deref(), Some("model.onnx"));
    assert_eq!(teacher.max_length, Some(256));
    assert_eq!(teacher.batch_size, 32);
    assert_eq!(teacher.activation, TeacherActivation::Sigmoid);
    assert_eq!(teacher.device.as_deref(), Some("cuda:1"));
    assert_eq!(teacher.dtype, Precision::F32);
    assert_eq!(teacher.columns, None);
    assert_eq!(teacher.line, Some(line_of(DESIGN_EXAMPLE, "[teacher]")));

    assert_eq!(
        recipe.cache,
        Some(CacheSection {
            dir: recipes.join("cache")
        })
    );

    let student = &recipe.student;
    assert_eq!(student.model.spec, "cross-encoder/ms-marco-MiniLM-L6-v2");
    assert_eq!(
        student.model.local_path(),
        None,
        "a hub id, not a local path"
    );
    assert_eq!(student.max_length, Some(128));
    assert_eq!(student.num_labels, 1);
    assert_eq!(student.layers, Some(vec![0, 2, 4]));

    let train_data = &recipe.data.train;
    assert_eq!(train_data.path, "train.jsonl");
    assert_eq!(train_data.local_path(), Some(recipes.join("train.jsonl")));
    assert_eq!(
        train_data.columns,
        Some(strings(&["query", "positive", "negative"]))
    );
    assert_eq!(train_data.label.as_deref(), Some("score"));
    assert_eq!(train_data.max_rows, Some(1000));
    let eval_data = recipe.data.eval.as_ref().expect("[data.eval]");
    assert!(eval_data.is_remote());
    assert_eq!(eval_data.local_path(), None);
    assert_eq!(eval_data.resolved(), "hf://datasets/org/eval/dev.jsonl");
    assert_eq!(eval_data.format.as_deref(), Some("jsonl"));

    assert_eq!(recipe.losses.len(), 2);
    assert_eq!(recipe.losses[0].kind, "margin_mse");
    assert_eq!(recipe.losses[0].labels, LabelSource::Teacher);
    assert_eq!(recipe.losses[0].weight, 0.5);
    assert!(recipe.losses[0].params.is_empty());
    let ranking = &recipe.losses[1];
    assert_eq!(ranking.kind, "multiple_negatives_ranking");
    assert_eq!(ranking.labels, LabelSource::Data);
    assert_eq!(ranking.weight, 1.0);
    assert_eq!(
        ranking.params.get("scale").and_then(toml::Value::as_float),
        Some(10.0)
    );
    assert_eq!(
        ranking
            .params
            .get("num_negatives")
            .and_then(toml::Value::as_integer),
        Some(4)
    );
    assert_eq!(
        ranking
            .params
            .get("activation_fn")
            .and_then(toml::Value::as_str),
        Some("sigmoid")
    );
    assert_eq!(ranking.params.len(), 3);
    assert_eq!(
        ranking.line,
        Some(line_of(DESIGN_EXAMPLE, "kind = \"multiple") - 1)
    );

    assert_eq!(
        recipe.train,
        TrainSection {
            epochs: 2,
            max_steps: 100,
            batch_size: 8,
            learning_rate: 3e-5,
            weight_decay: 0.0,
            warmup_ratio: 0.2,
            warmup_steps: 5,
            scheduler: Scheduler::Cosine,
            max_grad_norm: 2.0,
            gradient_accumulation: 4,
            shuffle: false,
            batch_sampler: BatchSampler::NoDuplicates,
            log_every: 1,
            save_every: 50,
            eval_every: 25,
            save_total_limit: Some(2),
            on_nan: OnNan::Skip,
            metric_for_best_model: Some("eval/dev/ndcg@10".to_string()),
            load_best_model_at_end: true,
            channel_capacity: 8,
            precision: Precision::Bf16,
        }
    );

    assert_eq!(recipe.evals.len(), 1);
    let eval = &recipe.evals[0];
    assert_eq!(eval.kind, "reranking");
    assert_eq!(eval.name, "dev");
    assert_eq!(eval.path, Some(recipes.join("dev.jsonl")));
    assert_eq!(
        eval.params.get("at_k").and_then(toml::Value::as_integer),
        Some(10)
    );

    assert_eq!(recipe.source.path, recipes.join("x.toml"));
    assert_eq!(recipe.source.text, DESIGN_EXAMPLE);
}

#[test]
fn defaults_are_filled_in() {
    let workspace = Workspace::new();
    let recipe = workspace.load(MINIMAL, &[]).expect("valid recipe");
    assert_eq!(recipe.run.seed, 42);
    assert_eq!(recipe.run.device, "cpu");
    assert!(recipe.teachers.is_empty());
    assert_eq!(recipe.cache, None);
    assert_eq!(recipe.student.num_labels, 1);
    assert_eq!(recipe.student.max_length, None);
    assert_eq!(recipe.data.eval, None);
    assert_eq!(recipe.losses[0].weight, 1.0);
    assert_eq!(
        recipe.losses[0].labels,
        LabelSource::Data,
        "no teacher: labels come from the data"
    );
    // The defaults of DESIGN.md's [train] example, plus this module's additions.
    let train = &recipe.train;
    assert_eq!(train, &TrainSection::default());
    assert_eq!(
        (train.epochs, train.max_steps, train.batch_size),
        (1, 0, 16)
    );
    assert_eq!(
        (train.learning_rate, train.weight_decay, train.warmup_ratio),
        (2e-5, 0.01, 0.1)
    );
    assert_eq!(train.scheduler, Scheduler::Linear);
    assert_eq!((train.max_grad_norm, train.gradient_accumulation), (1.0, 1));
    assert!(train.shuffle);
    assert_eq!(train.batch_sampler, BatchSampler::Default);
    assert_eq!(
        (train.log_every, train.save_every, train.eval_every),
        (10, 500, 500)
    );
    assert_eq!(train.on_nan, OnNan::Stop);
    assert_eq!(train.channel_capacity, 32);
    assert!(recipe.evals.is_empty());
}

#[test]
fn teacher_defaults_and_label_default_with_a_teacher() {
    let workspace = Workspace::new();
    let text = format!("{MINIMAL}\n[teacher]\nkind = \"candle\"\nmodel = \"org/teacher\"\n");
    let recipe = workspace.load(&text, &[]).expect("valid recipe");
    let teacher = &recipe.teachers[0];
    assert_eq!(teacher.batch_size, 64);
    assert_eq!(teacher.activation, TeacherActivation::Identity);
    assert_eq!(teacher.device, None);
    assert_eq!(teacher.dtype, Precision::F32);
    assert_eq!(teacher.onnx_file, None);
    assert_eq!(recipe.losses[0].labels, LabelSource::Teacher);
}

#[test]
fn one_teacher_table_and_an_array_of_teachers_both_load() {
    let workspace = Workspace::new();
    let one = format!("{MINIMAL}\n[teacher]\nkind = \"candle\"\nmodel = \"org/a\"\n");
    let recipe = workspace.load(&one, &[]).expect("[teacher]");
    assert_eq!(recipe.teachers.len(), 1);
    assert_eq!(recipe.teachers[0].model.spec, "org/a");

    let mixed = format!(
        "{MINIMAL}\n[[teacher]]\nkind = \"candle\"\nmodel = \"org/a\"\n\n[[teacher]]\nkind = \"onnx\"\nmodel = \"org/b\"\ncolumns = [\"query_de\", \"passage_de\"]\n"
    );
    let err = workspace.load(&mixed, &[]).unwrap_err().to_string();
    assert!(
        err.contains("teacher.1.columns: the teachers of an ensemble score the same pairs, but this one reads [\"query_de\", \"passage_de\"] and the first reads the student's columns"),
        "{err}"
    );
    let many = mixed.replace(
        "[[teacher]]\nkind = \"candle\"\nmodel = \"org/a\"\n",
        "[[teacher]]\nkind = \"candle\"\nmodel = \"org/a\"\ncolumns = [\"query_de\", \"passage_de\"]\n",
    )
    .replace(
        "[student]\n",
        "[student]\ncolumns = [\"query\", \"passage\"]\n",
    );
    let recipe = workspace.load(&many, &[]).expect("[[teacher]]");
    assert_eq!(recipe.teachers.len(), 2);
    assert_eq!(recipe.teachers[0].kind, TeacherKind::Candle);
    assert_eq!(recipe.teachers[1].kind, TeacherKind::Onnx);
    assert_eq!(recipe.teachers[1].model.spec, "org/b");
    assert_eq!(
        recipe.teachers[1].columns,
        Some(strings(&["query_de", "passage_de"]))
    );
    assert_eq!(
        recipe.teachers[1].line,
        Some(line_of(&many, "kind = \"onnx\"") - 1)
    );
}

/// Load `text`, expect exactly one problem, and check where it is and what it says.
fn single_problem(text: &str, line: Option<usize>, key: &str, parts: &[&str]) -> Problem {
    let workspace = Workspace::new();
    let problems = workspace.check(text, &[]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let problem = problems.into_iter().next().expect("one problem");
    assert_eq!(problem.path, PathBuf::from("recipes/x.toml"));
    assert_eq!(problem.line, line, "{problem}");
    assert_eq!(problem.key, key, "{problem}");
    for part in parts {
        assert!(
            problem.to_string().contains(part),
            "{part:?} not in: {problem}"
        );
    }
    problem
}

/// `MINIMAL` with `line` added under the header `section` (created at the end when absent).
fn with_line(section: &str, line: &str) -> String {
    let header = format!("[{section}]\n");
    match MINIMAL.find(&header) {
        Some(start) => {
            let at = start + header.len();
            format!("{}{line}\n{}", &MINIMAL[..at], &MINIMAL[at..])
        }
        None => format!("{MINIMAL}\n{header}{line}\n"),
    }
}

#[test]
fn unknown_keys_name_the_key_the_line_and_the_expected_keys() {
    let text = with_line("train", "batch_szie = 8");
    let problem = single_problem(
        &text,
        Some(line_of(&text, "batch_szie")),
        "train.batch_szie",
        &[
            "unknown key `batch_szie` in [train]; expected one of: epochs, max_steps, batch_size, learning_rate",
            "channel_capacity",
            "(hint: did you mean `batch_size`?)",
        ],
    );
    assert!(problem.to_string().starts_with(&format!(
        "recipes/x.toml:{}: train.batch_szie: unknown key",
        line_of(&text, "batch_szie")
    )));

    let text = format!("stray = 1\n{MINIMAL}");
    single_problem(
        &text,
        Some(1),
        "stray",
        &["unknown key `stray` in the top level; expected one of: version, run, teacher, cache, student, data, loss, train, eval"],
    );

    let text = with_line("student", "modle = \"x\"");
    single_problem(
        &text,
        Some(line_of(&text, "modle")),
        "student.modle",
        &[
            "expected one of: model, max_length, num_labels, layers, columns",
            "did you mean `model`?",
        ],
    );
}

#[test]
fn wrong_types_say_what_was_expected_and_what_was_found() {
    let text = with_line("train", "batch_size = \"ten\"");
    let problem = single_problem(
        &text,
        Some(line_of(&text, "\"ten\"")),
        "train.batch_size",
        &[],
    );
    assert_eq!(
        problem.to_string(),
        format!(
            "recipes/x.toml:{}: train.batch_size: expected a positive integer, found string \"ten\"",
            line_of(&text, "\"ten\"")
        )
    );

    let text = with_line("train", "batch_size = -3");
    let problem = single_problem(&text, Some(line_of(&text, "-3")), "train.batch_size", &[]);
    assert_eq!(
        problem.to_string(),
        format!(
            "recipes/x.toml:{}: train.batch_size: expected a positive integer, found -3",
            line_of(&text, "-3")
        )
    );

    let text = with_line("train", "batch_size = 16.0");
    single_problem(
        &text,
        Some(line_of(&text, "16.0")),
        "train.batch_size",
        &["expected a positive integer, found 16.0"],
    );
    let text = with_line("train", "shuffle = \"yes\"");
    single_problem(
        &text,
        Some(line_of(&text, "shuffle")),
        "train.shuffle",
        &["expected true or false, found string \"yes\""],
    );
    let text = with_line("student", "columns = \"query\"");
    single_problem(
        &text,
        Some(line_of(&text, "columns")),
        "student.columns",
        &["expected a non-empty array of column names, or an array of such arrays (one per language), found string \"query\""],
    );
    let text = MINIMAL.replace("[student]", "[student]\nlayers = [0, -1]");
    single_problem(
        &text,
        Some(line_of(&text, "layers")),
        "student.layers",
        &["expected a non-empty array of non-negative integers, found an array [0, -1]"],
    );
    let text = MINIMAL.replace("[data.train]", "[data.train]\nmax_rows = 0");
    single_problem(
        &text,
        Some(line_of(&text, "max_rows")),
        "data.train.max_rows",
        &["expected a positive integer, found 0"],
    );
    let text = format!("train = 3\n{MINIMAL}");
    single_problem(
        &text,
        Some(1),
        "train",
        &["expected a table [train], found 3"],
    );
}

#[test]
fn out_of_range_values_are_reported() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "train",
            "learning_rate = 0.0",
            "train.learning_rate",
            "expected a number > 0, found 0.0",
        ),
        (
            "train",
            "learning_rate = -1e-5",
            "train.learning_rate",
            "expected a number > 0, found -1e-5",
        ),
        (
            "train",
            "warmup_ratio = 1.5",
            "train.warmup_ratio",
            "expected a number in [0, 1], found 1.5",
        ),
        (
            "train",
            "warmup_ratio = -0.1",
            "train.warmup_ratio",
            "expected a number in [0, 1], found -0.1",
        ),
        (
            "train",
            "batch_size = 0",
            "train.batch_size",
            "expected a positive integer, found 0",
        ),
        (
            "train",
            "gradient_accumulation = 0",
            "train.gradient_accumulation",
            "expected a positive integer, found 0",
        ),
        (
            "train",
            "weight_decay = -0.5",
            "train.weight_decay",
            "expected a number >= 0, found -0.5",
        ),
        (
            "train",
            "max_grad_norm = nan",
            "train.max_grad_norm",
            "expected a number >= 0 (0 = no clipping), found NaN",
        ),
        (
            "train",
            "log_every = 0",
            "train.log_every",
            "expected a positive integer, found 0",
        ),
        (
            "train",
            "channel_capacity = 0",
            "train.channel_capacity",
            "expected a positive integer, found 0",
        ),
        (
            "run",
            "device = \"gpu\"",
            "run.device",
            "expected \"cpu\", \"cuda\" or \"cuda:N\", found string \"gpu\"",
        ),
        (
            "run",
            "seed = -1",
            "run.seed",
            "expected a non-negative integer, found -1",
        ),
        (
            "student",
            "num_labels = 0",
            "student.num_labels",
            "expected a positive integer, found 0",
        ),
    ];
    for (section, line, key, message) in cases {
        let text = with_line(section, line);
        single_problem(&text, Some(line_of(&text, line)), key, &[message]);
    }
}

#[test]
fn zero_epochs_need_max_steps() {
    let text = with_line("train", "epochs = 0");
    single_problem(
        &text,
        Some(line_of(&text, "epochs = 0")),
        "train.epochs",
        &[
            "epochs = 0 with max_steps = 0 would train nothing",
            "set epochs = 1",
        ],
    );
    let workspace = Workspace::new();
    let text = with_line("train", "epochs = 0\nmax_steps = 10");
    let recipe = workspace
        .load(&text, &[])
        .expect("max_steps alone is enough");
    assert_eq!((recipe.train.epochs, recipe.train.max_steps), (0, 10));
}

#[test]
fn the_version_must_be_1() {
    let text = MINIMAL.replace("version = 1", "version = 2");
    single_problem(
        &text,
        Some(1),
        "version",
        &["expected 1 (the only recipe version), found 2"],
    );
    let text = MINIMAL.replace("version = 1\n", "");
    single_problem(
        &text,
        None,
        "version",
        &[
            "missing required key `version` in the top level",
            "add `version = 1` at the top",
        ],
    );
}

#[test]
fn unknown_words_list_the_allowed_ones() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("train", "scheduler = \"cosin\"", "train.scheduler", "expected one of \"linear\", \"cosine\", \"constant\", found string \"cosin\" (hint: did you mean \"cosine\"?)"),
        ("train", "batch_sampler = \"round_robin\"", "train.batch_sampler", "expected one of \"default\", \"no_duplicates\", found string \"round_robin\""),
        ("train", "on_nan = \"ignore\"", "train.on_nan", "expected one of \"stop\", \"skip\", found string \"ignore\""),
        ("data.train", "format = \"xlsx\"", "data.train.format", "expected one of \"jsonl\", \"csv\", \"tsv\", \"parquet\", found string \"xlsx\""),
        ("train", "precision = \"f16\"", "train.precision", "expected one of \"f32\", \"bf16\", found string \"f16\""),
        ("run", "device = \"gpu\"", "run.device", "expected \"cpu\", \"cuda\" or \"cuda:N\", found string \"gpu\""),
    ];
    for (section, line, key, message) in cases {
        let text = with_line(section, line);
        single_problem(&text, Some(line_of(&text, line)), key, &[message]);
    }

    let text = format!(
        "{MINIMAL}\n[teacher]\nkind = \"candel\"\nmodel = \"org/t\"\nactivation = \"softmax\"\n"
    );
    let workspace = Workspace::new();
    let problems = workspace.check(&text, &[]);
    let shown: Vec<String> = problems.iter().map(Problem::to_string).collect();
    assert_eq!(problems.len(), 2, "{shown:#?}");
    assert_eq!(problems[0].key, "teacher.kind");
    assert_eq!(problems[0].line, Some(line_of(&text, "candel")));
    assert!(shown[0].contains("expected one of \"candle\", \"onnx\", found string \"candel\" (hint: did you mean \"candle\"?)"), "{}", shown[0]);
    assert_eq!(problems[1].key, "teacher.activation");
    assert!(
        shown[1].contains("expected one of \"identity\", \"sigmoid\", found string \"softmax\""),
        "{}",
        shown[1]
    );

    // A teacher's dtype and device: candle teachers take any precision; an onnx teacher runs its
    // export's, and says so.
    let text = format!(
        "{MINIMAL}\n[teacher]\nkind = \"candle\"\nmodel = \"org/t\"\ndtype = \"bf16\"\ndevice = \"cuda:2\"\n"
    );
    let recipe = Workspace::new().load(&text, &[]).expect("valid recipe");
    assert_eq!(recipe.teachers[0].dtype, Precision::Bf16);
    assert_eq!(recipe.teachers[0].device.as_deref(), Some("cuda:2"));
    let text = format!(
        "{MINIMAL}\n[teacher]\nkind = \"onnx\"\nmodel = \"org/t\"\ndtype = \"f16\"\ndevice = \"tpu\"\n"
    );
    let problems = Workspace::new().check(&text, &[]);
    let shown: Vec<String> = problems.iter().map(Problem::to_string).collect();
    assert_eq!(problems.len(), 2, "{shown:#?}");
    assert_eq!(problems[0].key, "teacher.dtype");
    assert!(
        shown[0].contains("dtype = \"f16\" is for kind = \"candle\" teachers"),
        "{}",
        shown[0]
    );
    assert_eq!(problems[1].key, "teacher.device");
    assert!(shown[1].contains("found string \"tpu\""), "{}", shown[1]);

    let text = MINIMAL.replace("binary_cross_entropy", "margin_mes");
    single_problem(
        &text,
        Some(line_of(&text, "margin_mes")),
        "loss.0.kind",
        &[
            "expected one of \"cross_entropy\", \"binary_cross_entropy\", \"mse\", \"margin_mse\",",
            "\"adr_mse\", found string \"margin_mes\"",
            "did you mean \"margin_mse\"?",
        ],
    );
}

#[test]
fn onnx_file_is_only_for_onnx_teachers() {
    let text = format!(
        "{MINIMAL}\n[teacher]\nkind = \"candle\"\nmodel = \"org/t\"\nonnx_file = \"model.onnx\"\n"
    );
    single_problem(
        &text,
        Some(line_of(&text, "onnx_file")),
        "teacher.onnx_file",
        &[
            "onnx_file is only for kind = \"onnx\" teachers, found it on a kind = \"candle\" teacher",
            "hint: remove onnx_file, or set kind = \"onnx\"",
        ],
    );
}

#[test]
fn missing_required_keys_are_reported_at_their_section() {
    let text = MINIMAL.replace("model = \"org/student\"\n", "");
    single_problem(
        &text,
        Some(line_of(&text, "[student]")),
        "student.model",
        &[
            "missing required key `model` in [student]",
            "add `model = \"org/name\"` to [student]",
        ],
    );
    let text = MINIMAL.replace("path = \"train.jsonl\"\n", "max_rows = 5\n");
    single_problem(
        &text,
        Some(line_of(&text, "[data.train]")),
        "data.train.path",
        &["missing required key `path` in [data.train]"],
    );
    let text = MINIMAL.replace("[[loss]]\nkind = \"binary_cross_entropy\"\n", "");
    single_problem(
        &text,
        None,
        "loss",
        &[
            "missing: expected at least one [[loss]] section",
            "hint: add e.g. [[loss]] with kind = \"binary_cross_entropy\"",
        ],
    );
    let text = MINIMAL.replace("[student]\nmodel = \"org/student\"\n", "");
    single_problem(
        &text,
        None,
        "student.model",
        &["missing required key `model` in [student]"],
    );
    let text = MINIMAL.replace("[run]\noutput_dir = \"runs/x\"\n", "[run]\nseed = 1\n");
    single_problem(
        &text,
        Some(line_of(&text, "[run]")),
        "run.output_dir",
        &["missing required key `output_dir` in [run]"],
    );
    let text = format!("{MINIMAL}\n[[loss]]\nweight = 2.0\n");
    single_problem(
        &text,
        Some(line_of(&text, "weight = 2.0") - 1),
        "loss.1.kind",
        &["missing required key `kind` in [[loss]] entry 1"],
    );
}

#[test]
fn teacher_labels_need_a_teacher() {
    let text = MINIMAL.replace(
        "kind = \"binary_cross_entropy\"",
        "kind = \"binary_cross_entropy\"\nlabels = \"teacher\"",
    );
    single_problem(
        &text,
        Some(line_of(&text, "labels")),
        "loss.0.labels",
        &[
            "labels = \"teacher\" needs a [teacher] section, found none",
            "hint: add a [teacher] section, or set labels = \"data\"",
        ],
    );
}

#[test]
fn check_reports_every_problem_in_line_order() {
    let text = r#"version = 3

[run]
output_dir = "runs/x"
device = "tpu"

[student]
max_length = -1

[data.train]
path = "train.jsonl"
colums = ["a"]

[[loss]]
kind = "mse"
labels = "teacher"

[train]
learning_rate = 0
scheduler = "step"
"#;
    let workspace = Workspace::new();
    let problems = workspace.check(text, &[]);
    let shown: Vec<String> = problems.iter().map(Problem::to_string).collect();
    let keys: Vec<&str> = problems
        .iter()
        .map(|problem| problem.key.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "version",
            "run.device",
            "student.model",
            "student.max_length",
            "data.train.colums",
            "loss.0.labels",
            "train.learning_rate",
            "train.scheduler",
        ],
        "{shown:#?}"
    );
    let lines: Vec<Option<usize>> = problems.iter().map(|problem| problem.line).collect();
    assert_eq!(
        lines,
        [
            Some(1),
            Some(5),
            Some(7),
            Some(8),
            Some(12),
            Some(16),
            Some(19),
            Some(20)
        ]
    );

    let error = workspace.load(text, &[]).expect_err("invalid recipe");
    match &error {
        Error::Many(errors) => assert_eq!(errors.len(), 8),
        other => panic!("expected Error::Many, found {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.starts_with("8 problems:\n  - recipes/x.toml:1: version: expected 1"),
        "{message}"
    );
}

#[test]
fn one_problem_loads_as_one_input_error() {
    let workspace = Workspace::new();
    let error = workspace
        .load(&with_line("train", "batch_size = 0"), &[])
        .expect_err("invalid");
    assert!(matches!(error, Error::Input { .. }), "{error:?}");
    assert!(error
        .to_string()
        .contains("train.batch_size: expected a positive integer, found 0"));
}

#[test]
fn syntax_errors_have_lines_and_unreadable_files_are_io_errors() {
    let text = MINIMAL.replace("path = \"train.jsonl\"", "path = train.jsonl");
    let workspace = Workspace::new();
    let problems = workspace.check(&text, &[]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].line, Some(line_of(&text, "path = train")));
    assert!(
        problems[0].message.starts_with("invalid TOML: "),
        "{}",
        problems[0]
    );

    let missing = Path::new("recipes/none.toml");
    let error = load_in(missing, &[], workspace.root()).expect_err("no such file");
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    let problems = check_in(missing, &[], workspace.root());
    assert_eq!(problems.len(), 1);
    assert!(problems[0].message.starts_with("cannot read the recipe"));
}

#[test]
fn override_paths_resolve_against_the_working_directory() {
    let workspace = Workspace::new();
    let shared_model = workspace.mkdir("shared/models/x");
    let recipe_model = workspace.mkdir("recipes/models/y");
    let text = MINIMAL.replace("org/student", "models/y");

    let recipe = workspace.load(&text, &[]).expect("valid");
    assert_eq!(
        recipe.student.model.local_path(),
        Some(recipe_model.canonicalize().expect("exists"))
    );
    assert_eq!(
        recipe.run.output_dir,
        workspace.root().join("recipes/runs/x")
    );

    let recipe = workspace
        .load(
            &text,
            &[
                "student.model=shared/models/x",
                "run.output_dir=out/run1",
                "data.train.path=data/train.csv",
                "train.max_steps=10",
                "train.learning_rate=1e-4",
                "run.device=cuda:1",
            ],
        )
        .expect("valid overrides");
    assert_eq!(recipe.student.model.spec, "shared/models/x");
    assert_eq!(recipe.student.model.base_dir, workspace.root());
    assert_eq!(
        recipe.student.model.local_path(),
        Some(shared_model.canonicalize().expect("exists"))
    );
    assert_eq!(recipe.run.output_dir, workspace.root().join("out/run1"));
    assert_eq!(
        recipe.data.train.local_path(),
        Some(workspace.root().join("data/train.csv"))
    );
    assert_eq!(recipe.train.max_steps, 10);
    assert_eq!(recipe.train.learning_rate, 1e-4);
    assert_eq!(recipe.run.device, "cuda:1");
    assert_eq!(
        recipe.source.text, text,
        "the source is the file as written"
    );

    let recipe = workspace
        .load(&text, &["data.train.path=hf://datasets/org/x/train.jsonl"])
        .expect("valid");
    assert_eq!(
        recipe.data.train.resolved(),
        "hf://datasets/org/x/train.jsonl"
    );
}

#[test]
fn overrides_reach_teachers_and_losses() {
    let workspace = Workspace::new();
    let text = format!(
        "{MINIMAL}\n[[loss]]\nkind = \"lambda\"\n\n[[teacher]]\nkind = \"candle\"\nmodel = \"org/a\"\n\n[[teacher]]\nkind = \"candle\"\nmodel = \"org/b\"\n"
    );
    let recipe = workspace
        .load(
            &text,
            &[
                "loss.1.weight=0.25",
                "loss.0.scale=5",
                "teacher.1.model=org/c",
            ],
        )
        .expect("valid");
    assert_eq!(recipe.losses[1].weight, 0.25);
    assert_eq!(
        recipe.losses[0]
            .params
            .get("scale")
            .and_then(toml::Value::as_integer),
        Some(5)
    );
    assert_eq!(recipe.teachers[1].model.spec, "org/c");

    let one_teacher = format!("{MINIMAL}\n[teacher]\nkind = \"candle\"\nmodel = \"org/a\"\n");
    let recipe = workspace
        .load(
            &one_teacher,
            &["teacher.model=org/z", "teacher.0.batch_size=8"],
        )
        .expect("valid");
    assert_eq!(recipe.teachers[0].model.spec, "org/z");
    assert_eq!(recipe.teachers[0].batch_size, 8);

    let problems = workspace.check(&text, &["teacher.model=org/z"]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].line, None);
    assert!(
        problems[0]
            .message
            .contains("teacher has 2 entries; say which one, e.g. teacher.0.model"),
        "{}",
        problems[0]
    );
}

#[test]
fn bad_overrides_are_reported_like_file_problems_without_a_line() {
    let workspace = Workspace::new();
    let problems = workspace.check(
        MINIMAL,
        &[
            "train.batch_szie=8",
            "train.batch_size=-3",
            "student.model=123",
            "no_equals",
        ],
    );
    let shown: Vec<String> = problems.iter().map(Problem::to_string).collect();
    assert_eq!(problems.len(), 4, "{shown:#?}");
    assert!(
        problems.iter().all(|problem| problem.line.is_none()),
        "{shown:#?}"
    );
    let find = |key: &str| {
        shown
            .iter()
            .find(|text| text.starts_with(&format!("recipes/x.toml: {key}:")))
            .unwrap_or_else(|| panic!("no problem for {key}: {shown:#?}"))
    };
    assert!(find("train.batch_szie").contains(
        "unknown key `batch_szie` in [train]; expected one of: epochs, max_steps, batch_size"
    ));
    assert!(find("train.batch_szie").contains("(from --set train.batch_szie=8)"));
    assert!(find("train.batch_szie").contains("did you mean `batch_size`?"));
    assert_eq!(
        find("train.batch_size"),
        "recipes/x.toml: train.batch_size: expected a positive integer, found -3 (from --set train.batch_size=-3)"
    );
    assert!(find("student.model").contains("found 123 (from --set student.model=123)"));
    assert!(find("student.model").contains("hint: quote it: --set 'student.model=\"...\"'"));
    assert!(find("no_equals").contains("--set expects KEY=VALUE"));
}

#[test]
fn the_resolved_recipe_loads_back_equal() {
    let workspace = Workspace::new();
    workspace.mkdir("models/teacher");
    let recipe = workspace.load(DESIGN_EXAMPLE, &[]).expect("valid");
    let resolved = recipe.to_resolved_toml();

    // Written somewhere else, so relative paths would no longer resolve.
    workspace.file("elsewhere/deep/recipe.resolved.toml", &resolved);
    let reloaded = load_in(
        Path::new("elsewhere/deep/recipe.resolved.toml"),
        &[],
        workspace.root(),
    )
    .unwrap_or_else(|error| panic!("{error}\n{resolved}"));
    assert_eq!(reloaded, recipe, "{resolved}");
    // Every path is absolute and every default is present.
    let recipes = workspace.root().join("recipes");
    assert!(
        resolved.contains(&format!(
            "output_dir = {:?}",
            recipes.join("runs/quickstart").display().to_string()
        )),
        "{resolved}"
    );
    assert!(
        resolved.contains(&format!(
            "{:?}",
            recipes.join("dev.jsonl").display().to_string()
        )),
        "{resolved}"
    );
    assert!(!resolved.contains("\"../models/teacher\""), "{resolved}");

    let minimal = workspace.load(MINIMAL, &[]).expect("valid");
    let resolved = minimal.to_resolved_toml();
    for key in [
        "seed = 42",
        "device = \"cpu\"",
        "num_labels = 1",
        "labels = \"data\"",
        "weight = 1.0",
        "warmup_ratio = 0.1",
        "channel_capacity = 32",
        "on_nan = \"stop\"",
        "model = \"org/student\"",
    ] {
        assert!(resolved.contains(key), "{key} not in:\n{resolved}");
    }
    workspace.file("elsewhere/minimal.toml", &resolved);
    let reloaded = load_in(Path::new("elsewhere/minimal.toml"), &[], workspace.root())
        .unwrap_or_else(|error| panic!("{error}\n{resolved}"));
    assert_eq!(reloaded, minimal);
    assert_eq!(reloaded.train, TrainSection::default());
}

#[test]
fn eval_names_default_to_the_kind_and_must_be_unique() {
    let workspace = Workspace::new();
    let text = format!("{MINIMAL}\n[[eval]]\nkind = \"reranking\"\npath = \"dev.jsonl\"\n\n[[eval]]\nkind = \"nano_beir\"\nname = \"nano\"\n");
    let recipe = workspace.load(&text, &[]).expect("valid");
    assert_eq!(recipe.evals[0].name, "reranking");
    assert_eq!(recipe.evals[1].path, None);

    let text = format!("{MINIMAL}\n[[eval]]\nkind = \"reranking\"\npath = \"a.jsonl\"\n\n[[eval]]\nkind = \"reranking\"\npath = \"b.jsonl\"\n");
    single_problem(
        &text,
        Some(line_of(&text, "path = \"b.jsonl\"") - 2),
        "eval.1.name",
        &["expected a unique name, found \"reranking\" again"],
    );
    let text = format!("{MINIMAL}\n[[eval]]\nkind = \"classification\"\n");
    single_problem(
        &text,
        Some(line_of(&text, "[[eval]]")),
        "eval.0.path",
        &["missing required key `path` in [[eval]] entry 0"],
    );
}
