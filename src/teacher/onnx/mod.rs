//! The ONNX teacher: a cross-encoder exported to ONNX, run by ONNX Runtime through `ort`.
//!
//! ONNX Runtime is loaded at run time (`ort`'s `load-dynamic`), once per process, from
//! `ORT_DYLIB_PATH`, else from an installed `onnxruntime` Python package (`pip install
//! onnxruntime==1.31.1`; see `runtime.rs`). The session runs on the CPU with every graph
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
//!
//! Three parts: `runtime` finds and loads ONNX Runtime, `signature` checks the graph's inputs
//! and outputs, `model_files` locates the files and reads config.json; this file is the teacher.

mod device;
mod model_files;
mod runtime;
mod signature;

use std::path::{Path, PathBuf};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;

pub use self::device::OnnxDevice;
use self::model_files::{locate, resolve_max_length, st_activation, TeacherConfig};
use self::runtime::runtime;
pub use self::signature::OnnxSignature;
use self::signature::{check_signature, OnnxPort};
use super::Teacher;
use crate::error::{Error, Result};
use crate::fingerprint::file_hash;
use crate::model::ScoreActivation;
use crate::tokenize::{in_length_sorted_batches, EncodedPair, PairTokenizer};

/// A cross-encoder teacher run by ONNX Runtime (on the CPU, or on a GPU through the CUDA
/// execution provider: [`OnnxDevice`]).
pub struct OnnxTeacher {
    session: Session,
    tokenizer: PairTokenizer,
    signature: OnnxSignature,
    roberta_positions: bool,
    name: String,
    /// How logs and cards name the model (hub id or directory name, no local path).
    reference: String,
    onnx_path: PathBuf,
    /// The ONNX Runtime library the session runs on.
    runtime_library: PathBuf,
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
    /// Initialises ONNX Runtime on first use (see `runtime.rs`). Errors: runtime missing or
    /// too old, missing files, a graph whose inputs or outputs are not a cross-encoder's.
    pub fn new(
        model: &str,
        onnx_file: &str,
        max_length: Option<usize>,
        batch_size: usize,
        activation: Option<ScoreActivation>,
        threads: Option<usize>,
    ) -> Result<Self> {
        Self::new_on(
            model,
            onnx_file,
            max_length,
            batch_size,
            activation,
            threads,
            OnnxDevice::Cpu,
        )
    }

    /// [`OnnxTeacher::new`] on `device`: with [`OnnxDevice::Cuda`], ONNX Runtime's CUDA
    /// execution provider on that GPU. A provider that cannot be registered (a CPU-only
    /// onnxruntime library) is an error naming `onnxruntime-gpu`, never a silent fallback to the
    /// CPU. The device is not part of the fingerprint.
    pub fn new_on(
        model: &str,
        onnx_file: &str,
        max_length: Option<usize>,
        batch_size: usize,
        activation: Option<ScoreActivation>,
        threads: Option<usize>,
        device: OnnxDevice,
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

        let (environment, runtime_library) = runtime()?;
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
            .with_execution_providers(device.execution_providers())
            .map_err(|e| device.registration_error(model, &e.into()))?
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
            runtime_library,
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

    /// The ONNX Runtime library in use (found as the module docs say).
    pub fn runtime_library(&self) -> &Path {
        &self.runtime_library
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
        in_length_sorted_batches(&encoded, self.batch_size, on_batch, |batch| {
            self.run_batch(batch)
        })
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
