//! The model card (`README.md` of a trained student) and the training-metrics plot.
//!
//! [`render`] turns a [`CardInput`], plain data the trainer fills in, into a Hugging Face model
//! card laid out like sentence-transformers' CrossEncoder card (`cross_encoder/model_card.py`,
//! `CrossEncoderModelCardData`, and `cross_encoder/model_card_template.md`): YAML front matter
//! (`library_name: sentence-transformers`, `pipeline_tag`, tags, datasets, metrics and a
//! `model-index` with the evaluation results), then the model details, usage with crossdistill
//! and with `sentence_transformers.CrossEncoder`, the teachers and their fingerprints,
//! evaluation tables, data statistics, each loss with its parameters, the `[train]`
//! hyper-parameters, the training log, framework versions and the BibTeX citations.
//!
//! [`plot_metrics`] draws the rows of `metrics.jsonl` (loss on top, every `eval/*` metric below)
//! into a PNG, with an embedded font so no system font library is needed.
//!
//! ```
//! use crossdistill::card::{render, CardInput};
//!
//! let card = render(&CardInput {
//!     model_name: "tiny reranker".into(),
//!     base_model: "cross-encoder/ms-marco-MiniLM-L6-v2".into(),
//!     ..CardInput::default()
//! });
//! assert!(card.starts_with("---\n"));
//! assert!(card.contains("pipeline_tag: text-ranking"));
//! ```

mod names;
mod plot;
mod render;

use std::collections::BTreeMap;

pub use names::dataset_reference;
pub use plot::plot_metrics;
pub use render::{render, CANDLE_VERSION, TOKENIZERS_VERSION};

/// Everything the model card shows. Empty fields leave their part of the card out (or show a
/// placeholder where sentence-transformers does).
#[derive(Debug, Clone, PartialEq)]
pub struct CardInput {
    /// The title and the `model-index` name. Default: "CrossEncoder based on {base_model}".
    pub model_name: String,
    /// What users load: a hub id (`user/my-reranker`) or a path; used in the usage snippets.
    /// Default: `"path/to/model"`.
    pub model_id: String,
    /// The student's starting checkpoint (hub id or path). Hub ids are linked and go into
    /// the front matter's `base_model`.
    pub base_model: String,
    /// Outputs of the model (1 for a reranker: `pipeline_tag: text-ranking`).
    pub num_labels: usize,
    /// Truncation length in tokens.
    pub max_length: usize,
    /// Languages of the training data (`en`, ...), for the front matter.
    pub language: Vec<String>,
    /// The license of the model (`apache-2.0`, ...), when known.
    pub license: Option<String>,
    /// The teachers whose scores the student learned from (none: the data's labels).
    pub teachers: Vec<TeacherInfo>,
    /// The training and evaluation data.
    pub datasets: Vec<DatasetInfo>,
    /// The losses, in recipe order.
    pub losses: Vec<LossInfo>,
    /// The resolved recipe's `[train]` table.
    pub hyperparameters: toml::Table,
    /// The rows of `metrics.jsonl` (`{"step", "epoch", "loss", ...}` and
    /// `{"step", "eval/<name>/<metric>", ...}`), in file order.
    pub metrics_rows: Vec<serde_json::Value>,
    /// The final evaluation results, one entry per evaluator.
    pub eval_results: Vec<EvalResult>,
    /// The step of the saved (best) checkpoint, shown in bold in the training log.
    pub best_step: Option<u64>,
    /// The plot's path relative to the card (e.g. `"training_metrics.png"`), when one was drawn.
    pub plot: Option<String>,
    /// Example (query, passage) pairs for the usage snippets (the first 5 are used); empty
    /// gives a generic example.
    pub examples: Vec<(String, String)>,
}

impl Default for CardInput {
    fn default() -> Self {
        CardInput {
            model_name: String::new(),
            model_id: String::new(),
            base_model: String::new(),
            num_labels: 1,
            max_length: 512,
            language: Vec::new(),
            license: None,
            teachers: Vec::new(),
            datasets: Vec::new(),
            losses: Vec::new(),
            hyperparameters: toml::Table::new(),
            metrics_rows: Vec::new(),
            eval_results: Vec::new(),
            best_step: None,
            plot: None,
            examples: Vec::new(),
        }
    }
}

/// One teacher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeacherInfo {
    /// `Teacher::describe()`: model, backend, activation.
    pub description: String,
    /// `Teacher::fingerprint()`: changes whenever the teacher's scores could change.
    pub fingerprint: String,
}

/// What a dataset was used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetRole {
    /// `[data.train]`.
    Training,
    /// `[data.eval]` or an evaluator's data.
    Evaluation,
}

/// Statistics of one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetInfo {
    /// Training or evaluation.
    pub role: DatasetRole,
    /// A readable name (file name or hub id).
    pub name: String,
    /// The hub dataset id, when the data came from the hub (linked, and listed in the front
    /// matter's `datasets`).
    pub hub_id: Option<String>,
    /// Number of rows.
    pub rows: usize,
    /// Column names, in order.
    pub columns: Vec<String>,
}

/// One loss of the training objective.
#[derive(Debug, Clone, PartialEq)]
pub struct LossInfo {
    /// The recipe `kind` (`margin_mse`, ...).
    pub kind: String,
    /// The class name the loss reports ([`Loss::class_name`](crate::loss::Loss::class_name):
    /// `MarginMSELoss`, ...), the loss's title; a built-in one links to the
    /// sentence-transformers documentation.
    pub class_name: String,
    /// Its weight in the summed loss.
    pub weight: f64,
    /// Its parameters (sentence-transformers' `get_config_dict`), shown as JSON.
    pub params: serde_json::Value,
    /// BibTeX of the paper that introduced it, when there is one.
    pub citation: Option<String>,
}

/// The final results of one evaluator.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    /// The evaluator's name (the dataset in the `model-index`).
    pub name: String,
    /// `Evaluator::description()`, e.g. "Cross Encoder Reranking" (the task).
    pub description: String,
    /// `Evaluator::primary_metric()`, shown in bold.
    pub primary_metric: Option<String>,
    /// `Evaluator::config()`, shown as JSON unless empty.
    pub config: serde_json::Value,
    /// The metrics, without prefix (`map`, `ndcg@10`, `base_ndcg@10`, ...).
    pub metrics: BTreeMap<String, f64>,
}
