//! The typed recipe: what a validated `recipe.toml` holds.
//!
//! Every value here has passed validation (types, ranges, allowed names), every default is filled
//! in and every local path is absolute. Equality compares what a recipe means, not where it was
//! written: `line` fields and [`RecipeSource`] are ignored, and model/data references compare by
//! what they resolve to, so a recipe equals the one re-loaded from its
//! [`to_resolved_toml`](Recipe::to_resolved_toml).

use std::path::{Path, PathBuf};

use crate::model::Precision;

/// `kind` values of `[[loss]]`: the snake_case names of the sentence-transformers CrossEncoder
/// loss classes, read from the built-in loss table ([`crate::loss::BUILTIN_LOSSES`]).
pub const LOSS_KINDS: &[&str] = &crate::loss::BUILTIN_KINDS;

/// `kind` values of `[[eval]]`: the sentence-transformers CrossEncoder evaluators
/// (`CrossEncoderRerankingEvaluator`, `...NanoBEIREvaluator`, `...ClassificationEvaluator`,
/// `...CorrelationEvaluator`), student–teacher agreement, and reranking over a local BEIR folder.
pub const EVAL_KINDS: &[&str] = &[
    "reranking",
    "nano_beir",
    "classification",
    "correlation",
    "agreement",
    "beir",
];

/// `format` values of `[data.*]`; without `format` the file extension decides.
pub const DATA_FORMATS: &[&str] = &["jsonl", "csv", "tsv", "parquet"];

/// A validated recipe. Build it with [`load`](super::load).
#[derive(Debug, Clone)]
pub struct Recipe {
    /// Recipe format version; always 1.
    pub version: u32,
    /// `[run]`: where outputs go, seed, device.
    pub run: RunSection,
    /// `[teacher]` (one table) or `[[teacher]]` (several, scores averaged); empty without one.
    pub teachers: Vec<TeacherSection>,
    /// `[cache]`: the persistent teacher-score cache, when configured.
    pub cache: Option<CacheSection>,
    /// `[student]`: the model being trained.
    pub student: StudentSection,
    /// `[data.train]` and `[data.eval]`.
    pub data: DataSections,
    /// `[[loss]]`: at least one; the training loss is `sum(weight * loss)`.
    pub losses: Vec<LossSection>,
    /// `[train]`: optimisation settings, every default filled in.
    pub train: TrainSection,
    /// `[[eval]]`: evaluators run every `train.eval_every` steps.
    pub evals: Vec<EvalSection>,
    /// The file the recipe was read from and its text (for the run directory and the model card).
    pub source: RecipeSource,
}

impl PartialEq for Recipe {
    /// Equal when every section is equal; `source` is not compared.
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version
            && self.run == other.run
            && self.teachers == other.teachers
            && self.cache == other.cache
            && self.student == other.student
            && self.data == other.data
            && self.losses == other.losses
            && self.train == other.train
            && self.evals == other.evals
    }
}

/// Where a recipe came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeSource {
    /// Absolute path of the recipe file.
    pub path: PathBuf,
    /// The file's text, before `--set` overrides.
    pub text: String,
}

/// `[run]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSection {
    /// Directory for checkpoints, the final model, metrics and the resolved recipe (absolute).
    pub output_dir: PathBuf,
    /// Seed for every random choice of the run. Default 42.
    pub seed: u64,
    /// `"cpu"`, `"cuda"` or `"cuda:N"`. Default `"cpu"`.
    pub device: String,
}

