//! The ONNX teacher: a cross-encoder exported to ONNX, run by ONNX Runtime through `ort`.
//!
//! ONNX Runtime is loaded at run time (`ort`'s `load-dynamic`), once per process, from
//! `ORT_DYLIB_PATH`, else from an installed `onnxruntime` Python package (`pip install
//! onnxruntime==1.31.1`; see [`find_onnxruntime`]). The session runs on the CPU with every graph
//! optimisation (`GraphOptimizationLevel::All`: attention, GELU, LayerNorm and bias fusions) and
//! one intra-op thread per core. Pairs are tokenised exactly as for the candle teacher
//! ([`PairTokenizer`]: `longest_first` truncation to `max_length`), run in length-sorted batches
//! padded to their longest pair, and the scores come back in input order.
//!
//! The model must look like a cross-encoder: int64 inputs `input_ids` and `attention_mask`
//! (and `token_type_ids` where the model has token types; `position_ids` where the export asks
//! for them, as some ModernBERT exports do), a float `logits` output of shape
//! `(batch, num_labels)`. Any encoder architecture runs: BERT, XLM-RoBERTa, ELECTRA, ModernBERT,
//! DeBERTa-v2/v3 exports were checked against sentence-transformers. `optimum-cli export onnx --task text-classification` and
//! `torch.onnx.export` of a `*ForSequenceClassification` model both produce that.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{Outlet, Tensor, TensorElementType, ValueType};
use serde_json::Value;

use super::candle::file_hash;
use super::Teacher;
use crate::error::{Error, Result};
use crate::hub::{self, RepoKind};
use crate::model::{looks_like_hub_id, ScoreActivation};
use crate::tokenize::{length_sorted_order, model_max_length, EncodedPair, PairTokenizer};

/// The oldest ONNX Runtime this build can use, as (major, minor): `ort` is built against
/// ONNX Runtime API 31 and refuses older libraries.
pub const ONNXRUNTIME_MIN_VERSION: (u32, u32) = (1, ort::MINOR_VERSION);

/// The onnxruntime release error messages tell users to install (the one the tests run on).
pub const ONNXRUNTIME_PIP_VERSION: &str = "1.31.1";

/// The environment variable that names the ONNX Runtime library file, as `ort` reads it.
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";

/// The process's ONNX Runtime environment and the library it came from, set by the first
/// successful [`init_onnxruntime`]. A failed initialisation leaves it empty, so a later call
/// (after the user fixed `ORT_DYLIB_PATH`) tries again.
static RUNTIME: Mutex<Option<(Environment, PathBuf)>> = Mutex::new(None);

fn install_hint() -> String {
    format!(
        "pip install onnxruntime=={ONNXRUNTIME_PIP_VERSION} (into the python3 on PATH or a venv at ./.venv-ort), \
         or set {ORT_DYLIB_PATH} to its library file, .../site-packages/onnxruntime/capi/libonnxruntime.so.{ONNXRUNTIME_PIP_VERSION}"
    )
}

fn required_version() -> String {
    format!(
        "{}.{} or newer",
        ONNXRUNTIME_MIN_VERSION.0, ONNXRUNTIME_MIN_VERSION.1
    )
}

/// Load ONNX Runtime (once per process) and return the path of the library in use.
///
/// The library is [`find_onnxruntime`]'s answer. Errors name what was looked for and where,
/// the version found against the version needed, and the `pip install` that fixes it.
pub fn init_onnxruntime() -> Result<PathBuf> {
    runtime().map(|(_, path)| path)
}

fn runtime() -> Result<(Environment, PathBuf)> {
    // A poisoned lock means a panic inside ort's loader; the slot itself is still consistent.
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((environment, path)) = slot.as_ref() {
        return Ok((environment.clone(), path.clone()));
    }
    let path = find_onnxruntime()?;
    let builder = ort::init_from(&path).map_err(load_error)?;
    let environment = builder
        .with_name("crossdistill")
        .with_telemetry(false)
        .build()
        .map_err(|e| {
            Error::invalid(format!(
                "ONNX Runtime from {} loaded, but its environment could not be created: {e}",
                path.display()
            ))
        })?;
    *slot = Some((environment.clone(), path.clone()));
    Ok((environment, path))
}

/// Turn `ort`'s library-loading failure into a message that says what to install.
fn load_error(error: ort::LoadDynamicError) -> Error {
    match error {
        ort::LoadDynamicError::BadVersion { version_str, path } => Error::invalid(format!(
            "the ONNX Runtime library {} is version {version_str}, but crossdistill needs onnxruntime {} \
             (it is built against ONNX Runtime API {})",
            path.display(),
            required_version(),
            ONNXRUNTIME_MIN_VERSION.1
        ))
        .with_hint(install_hint()),
        ort::LoadDynamicError::Dlopen { error, path } => Error::invalid(format!(
            "cannot load the ONNX Runtime library {}: {error}",
            path.display()
        ))
        .with_hint(install_hint()),
        ort::LoadDynamicError::MissingApi { path } => Error::invalid(format!(
            "{} is not an ONNX Runtime library (it does not export OrtGetApiBase)",
            path.display()
        ))
        .with_hint(install_hint()),
        ort::LoadDynamicError::InvalidVersionString => Error::invalid(
            "the ONNX Runtime library reported a malformed version string",
        )
        .with_hint(install_hint()),
    }
}