/// Generates `NAMES`, `name()` and `from_name()` for an enum of recipe words.
macro_rules! recipe_words {
    ($enum:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $enum {
            /// Every word the recipe accepts, in the order the variants are declared.
            pub const NAMES: &'static [&'static str] = &[$($word),+];

            /// The word a recipe uses for this value.
            pub fn name(self) -> &'static str {
                match self {
                    $($enum::$variant => $word),+
                }
            }

            /// The value a recipe word stands for; `None` for words not in [`Self::NAMES`].
            pub fn from_name(word: &str) -> Option<Self> {
                match word {
                    $($word => Some($enum::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $enum {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

/// Which runtime scores with a teacher (`kind` of `[teacher]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeacherKind {
    /// A Hugging Face checkpoint run with candle (`"candle"`).
    Candle,
    /// An ONNX export run with onnxruntime (`"onnx"`).
    Onnx,
}
recipe_words!(TeacherKind { Candle => "candle", Onnx => "onnx" });

/// What is applied to teacher logits before they become labels (`activation` of `[teacher]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TeacherActivation {
    /// Raw logits (`"identity"`), the default.
    #[default]
    Identity,
    /// `sigmoid(logit)` (`"sigmoid"`).
    Sigmoid,
}
recipe_words!(TeacherActivation { Identity => "identity", Sigmoid => "sigmoid" });

/// One `[teacher]` / `[[teacher]]` entry.
#[derive(Debug, Clone)]
pub struct TeacherSection {
    /// `kind`: the runtime.
    pub kind: TeacherKind,
    /// `model`: local directory or hub id.
    pub model: ModelRef,
    /// `onnx_file`: the ONNX file inside the model directory (onnx teachers only).
    pub onnx_file: Option<String>,
    /// `max_length`: truncate pairs to this many tokens; `None` = the model's limit.
    pub max_length: Option<usize>,
    /// `batch_size`: pairs per teacher forward pass. Default 64.
    pub batch_size: usize,
    /// `activation`: applied to the teacher's logits. Default identity.
    pub activation: TeacherActivation,
    /// `columns`: the data columns this teacher reads, in order (parallel-data distillation);
    /// `None` = the same columns as the student.
    pub columns: Option<Vec<String>>,
    /// `dtype`: the precision the teacher computes in (candle teachers; "f32", "bf16" or "f16").
    /// Default f32. Part of the teacher fingerprint when not f32 (the scores differ).
    pub dtype: Precision,
    /// `device`: where the teacher runs ("cpu", "cuda", "cuda:N"); `None` = `run.device`. Not
    /// part of the fingerprint (a model scores the same on any device).
    pub device: Option<String>,
    /// Line of the section header in the recipe file (`None` when it came from `--set`).
    pub line: Option<usize>,
}

impl PartialEq for TeacherSection {
    /// Compares every field except `line`.
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.model == other.model
            && self.onnx_file == other.onnx_file
            && self.max_length == other.max_length
            && self.batch_size == other.batch_size
            && self.activation == other.activation
            && self.columns == other.columns
            && self.dtype == other.dtype
            && self.device == other.device
    }
}

/// A model named in a recipe: a local directory or a Hugging Face hub id.
///
/// Which of the two it is gets decided when the model is loaded: if `base_dir.join(spec)` exists
/// it is a local directory ([`local_path`](Self::local_path)), otherwise `spec` is a hub id.
#[derive(Debug, Clone)]
pub struct ModelRef {
    /// The string as written (`"cross-encoder/ms-marco-MiniLM-L6-v2"`, `"../models/x"`).
    pub spec: String,
    /// The directory a relative `spec` is resolved against: the recipe's directory, or the
    /// working directory for a `--set` value.
    pub base_dir: PathBuf,
}

impl ModelRef {
    /// The local path `spec` names (relative to `base_dir`, or absolute), canonicalised, when it
    /// exists; `None` means `spec` is a hub id (or a path that does not exist).
    pub fn local_path(&self) -> Option<PathBuf> {
        self.base_dir.join(&self.spec).canonicalize().ok()
    }

    /// What this reference resolves to now: the absolute local path, or the hub id.
    pub fn resolved(&self) -> String {
        match self.local_path() {
            Some(path) => path.display().to_string(),
            None => self.spec.clone(),
        }
    }
}

impl PartialEq for ModelRef {
    /// Equal when both name the same existing local path, or the same hub id.
    fn eq(&self, other: &Self) -> bool {
        self.resolved() == other.resolved()
    }
}

/// `[cache]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSection {
    /// `dir`: directory of the teacher-score cache (absolute).
    pub dir: PathBuf,
}

/// `[student]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StudentSection {
    /// `model`: local directory or hub id (required).
    pub model: ModelRef,
    /// `max_length`: truncate pairs to this many tokens; `None` = the model's limit.
    pub max_length: Option<usize>,
    /// `num_labels`: logits of the classifier head. Default 1.
    pub num_labels: usize,
    /// `layers`: keep only these encoder layers (0-based) when initialising; `None` = all.
    pub layers: Option<Vec<usize>>,
    /// `columns`: the data columns the student reads, in order; `None` = the data's columns.
    /// Several groups (`[["de_1", "de_2"], ["es_1", "es_2"]]`) make one example per group from
    /// every row (parallel data in several languages); one flat list is one group.
    pub columns: Option<Vec<Vec<String>>>,
}

/// The columns of parallel-data distillation (`[student] columns`, `[teacher] columns`): the
/// student trains on each group of a row, with the teacher's scores of the teacher's columns of
/// the same row (e.g. the teacher scores the English pair, the student learns them on the German
/// and Spanish translations).
#[derive(Debug, Clone, PartialEq)]
pub struct ParallelColumns {
    /// Student column groups, all of one length; each row gives one example per group.
    pub student: Vec<Vec<String>>,
    /// The teacher's columns; `None` = the teacher reads each student group itself.
    pub teacher: Option<Vec<String>>,
}

impl ParallelColumns {
    /// The columns `data` must read: its own `columns` when given, else every column the student
    /// and the teacher name, in first-mention order.
    pub fn read(&self, data: &DataSection) -> Vec<String> {
        if let Some(columns) = &data.columns {
            return columns.clone();
        }
        let mut read: Vec<String> = Vec::new();
        for name in self
            .student
            .iter()
            .flatten()
            .chain(self.teacher.iter().flatten())
        {
            if !read.contains(name) {
                read.push(name.clone());
            }
        }
        read
    }
}

impl Recipe {
    /// The parallel-data columns, when `[student] columns` names them.
    pub fn parallel_columns(&self) -> Option<ParallelColumns> {
        let student = self.student.columns.clone()?;
        Some(ParallelColumns {
            student,
            teacher: self.teachers.first().and_then(|t| t.columns.clone()),
        })
    }
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSections {
    /// `[data.train]` (required).
    pub train: DataSection,
    /// `[data.eval]`, when given.
    pub eval: Option<DataSection>,
}

/// `[data.train]` / `[data.eval]`.
#[derive(Debug, Clone)]
pub struct DataSection {
    /// `path` as written: a local file (`.jsonl`, `.csv`, `.tsv`, `.parquet`) or an `hf://` URL.
    pub path: String,
    /// The directory a relative `path` is resolved against (recipe directory, or the working
    /// directory for a `--set` value).
    pub base_dir: PathBuf,
    /// `columns`: which input columns, in order; `None` = every non-label column.
    pub columns: Option<Vec<String>>,
    /// `label`: the label column; `None` = first of label, labels, score, scores.
    pub label: Option<String>,
    /// `names`: column names of a headerless CSV/TSV file.
    pub names: Option<Vec<String>>,
    /// `format`: one of [`DATA_FORMATS`]; `None` = from the extension.
    pub format: Option<String>,
    /// `max_rows`: read at most this many rows.
    pub max_rows: Option<usize>,
}

impl DataSection {
    /// True for `hf://` paths, which are left for the data module to resolve.
    pub fn is_remote(&self) -> bool {
        self.path.starts_with("hf://")
    }

    /// The file to read: `None` for `hf://` paths, else the absolute local path.
    pub fn local_path(&self) -> Option<PathBuf> {
        (!self.is_remote()).then(|| normalize(&self.base_dir.join(&self.path)))
    }

    /// The path as the resolved recipe writes it: the absolute path, or the `hf://` URL.
    pub fn resolved(&self) -> String {
        match self.local_path() {
            Some(path) => path.display().to_string(),
            None => self.path.clone(),
        }
    }
}

impl PartialEq for DataSection {
    /// Compares the resolved path and every option.
    fn eq(&self, other: &Self) -> bool {
        self.resolved() == other.resolved()
            && self.columns == other.columns
            && self.label == other.label
            && self.names == other.names
            && self.format == other.format
            && self.max_rows == other.max_rows
    }
}

/// Where a loss takes its labels from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSource {
    /// The teacher's scores (`"teacher"`); the default when a teacher is configured.
    Teacher,
    /// The data's label column (`"data"`); the default without a teacher.
    Data,
}
recipe_words!(LabelSource { Teacher => "teacher", Data => "data" });

/// One `[[loss]]` entry.
#[derive(Debug, Clone)]
pub struct LossSection {
    /// `kind`: one of [`LOSS_KINDS`].
    pub kind: String,
    /// `labels`: teacher scores or the data's labels.
    pub labels: LabelSource,
    /// `weight`: factor of this loss in the total. Default 1.0.
    pub weight: f64,
    /// Every other key of the entry, in file order, with the sentence-transformers parameter
    /// names (`activation_fn`, `scale`, `num_negatives`, ...). Not checked here: the loss module
    /// validates them. Read with `params.get("scale").and_then(toml::Value::as_float)` etc.
    pub params: toml::Table,
    /// Line of the `[[loss]]` header (`None` when it came from `--set`).
    pub line: Option<usize>,
}

impl PartialEq for LossSection {
    /// Compares every field except `line`.
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.labels == other.labels
            && self.weight == other.weight
            && self.params == other.params
    }
}

/// Learning-rate schedule after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheduler {
    /// Linear decay to 0 (`"linear"`), the default.
    #[default]
    Linear,
    /// Cosine decay to 0 (`"cosine"`).
    Cosine,
    /// Constant learning rate (`"constant"`).
    Constant,
}
recipe_words!(Scheduler { Linear => "linear", Cosine => "cosine", Constant => "constant" });

/// How training batches are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchSampler {
    /// Consecutive rows of the (shuffled) data (`"default"`).
    #[default]
    Default,
    /// No text twice in a batch (`"no_duplicates"`), for in-batch negatives.
    NoDuplicates,
}
recipe_words!(BatchSampler { Default => "default", NoDuplicates => "no_duplicates" });

/// What to do when the loss is NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnNan {
    /// Stop training with an error (`"stop"`), the default.
    #[default]
    Stop,
    /// Skip the optimizer step and go on (`"skip"`).
    Skip,
}
recipe_words!(OnNan { Stop => "stop", Skip => "skip" });

/// The checkpoints a run keeps when the recipe does not say (`save_total_limit`): enough to
/// resume from and to step back once, while a long run's disk use stays bounded.
pub const DEFAULT_SAVE_TOTAL_LIMIT: usize = 3;

/// The largest `train.batch_size` a recipe may set.
pub const MAX_BATCH_SIZE: usize = 1 << 16;