/// Where ONNX Runtime's shared library is: `ORT_DYLIB_PATH` when set (it must name an existing
/// file), else the newest `libonnxruntime` shipped by an `onnxruntime` Python package, looked
/// for in the venvs `$CROSSDISTILL_ORT_VENV`, `./.venv-ort` (what `scripts/ort-env` installs)
/// and `$VIRTUAL_ENV`, in `~/.local`, `/usr/local` and `/usr`, and where `python3` finds it.
pub fn find_onnxruntime() -> Result<PathBuf> {
    let from_env = std::env::var_os(ORT_DYLIB_PATH).filter(|v| !v.is_empty());
    if from_env.is_some() {
        return library_from_env(from_env);
    }
    let mut package_dirs = Vec::new();
    let mut looked = Vec::new();
    let venvs = [
        std::env::var_os("CROSSDISTILL_ORT_VENV").map(PathBuf::from),
        Some(PathBuf::from(".venv-ort")),
        std::env::var_os("VIRTUAL_ENV").map(PathBuf::from),
    ];
    let mut lib_dirs: Vec<PathBuf> = venvs.into_iter().flatten().map(|v| v.join("lib")).collect();
    if let Some(home) = std::env::var_os("HOME") {
        lib_dirs.push(PathBuf::from(home).join(".local/lib"));
    }
    lib_dirs.extend([PathBuf::from("/usr/local/lib"), PathBuf::from("/usr/lib")]);
    for lib in &lib_dirs {
        looked.push(format!("{}/python3*/{{site,dist}}-packages", lib.display()));
        package_dirs.extend(site_packages(lib).map(|d| d.join("onnxruntime")));
    }
    looked.push("the onnxruntime package of python3".to_string());
    if let Some(dir) = python_package_dir() {
        package_dirs.push(dir);
    }
    newest_library(&package_dirs).ok_or_else(|| {
        Error::invalid(format!(
            "the ONNX teacher needs the ONNX Runtime shared library (onnxruntime {}), but {ORT_DYLIB_PATH} is not set \
             and no onnxruntime Python package was found (looked in {})",
            required_version(),
            looked.join(", ")
        ))
        .with_hint(install_hint())
    })
}

fn library_from_env(value: Option<OsString>) -> Result<PathBuf> {
    let path = PathBuf::from(value.unwrap_or_default());
    if path.is_file() {
        return Ok(path);
    }
    let found = if path.is_dir() {
        "a directory"
    } else {
        "no such file"
    };
    Err(Error::invalid(format!(
        "{ORT_DYLIB_PATH} is {}, but that is {found}; the ONNX teacher needs the ONNX Runtime shared library \
         (onnxruntime {})",
        path.display(),
        required_version()
    ))
    .with_hint(format!(
        "point {ORT_DYLIB_PATH} at libonnxruntime.so.{ONNXRUNTIME_PIP_VERSION} (pip install onnxruntime=={ONNXRUNTIME_PIP_VERSION} \
         puts it in site-packages/onnxruntime/capi/), or unset it to use the installed onnxruntime Python package"
    )))
}

/// `DIR/python3*/site-packages` and `DIR/python3*/dist-packages` that exist, in name order.
fn site_packages(dir: &Path) -> impl Iterator<Item = PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut pythons: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path())
            .collect();
        pythons.sort();
        for python in pythons {
            for packages in ["site-packages", "dist-packages"] {
                let candidate = python.join(packages);
                if candidate.is_dir() {
                    found.push(candidate);
                }
            }
        }
    }
    found.into_iter()
}

/// The `onnxruntime` package directory `python3` would import, without importing it.
fn python_package_dir() -> Option<PathBuf> {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import importlib.util as u; s = u.find_spec('onnxruntime'); \
             print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let dir = text.trim();
    (output.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

/// The version in a library file name: `libonnxruntime.so.1.31.1` → `[1, 31, 1]`,
/// `libonnxruntime.1.31.1.dylib` → `[1, 31, 1]`; `None` for other files.
fn library_version(file_name: &str) -> Option<Vec<u32>> {
    let rest = file_name.strip_prefix("libonnxruntime.so.").or_else(|| {
        file_name
            .strip_prefix("libonnxruntime.")
            .and_then(|r| r.strip_suffix(".dylib"))
    })?;
    rest.split('.').map(|part| part.parse().ok()).collect()
}

/// The newest `libonnxruntime` in the `capi/` folders of `package_dirs` (first found on a tie).
fn newest_library(package_dirs: &[PathBuf]) -> Option<PathBuf> {
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for dir in package_dirs {
        let Ok(entries) = std::fs::read_dir(dir.join("capi")) else {
            continue;
        };
        let mut files: Vec<(Vec<u32>, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((library_version(&e.file_name().to_string_lossy())?, e.path())))
            .collect();
        files.sort();
        for (version, path) in files {
            if best.as_ref().is_none_or(|(b, _)| version > *b) {
                best = Some((version, path));
            }
        }
    }
    best.map(|(_, path)| path)
}

/// What a model's ONNX graph declares for one input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxPort {
    /// The name in the graph.
    pub name: String,
    /// Element type; `None` when the value is not a tensor.
    pub element: Option<TensorElementType>,
    /// Declared dimensions (-1 where dynamic); `None` when the graph declares no shape.
    pub dims: Option<Vec<i64>>,
}

impl OnnxPort {
    fn from_outlet(outlet: &Outlet) -> Self {
        let (element, dims) = match outlet.dtype() {
            ValueType::Tensor { ty, shape, .. } => (Some(*ty), Some(shape.to_vec())),
            _ => (None, None),
        };
        Self {
            name: outlet.name().to_string(),
            element,
            dims,
        }
    }

    fn describe(&self) -> String {
        let element = self
            .element
            .map_or("non-tensor".to_string(), |e| format!("{e:?}"));
        match &self.dims {
            Some(dims) => format!("{} ({element} {dims:?})", self.name),
            None => format!("{} ({element}, no declared shape)", self.name),
        }
    }
}

/// The inputs a cross-encoder graph takes, checked by [`check_signature`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnnxSignature {
    /// The graph takes `token_type_ids` (BERT does, XLM-R exports do not).
    pub token_type_ids: bool,
    /// The graph takes `position_ids` (some ModernBERT exports do): fed as transformers computes
    /// them (0.. per row; from `pad_token_id + 1` over real tokens for RoBERTa-style models).
    pub position_ids: bool,
    /// Labels per pair, when the graph declares a static second dimension for `logits`.
    pub num_labels: Option<usize>,
}

const CROSS_ENCODER_INPUTS: &str = "int64 input_ids and attention_mask [batch, sequence] (and token_type_ids where the model has token types, optionally position_ids)";
const CROSS_ENCODER_OUTPUT: &str = "a float logits output [batch, num_labels]";

/// Check that a graph's inputs and outputs are a cross-encoder's (see the module docs); `model`
/// names it in errors.
pub fn check_signature(
    model: &str,
    inputs: &[OnnxPort],
    outputs: &[OnnxPort],
) -> Result<OnnxSignature> {
    let listed = |ports: &[OnnxPort]| {
        ports
            .iter()
            .map(OnnxPort::describe)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let not_a_cross_encoder = |message: String| {
        Error::model(model, message).with_hint(
            "export a *ForSequenceClassification model (optimum-cli export onnx --task text-classification, \
             or torch.onnx.export with input_names [input_ids, attention_mask, token_type_ids] and output_names [logits])",
        )
    };
    for required in ["input_ids", "attention_mask"] {
        if !inputs.iter().any(|p| p.name == required) {
            return Err(not_a_cross_encoder(format!(
                "the ONNX model has no `{required}` input; a cross-encoder takes {CROSS_ENCODER_INPUTS}, found inputs {}",
                listed(inputs)
            )));
        }
    }
    let mut token_type_ids = false;
    let mut position_ids = false;
    for port in inputs {
        match port.name.as_str() {
            "input_ids" | "attention_mask" => {}
            "token_type_ids" => token_type_ids = true,
            "position_ids" => position_ids = true,
            other => {
                return Err(not_a_cross_encoder(format!(
                    "the ONNX model takes an input `{other}` that crossdistill cannot feed; a cross-encoder takes \
                     {CROSS_ENCODER_INPUTS}, found inputs {}",
                    listed(inputs)
                )))
            }
        }
        let rank_ok = port.dims.as_ref().is_none_or(|d| d.len() == 2);
        if port.element != Some(TensorElementType::Int64) || !rank_ok {
            return Err(not_a_cross_encoder(format!(
                "the ONNX input {} must be an int64 tensor [batch, sequence]",
                port.describe()
            )));
        }
    }
    let Some(logits) = outputs.iter().find(|p| p.name == "logits") else {
        return Err(not_a_cross_encoder(format!(
            "the ONNX model has no `logits` output; a cross-encoder has {CROSS_ENCODER_OUTPUT}, found outputs {}",
            listed(outputs)
        )));
    };
    if logits.element != Some(TensorElementType::Float32) {
        return Err(not_a_cross_encoder(format!(
            "the ONNX output {} must be float32; a cross-encoder has {CROSS_ENCODER_OUTPUT}",
            logits.describe()
        )));
    }
    let num_labels = match logits.dims.as_deref() {
        None => None,
        Some([_, labels]) => usize::try_from(*labels).ok().filter(|n| *n > 0),
        Some(_) => {
            return Err(not_a_cross_encoder(format!(
                "the ONNX output {} is not 2-D; a cross-encoder has {CROSS_ENCODER_OUTPUT}",
                logits.describe()
            )))
        }
    };
    Ok(OnnxSignature {
        token_type_ids,
        position_ids,
        num_labels,
    })
}

/// What config.json says that the ONNX teacher needs (it does not need the architecture to be
/// one crossdistill can train: any `*ForSequenceClassification` export runs).
#[derive(Debug, Clone, PartialEq)]
struct TeacherConfig {
    pad_token_id: u32,
    /// RoBERTa-style position ids (from `pad_token_id + 1` over real tokens).
    roberta_positions: bool,
    /// The longest input the position table allows, when config.json says.
    position_limit: Option<usize>,
    num_labels: usize,
    activation_fn: Option<String>,
}

impl TeacherConfig {
    fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
        let raw: Value = serde_json::from_str(&text)
            .map_err(|e| Error::input(path, Some(e.line()), format!("invalid JSON: {e}")))?;
        let count = |key: &str| -> Result<Option<usize>> {
            match raw.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                    Error::input(
                        path,
                        None,
                        format!("`{key}` must be a non-negative integer, found {v}"),
                    )
                }),
            }
        };
        let model_type = raw.get("model_type").and_then(Value::as_str).unwrap_or("");
        // RoBERTa-style position ids start at pad_token_id + 1 (and default pad is 1).
        let roberta = matches!(model_type, "xlm-roberta" | "roberta" | "camembert");
        let pad_token_id = count("pad_token_id")?.unwrap_or(usize::from(roberta));
        let position_limit = count("max_position_embeddings")?.map(|n| {
            if roberta {
                n.saturating_sub(pad_token_id + 1)
            } else {
                n
            }
        });
        let num_labels = match count("num_labels")? {
            Some(n) => n,
            None => raw
                .get("id2label")
                .and_then(Value::as_object)
                .map(|m| m.len())
                .filter(|n| *n > 0)
                .unwrap_or(1),
        };
        let activation_fn = raw
            .get("sentence_transformers")
            .and_then(|st| st.get("activation_fn"))
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Self {
            pad_token_id: u32::try_from(pad_token_id).map_err(|_| {
                Error::input(
                    path,
                    None,
                    format!("`pad_token_id` {pad_token_id} is too large"),
                )
            })?,
            roberta_positions: roberta,
            position_limit,
            num_labels,
            activation_fn,
        })
    }
}