/// The largest `train.channel_capacity` a recipe may set (the channel takes its slots up front).
pub const MAX_CHANNEL_CAPACITY: usize = 1 << 12;

/// `[train]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSection {
    /// Passes over the training data. Default 1.
    pub epochs: usize,
    /// Stop after this many optimizer steps; 0 = no limit. Default 0.
    pub max_steps: usize,
    /// Rows per batch. Default 16.
    pub batch_size: usize,
    /// Peak learning rate (> 0). Default 2e-5.
    pub learning_rate: f64,
    /// AdamW weight decay (>= 0). Default 0.01.
    pub weight_decay: f64,
    /// Fraction of the steps spent warming up, in [0, 1]. Default 0.1.
    pub warmup_ratio: f64,
    /// Warmup steps; when > 0 it wins over `warmup_ratio`. Default 0.
    pub warmup_steps: usize,
    /// Schedule after warmup. Default linear.
    pub scheduler: Scheduler,
    /// Clip the global gradient norm to this (> 0; 0 = no clipping). Default 1.0.
    pub max_grad_norm: f64,
    /// Batches per optimizer step (>= 1). Default 1.
    pub gradient_accumulation: usize,
    /// Shuffle the training data every epoch. Default true.
    pub shuffle: bool,
    /// How batches are drawn. Default `default`.
    pub batch_sampler: BatchSampler,
    /// Log metrics every this many steps (>= 1). Default 10.
    pub log_every: usize,
    /// Save a checkpoint every this many steps; 0 = only at the end. Default 500.
    pub save_every: usize,
    /// Evaluate every this many steps; 0 = only at the end. Default 500.
    pub eval_every: usize,
    /// Keep at most this many checkpoints; `None` = keep all (`save_total_limit = 0`).
    /// Default [`DEFAULT_SAVE_TOTAL_LIMIT`].
    pub save_total_limit: Option<usize>,
    /// What to do on a NaN loss. Default stop.
    pub on_nan: OnNan,
    /// Metric (e.g. `eval/dev/ndcg@10`) that picks the best checkpoint.
    pub metric_for_best_model: Option<String>,
    /// Load the best checkpoint (by `metric_for_best_model`) at the end. Default false.
    pub load_best_model_at_end: bool,
    /// Batches the producer thread may run ahead of the trainer (>= 1). Default 4.
    pub channel_capacity: usize,
    /// `precision`: "f32", or "bf16" mixed precision (bf16 forward, f32 master weights,
    /// gradients, optimizer state and loss; CUDA only). Default f32.
    pub precision: Precision,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            epochs: 1,
            max_steps: 0,
            batch_size: 16,
            learning_rate: 2e-5,
            weight_decay: 0.01,
            warmup_ratio: 0.1,
            warmup_steps: 0,
            scheduler: Scheduler::Linear,
            max_grad_norm: 1.0,
            gradient_accumulation: 1,
            shuffle: true,
            batch_sampler: BatchSampler::Default,
            log_every: 10,
            save_every: 500,
            eval_every: 500,
            save_total_limit: Some(DEFAULT_SAVE_TOTAL_LIMIT),
            on_nan: OnNan::Stop,
            metric_for_best_model: None,
            load_best_model_at_end: false,
            channel_capacity: 32,
            precision: Precision::F32,
        }
    }
}

/// One `[[eval]]` entry.
#[derive(Debug, Clone)]
pub struct EvalSection {
    /// `kind`: one of [`EVAL_KINDS`].
    pub kind: String,
    /// `name`: used in metric names (`eval/<name>/ndcg@10`). Default: the kind. Unique.
    pub name: String,
    /// `path`: the evaluation data (absolute, or an `hf://` URL as written); required for
    /// every kind except `nano_beir`.
    pub path: Option<PathBuf>,
    /// Every other key (`at_k`, `num_negatives`, ...), validated by the eval module.
    pub params: toml::Table,
    /// Line of the `[[eval]]` header (`None` when it came from `--set`).
    pub line: Option<usize>,
}

impl PartialEq for EvalSection {
    /// Compares every field except `line`.
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.name == other.name
            && self.path == other.path
            && self.params == other.params
    }
}

/// `path` without `.` components (`a/./b` → `a/b`); `..` is kept, as symlinks make it unsafe to
/// fold.
pub(super) fn normalize(path: &Path) -> PathBuf {
    path.components().collect()
}