/// The files the ONNX teacher reads.
struct OnnxFiles {
    onnx: PathBuf,
    config: PathBuf,
    tokenizer: PathBuf,
    /// The directory holding tokenizer_config.json, when there is one.
    tokenizer_config_dir: Option<PathBuf>,
    /// `activation_fn` from config_sentence_transformers.json (sentence-transformers 6).
    st_config: Option<PathBuf>,
}

fn locate(spec: &str, onnx_file: &str) -> Result<OnnxFiles> {
    let dir = Path::new(spec);
    if dir.is_dir() {
        let need = |file: &str, hint: &str| -> Result<PathBuf> {
            let path = dir.join(file);
            if path.is_file() {
                Ok(path)
            } else {
                Err(
                    Error::model(spec, format!("{} has no {file}", dir.display()))
                        .with_hint(hint.to_string()),
                )
            }
        };
        let onnx = need(
            onnx_file,
            "export the model to ONNX into that directory (optimum-cli export onnx --task text-classification, or \
             torch.onnx.export), or name the file with onnx_file / --onnx-file (relative to the model directory)",
        )?;
        let tokenizer_hint = "the ONNX teacher reads config.json and tokenizer.json from the model directory (save them with save_pretrained)";
        let optional = |file: &str| Some(dir.join(file)).filter(|p| p.is_file());
        return Ok(OnnxFiles {
            onnx,
            config: need("config.json", tokenizer_hint)?,
            tokenizer: need("tokenizer.json", tokenizer_hint)?,
            tokenizer_config_dir: optional("tokenizer_config.json").map(|_| dir.to_path_buf()),
            st_config: optional("config_sentence_transformers.json"),
        });
    }
    if dir.exists() || !looks_like_hub_id(spec) {
        return Err(Error::model(
            spec,
            format!("no such directory ({})", dir.display()),
        )
        .with_hint("give the directory holding the .onnx file, config.json and tokenizer.json, or a Hugging Face hub id"));
    }
    let get = |file: &str| hub::resolve_file(spec, RepoKind::Model, file);
    let optional =
        |file: &str| hub::cached_file(spec, RepoKind::Model, file).or_else(|| get(file).ok());
    let tokenizer_config = optional("tokenizer_config.json");
    Ok(OnnxFiles {
        onnx: get(onnx_file)?,
        config: get("config.json")?,
        tokenizer: get("tokenizer.json")?,
        tokenizer_config_dir: tokenizer_config.and_then(|p| p.parent().map(Path::to_path_buf)),
        st_config: optional("config_sentence_transformers.json"),
    })
}

fn st_activation(path: &Path) -> Option<String> {
    let value: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    value.get("activation_fn")?.as_str().map(str::to_string)
}

/// A cross-encoder teacher run by ONNX Runtime on the CPU.
pub struct OnnxTeacher {
    session: Session,
    tokenizer: PairTokenizer,
    signature: OnnxSignature,
    roberta_positions: bool,
    name: String,
    /// How logs and cards name the model (hub id or directory name, no local path).
    reference: String,
    onnx_path: PathBuf,
    batch_size: usize,
    threads: usize,
    activation: ScoreActivation,
    default_activation: ScoreActivation,
    fingerprint: String,
}

impl std::fmt::Debug for OnnxTeacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxTeacher")
            .field("model", &self.name)
            .field("onnx", &self.onnx_path)
            .field("max_length", &self.tokenizer.max_length())
            .field("batch_size", &self.batch_size)
            .field("threads", &self.threads)
            .field("activation", &self.activation)
            .finish()
    }
}

impl OnnxTeacher {
    /// Load `onnx_file` of `model`, a local directory or a hub id, with config.json and
    /// tokenizer.json from the same place. `onnx_file` is relative to the model (`model.onnx`,
    /// `onnx/model.onnx`); an absolute path is used as it is.
    ///
    /// - `max_length`: truncation length, special tokens included; default min(tokenizer_config
    ///   `model_max_length`, the position table of config.json).
    /// - `batch_size`: pairs per ONNX Runtime call.
    /// - `activation`: applied to the logits by [`Teacher::score`]; `None` = the model's own
    ///   (config.json `sentence_transformers.activation_fn`, else sigmoid for one label).
    /// - `threads`: ONNX Runtime intra-op threads; `None` = the available cores.
    ///
    /// Initialises ONNX Runtime on first use ([`init_onnxruntime`]). Errors: runtime missing or
    /// too old, missing files, a graph whose inputs or outputs are not a cross-encoder's.
    pub fn new(
        model: &str,
        onnx_file: &str,
        max_length: Option<usize>,
        batch_size: usize,
        activation: Option<ScoreActivation>,
        threads: Option<usize>,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::invalid(
                "teacher batch_size must be at least 1, found 0",
            ));
        }
        if threads == Some(0) {
            return Err(Error::invalid(
                "ONNX Runtime threads must be at least 1, found 0",
            ));
        }
        let files = locate(model, onnx_file)?;
        let config = TeacherConfig::from_file(&files.config)?;
        let max_length = resolve_max_length(
            model,
            &config,
            files.tokenizer_config_dir.as_deref(),
            max_length,
        )?;
        let tokenizer =
            PairTokenizer::from_file(&files.tokenizer, max_length, config.pad_token_id)?;
        let default_activation = config
            .activation_fn
            .clone()
            .or_else(|| files.st_config.as_deref().and_then(st_activation))
            .as_deref()
            .and_then(ScoreActivation::parse)
            .unwrap_or(if config.num_labels == 1 {
                ScoreActivation::Sigmoid
            } else {
                ScoreActivation::Identity
            });
        let activation = activation.unwrap_or(default_activation);
        let threads = threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });

        let (environment, _) = runtime()?;
        let ort_error = |action: &str, e: ort::Error| {
            Error::model(
                model,
                format!(
                    "ONNX Runtime could not {action} {}: {e}",
                    files.onnx.display()
                ),
            )
        };
        let session = Session::builder(&environment)
            .map_err(|e| ort_error("prepare a session for", e))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| ort_error("set the optimisation level for", e.into()))?
            .with_intra_threads(threads)
            .map_err(|e| ort_error("set the thread count for", e.into()))?
            .commit_from_file(&files.onnx)
            .map_err(|e| ort_error("load", e))?;
        let inputs: Vec<OnnxPort> = session.inputs().iter().map(OnnxPort::from_outlet).collect();
        let outputs: Vec<OnnxPort> = session
            .outputs()
            .iter()
            .map(OnnxPort::from_outlet)
            .collect();
        let signature = check_signature(model, &inputs, &outputs)?;

        let onnx_hash = file_hash(&files.onnx)?;
        let fingerprint = format!(
            "onnx|onnx={onnx_hash}|tokenizer={}|max_length={max_length}|activation={activation:?}",
            file_hash(&files.tokenizer)?,
        );
        Ok(Self {
            session,
            tokenizer,
            signature,
            roberta_positions: config.roberta_positions,
            name: model.to_string(),
            reference: crate::model::model_reference(
                files.config.parent().unwrap_or(Path::new(model)),
            ),
            onnx_path: files.onnx,
            batch_size,
            threads,
            activation,
            default_activation,
            fingerprint,
        })
    }

    /// The tokenizer (with this teacher's truncation length and pad id).
    pub fn tokenizer(&self) -> &PairTokenizer {
        &self.tokenizer
    }

    /// The ONNX file in use.
    pub fn onnx_path(&self) -> &Path {
        &self.onnx_path
    }

    /// The activation [`Teacher::score`] applies.
    pub fn activation(&self) -> ScoreActivation {
        self.activation
    }

    /// The model's own activation (config.json), whatever [`OnnxTeacher::new`] was given.
    pub fn default_activation(&self) -> ScoreActivation {
        self.default_activation
    }

    /// Pairs per ONNX Runtime call.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// ONNX Runtime intra-op threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// What the graph takes and gives.
    pub fn signature(&self) -> OnnxSignature {
        self.signature
    }

    /// Raw logits `[num_labels]` per pair, in input order, computed in length-sorted batches of
    /// [`OnnxTeacher::batch_size`]. `on_batch` is told how many pairs each finished batch held.
    pub fn predict_logits<A: AsRef<str> + Sync, B: AsRef<str> + Sync>(
        &mut self,
        pairs: &[(A, B)],
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        let encoded = self.tokenizer.encode_pairs(pairs)?;
        let lengths: Vec<usize> = encoded.iter().map(EncodedPair::len).collect();
        let order = length_sorted_order(&lengths);
        let mut out = vec![Vec::new(); pairs.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&EncodedPair> = chunk.iter().map(|&i| &encoded[i]).collect();
            let rows = self.run_batch(&batch)?;
            for (&i, row) in chunk.iter().zip(rows) {
                out[i] = row;
            }
            on_batch(chunk.len());
        }
        Ok(out)
    }

    /// Logits for one batch, rows in batch order.
    fn run_batch(&mut self, batch: &[&EncodedPair]) -> Result<Vec<Vec<f32>>> {
        let padded = self.tokenizer.pad(batch);
        let shape = [padded.batch_size, padded.seq_len];
        let to_i64 = |ids: &[u32]| ids.iter().map(|&id| i64::from(id)).collect::<Vec<i64>>();
        let ort_error = |action: &str, e: ort::Error| {
            Error::model(
                &self.name,
                format!(
                    "ONNX Runtime failed to {action} a batch of {} pairs of up to {} tokens: {e}",
                    padded.batch_size, padded.seq_len
                ),
            )
        };
        let mask: Vec<i64> = padded
            .attention_mask
            .iter()
            .map(|&m| i64::from(m > 0.5))
            .collect();
        let mut inputs = vec![
            (
                "input_ids",
                Tensor::from_array((shape, to_i64(&padded.input_ids)))
                    .map_err(|e| ort_error("prepare", e))?,
            ),
            (
                "attention_mask",
                Tensor::from_array((shape, mask)).map_err(|e| ort_error("prepare", e))?,
            ),
        ];
        if self.signature.token_type_ids {
            inputs.push((
                "token_type_ids",
                Tensor::from_array((shape, to_i64(&padded.type_ids)))
                    .map_err(|e| ort_error("prepare", e))?,
            ));
        }
        if self.signature.position_ids {
            let pad = i64::from(self.tokenizer.pad_id());
            let positions: Vec<i64> = padded
                .input_ids
                .chunks(padded.seq_len.max(1))
                .flat_map(|row| {
                    let mut count = 0i64;
                    row.iter()
                        .enumerate()
                        .map(|(i, &id)| match self.roberta_positions {
                            // transformers' create_position_ids_from_input_ids
                            true if i64::from(id) != pad => {
                                count += 1;
                                count + pad
                            }
                            true => pad,
                            false => i as i64,
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            inputs.push((
                "position_ids",
                Tensor::from_array((shape, positions)).map_err(|e| ort_error("prepare", e))?,
            ));
        }
        let outputs = self
            .session
            .run(inputs)
            .map_err(|e| ort_error("score", e))?;
        let logits = outputs
            .get("logits")
            .ok_or_else(|| Error::model(&self.name, "ONNX Runtime returned no `logits` output"))?;
        let (dims, values) = logits
            .try_extract_tensor::<f32>()
            .map_err(|e| ort_error("read the logits of", e))?;
        let labels = match **dims {
            [rows, labels] if rows as usize == padded.batch_size && labels > 0 => labels as usize,
            _ => {
                return Err(Error::model(
                    &self.name,
                    format!(
                        "the ONNX model returned logits of shape {:?} for a batch of {} pairs; a cross-encoder returns [{}, num_labels]",
                        &**dims, padded.batch_size, padded.batch_size
                    ),
                ))
            }
        };
        Ok(values.chunks(labels).map(<[f32]>::to_vec).collect())
    }
}

fn resolve_max_length(
    model: &str,
    config: &TeacherConfig,
    tokenizer_config_dir: Option<&Path>,
    asked: Option<usize>,
) -> Result<usize> {
    let tokenizer_max = tokenizer_config_dir.and_then(model_max_length);
    match (asked, config.position_limit) {
        (Some(n), Some(limit)) if n > limit => Err(Error::invalid(format!(
            "max_length {n} is longer than the model's position table allows ({limit})"
        ))
        .with_hint(format!("use max_length <= {limit}"))),
        (Some(n), _) => Ok(n),
        (None, Some(limit)) => Ok(tokenizer_max.map_or(limit, |t| t.min(limit))),
        (None, None) => tokenizer_max.ok_or_else(|| {
            Error::model(
                model,
                "cannot tell the model's longest input: config.json has no max_position_embeddings \
                 and tokenizer_config.json no model_max_length",
            )
            .with_hint("set max_length")
        }),
    }
}

impl Teacher for OnnxTeacher {
    fn score(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        let activation = self.activation;
        Ok(self
            .predict_logits(pairs, &mut |_| {})?
            .into_iter()
            .map(|row| activation.apply(row[0]))
            .collect())
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn describe(&self) -> String {
        let file = self
            .onnx_path
            .file_name()
            .map_or(String::new(), |f| f.to_string_lossy().into_owned());
        format!("{} {file} (onnx, {:?})", self.reference, self.activation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, element: TensorElementType, dims: Option<Vec<i64>>) -> OnnxPort {
        OnnxPort {
            name: name.into(),
            element: Some(element),
            dims,
        }
    }

    fn ids(name: &str) -> OnnxPort {
        port(name, TensorElementType::Int64, Some(vec![-1, -1]))
    }

    fn logits(dims: Option<Vec<i64>>) -> OnnxPort {
        port("logits", TensorElementType::Float32, dims)
    }

    #[test]
    fn bert_and_xlmr_signatures_are_accepted() {
        // The fixture exports' I/O (tests/fixtures/SOURCE.md, "model.onnx").
        let bert = [
            ids("input_ids"),
            ids("attention_mask"),
            ids("token_type_ids"),
        ];
        let signature = check_signature("m", &bert, &[logits(Some(vec![-1, 1]))]).unwrap();
        assert_eq!(
            signature,
            OnnxSignature {
                token_type_ids: true,
                position_ids: false,
                num_labels: Some(1)
            }
        );
        let xlmr = [ids("input_ids"), ids("attention_mask")];
        let signature = check_signature("m", &xlmr, &[logits(None)]).unwrap();
        assert_eq!(
            signature,
            OnnxSignature {
                token_type_ids: false,
                position_ids: false,
                num_labels: None
            }
        );
        // ModernBERT exports (optimum) may take position ids.
        let modernbert = [ids("input_ids"), ids("attention_mask"), ids("position_ids")];
        let signature = check_signature("m", &modernbert, &[logits(None)]).unwrap();
        assert_eq!(
            signature,
            OnnxSignature {
                token_type_ids: false,
                position_ids: true,
                num_labels: None
            }
        );
    }

    #[test]
    fn non_cross_encoder_signatures_are_refused_with_what_was_found() {
        let pair = [ids("input_ids"), ids("attention_mask")];
        let cases: Vec<(Vec<OnnxPort>, Vec<OnnxPort>, &str)> = vec![
            (
                vec![ids("tokens"), ids("attention_mask")],
                vec![logits(None)],
                "no `input_ids` input",
            ),
            (
                vec![ids("input_ids")],
                vec![logits(None)],
                "no `attention_mask` input",
            ),
            (
                vec![ids("input_ids"), ids("attention_mask"), ids("pixel_values")],
                vec![logits(None)],
                "input `pixel_values` that crossdistill cannot feed",
            ),
            (
                vec![
                    port("input_ids", TensorElementType::Int32, Some(vec![-1, -1])),
                    ids("attention_mask"),
                ],
                vec![logits(None)],
                "must be an int64 tensor",
            ),
            (
                pair.to_vec(),
                vec![port(
                    "last_hidden_state",
                    TensorElementType::Float32,
                    Some(vec![-1, -1, 32]),
                )],
                "no `logits` output; a cross-encoder has a float logits output [batch, num_labels], found outputs last_hidden_state (Float32 [-1, -1, 32])",
            ),
            (
                pair.to_vec(),
                vec![logits(Some(vec![-1, -1, 1]))],
                "logits (Float32 [-1, -1, 1]) is not 2-D",
            ),
            (
                pair.to_vec(),
                vec![port("logits", TensorElementType::Int64, Some(vec![-1, 1]))],
                "must be float32",
            ),
        ];
        for (inputs, outputs, message) in cases {
            let err = check_signature("my-model", &inputs, &outputs)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("model my-model: ") && err.contains(message),
                "{err}"
            );
            assert!(
                err.contains("hint: export a *ForSequenceClassification"),
                "{err}"
            );
        }
    }

    #[test]
    fn library_versions_come_from_file_names() {
        assert_eq!(
            library_version("libonnxruntime.so.1.31.1"),
            Some(vec![1, 31, 1])
        );
        assert_eq!(
            library_version("libonnxruntime.1.20.0.dylib"),
            Some(vec![1, 20, 0])
        );
        assert_eq!(library_version("libonnxruntime_providers_shared.so"), None);
        assert_eq!(library_version("libonnxruntime.so"), None);
    }

    #[test]
    fn the_newest_library_wins_across_packages() {
        let root = tempfile::tempdir().unwrap();
        let make = |package: &str, files: &[&str]| {
            let capi = root.path().join(package).join("capi");
            std::fs::create_dir_all(&capi).unwrap();
            for file in files {
                std::fs::write(capi.join(file), b"").unwrap();
            }
            root.path().join(package)
        };
        let old = make(
            "old",
            &[
                "libonnxruntime.so.1.20.0",
                "libonnxruntime_providers_shared.so",
            ],
        );
        let new = make("new", &["libonnxruntime.so.1.31.1"]);
        let missing = root.path().join("missing");
        assert_eq!(
            newest_library(&[missing.clone(), old.clone(), new.clone()]),
            Some(new.join("capi/libonnxruntime.so.1.31.1"))
        );
        assert_eq!(
            newest_library(std::slice::from_ref(&old)),
            Some(old.join("capi/libonnxruntime.so.1.20.0"))
        );
        assert_eq!(newest_library(&[missing]), None);
    }

    #[test]
    fn site_packages_are_found_under_python_dirs() {
        let root = tempfile::tempdir().unwrap();
        let lib = root.path().join("lib");
        std::fs::create_dir_all(lib.join("python3.11/site-packages")).unwrap();
        std::fs::create_dir_all(lib.join("python3.12/dist-packages")).unwrap();
        std::fs::create_dir_all(lib.join("perl5")).unwrap();
        let found: Vec<PathBuf> = site_packages(&lib).collect();
        assert_eq!(
            found,
            vec![
                lib.join("python3.11/site-packages"),
                lib.join("python3.12/dist-packages")
            ]
        );
    }

    #[test]
    fn ort_dylib_path_must_name_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = library_from_env(Some(dir.path().join("nope.so").into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.so, but that is no such file"), "{err}");
        assert!(err.contains("pip install onnxruntime==1.31.1"), "{err}");
        let err = library_from_env(Some(dir.path().into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("but that is a directory"), "{err}");
        let file = dir.path().join("libonnxruntime.so.1.31.1");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(library_from_env(Some(file.clone().into())).unwrap(), file);
    }

    #[test]
    fn an_old_runtime_is_named_with_both_versions() {
        // The error ort reports when the library's minor version is below its API version.
        let err = load_error(ort::LoadDynamicError::BadVersion {
            version_str: "1.20.0".into(),
            path: PathBuf::from("/x/libonnxruntime.so.1.20.0"),
        })
        .to_string();
        assert!(
            err.contains("/x/libonnxruntime.so.1.20.0 is version 1.20.0, but crossdistill needs onnxruntime 1.31 or newer"),
            "{err}"
        );
        assert!(err.contains("pip install onnxruntime==1.31.1"), "{err}");
    }

    #[test]
    fn max_length_is_the_smaller_of_tokenizer_and_positions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"model_max_length": 512}"#,
        )
        .unwrap();
        let config = |limit| TeacherConfig {
            pad_token_id: 0,
            roberta_positions: false,
            position_limit: limit,
            num_labels: 1,
            activation_fn: None,
        };
        let resolve =
            |limit, dir: Option<&Path>, asked| resolve_max_length("m", &config(limit), dir, asked);
        assert_eq!(resolve(Some(128), Some(dir.path()), None).unwrap(), 128);
        assert_eq!(resolve(Some(1024), Some(dir.path()), None).unwrap(), 512);
        assert_eq!(resolve(None, Some(dir.path()), None).unwrap(), 512);
        assert_eq!(resolve(Some(128), None, Some(64)).unwrap(), 64);
        let err = resolve(Some(128), None, Some(256)).unwrap_err().to_string();
        assert!(
            err.contains("max_length 256 is longer than the model's position table allows (128)"),
            "{err}"
        );
        assert!(resolve(None, None, None).is_err());
    }

    #[test]
    fn xlmr_config_reserves_pad_plus_one_positions() {
        // tests/fixtures/tiny-xlmr-ce/config.json: max_position_embeddings 130, pad_token_id 1.
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let xlmr = TeacherConfig::from_file(&fixture.join("tiny-xlmr-ce/config.json")).unwrap();
        assert_eq!((xlmr.pad_token_id, xlmr.position_limit), (1, Some(128)));
        let bert = TeacherConfig::from_file(&fixture.join("tiny-bert-ce/config.json")).unwrap();
        assert_eq!((bert.pad_token_id, bert.position_limit), (0, Some(128)));
        assert_eq!(
            bert.activation_fn.as_deref(),
            Some("torch.nn.modules.activation.Sigmoid")
        );
    }
}
