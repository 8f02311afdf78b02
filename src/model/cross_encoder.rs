//! [`CrossEncoder`]: a trainable encoder with its ranking head and tokenizer, loaded from and
//! saved to Hugging Face directories.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};

use super::batch_tensors::BatchTensors;
use super::config::EncoderConfig;
use super::encoder::Encoder;
use super::mode::Mode;
use super::ops::Dropout;
use super::precision::Precision;
use super::source::ModelFiles;
use super::weights::{LoadReport, Params};
use crate::error::{Error, Result};
use crate::fsutil::{write_atomic, StagedDir};
use crate::tokenize::{in_length_sorted_batches, EncodedPair, PairTokenizer};

/// How scores are squashed after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreActivation {
    /// Raw logits.
    Identity,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
}

impl ScoreActivation {
    /// The torch full name sentence-transformers writes into config.json.
    pub fn torch_name(self) -> &'static str {
        match self {
            ScoreActivation::Identity => "torch.nn.modules.linear.Identity",
            ScoreActivation::Sigmoid => "torch.nn.modules.activation.Sigmoid",
        }
    }

    /// Read a torch full name or a short name (`identity`, `sigmoid`).
    pub fn parse(name: &str) -> Option<Self> {
        let short = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
        match short.as_str() {
            "identity" => Some(ScoreActivation::Identity),
            "sigmoid" => Some(ScoreActivation::Sigmoid),
            _ => None,
        }
    }

    /// Apply to a score.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            ScoreActivation::Identity => x,
            ScoreActivation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        }
    }
}

/// Options for [`CrossEncoder::load`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Where the parameters live.
    pub device: Device,
    /// Truncation length; default min(tokenizer `model_max_length`, the position table).
    pub max_length: Option<usize>,
    /// Outputs of the head; a checkpoint with another count gets a fresh head.
    pub num_labels: Option<usize>,
    /// Keep only these encoder layers, in this order (layer-pruned students).
    pub layers: Option<Vec<usize>>,
    /// Seed of fresh head weights.
    pub seed: u64,
    /// The precision of inference ([`CrossEncoder::forward_no_graph`], `predict`, embeddings):
    /// not f32, the inference forward runs on a copy of the parameters cast once at load, which
    /// later training steps do not update.
    pub dtype: Precision,
    /// The precision of the training forward ([`CrossEncoder::forward`]): not f32, each forward
    /// casts the f32 parameters (differentiably) and upcasts the logits to f32 (mixed precision:
    /// f32 master weights, gradients, optimizer state and loss).
    pub train_precision: Precision,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            max_length: None,
            num_labels: None,
            layers: None,
            seed: 42,
            dtype: Precision::F32,
            train_precision: Precision::F32,
        }
    }
}

/// A cross-encoder: encoder + ranking head + tokenizer.
pub struct CrossEncoder {
    config: EncoderConfig,
    params: Params,
    /// Bound to the `Var`s: forward passes record the backprop graph (training).
    encoder: Encoder,
    /// Bound to detached views of the same storage: no graph (predict, embeddings).
    inference: Encoder,
    tokenizer: PairTokenizer,
    device: Device,
    files: ModelFiles,
    load_report: LoadReport,
    /// Precision of `inference`.
    dtype: Precision,
    /// Precision of the training forward.
    train_precision: Precision,
}

impl std::fmt::Debug for CrossEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrossEncoder")
            .field("model", &self.files.name)
            .field("architecture", &self.config.architecture)
            .field("layers", &self.config.num_hidden_layers)
            .field("num_labels", &self.config.num_labels)
            .finish()
    }
}

/// Device from a recipe/CLI string: `cpu`, `cuda`, `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda_device(0),
        other => match other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(ordinal) => cuda_device(ordinal),
            None => Err(Error::invalid(format!(
                "unknown device `{other}`; expected cpu, cuda or cuda:N"
            ))),
        },
    }
}

fn cuda_device(ordinal: usize) -> Result<Device> {
    if !candle_core::utils::cuda_is_available() {
        return Err(Error::invalid(format!(
            "device cuda:{ordinal} asked for, but this crossdistill was built without CUDA"
        ))
        .with_hint("rebuild with `cargo build --release --features cuda` on a machine with the CUDA toolkit, or use device = \"cpu\""));
    }
    Ok(Device::new_cuda(ordinal)?)
}

impl CrossEncoder {
    /// Load a model from a local directory or a hub id (`spec`), resolving relative paths
    /// against `base_dir`.
    pub fn load(spec: &str, base_dir: Option<&Path>, options: &LoadOptions) -> Result<Self> {
        let files = ModelFiles::locate(spec, base_dir)?;
        Self::from_files(files, options)
    }

    /// Load from located files.
    pub fn from_files(files: ModelFiles, options: &LoadOptions) -> Result<Self> {
        let mut config = EncoderConfig::from_file(&files.config)?;
        if let Some(layers) = &options.layers {
            validate_layers(layers, config.num_hidden_layers, &files.name)?;
            config.keep_layers(layers);
        }
        let mut head_changed = false;
        if let Some(n) = options.num_labels {
            if n == 0 {
                return Err(Error::invalid("num_labels must be at least 1, found 0"));
            }
            head_changed = n != config.num_labels;
            config.num_labels = n;
        }
        let weight_paths: Vec<&Path> = files.weights.iter().map(PathBuf::as_path).collect();
        // A head with another number of labels cannot be reused: keep the encoder, start a
        // fresh head.
        let (params, report) = Params::load(
            &config,
            &weight_paths,
            options.layers.as_deref(),
            head_changed,
            options.seed,
            &options.device,
            &files.name,
        )?;
        let max_length = resolve_max_length(&config, &files, options.max_length)?;
        let tokenizer =
            PairTokenizer::from_file(&files.tokenizer, max_length, config.pad_token_id)?;
        let tokenizer_vocab = tokenizer.inner().get_vocab_size(true);
        if tokenizer_vocab > config.vocab_size {
            return Err(Error::model(
                &files.name,
                format!(
                    "the tokenizer has {tokenizer_vocab} tokens but the model's embedding table has {} rows",
                    config.vocab_size
                ),
            )
            .with_hint("tokenizer.json and the weights must come from the same model (a trimmed vocabulary needs its trimmed tokenizer)"));
        }
        let encoder = Encoder::bind(&config, &params, true)?;
        let inference = Encoder::bind_as(&config, &params, false, options.dtype.dtype())?;
        Ok(Self {
            config,
            params,
            encoder,
            inference,
            tokenizer,
            device: options.device.clone(),
            files,
            load_report: report,
            dtype: options.dtype,
            train_precision: options.train_precision,
        })
    }

    /// The encoder configuration.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// The tokenizer (with this model's truncation length).
    pub fn tokenizer(&self) -> &PairTokenizer {
        &self.tokenizer
    }

    /// Where the parameters live.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The trainable parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The trainable variables.
    pub fn vars(&self) -> &[Var] {
        self.params.vars()
    }

    /// What loading initialised fresh and what it ignored.
    pub fn load_report(&self) -> &LoadReport {
        &self.load_report
    }

    /// The files the model came from.
    pub fn files(&self) -> &ModelFiles {
        &self.files
    }

    /// Outputs of the head.
    pub fn num_labels(&self) -> usize {
        self.config.num_labels
    }

    /// The precision of inference (`predict`, embeddings); scores come out in f32 whatever it is.
    pub fn dtype(&self) -> Precision {
        self.dtype
    }

    /// The precision of the training forward.
    pub fn train_precision(&self) -> Precision {
        self.train_precision
    }

    /// The activation `predict` applies by default: the config's `activation_fn`, else sigmoid
    /// for one label and identity for several (as sentence-transformers).
    pub fn default_activation(&self) -> ScoreActivation {
        self.config
            .activation_fn
            .as_deref()
            .and_then(ScoreActivation::parse)
            .unwrap_or(if self.config.num_labels == 1 {
                ScoreActivation::Sigmoid
            } else {
                ScoreActivation::Identity
            })
    }

    /// Check token ids against the embedding table (a tokenizer that does not fit the model).
    pub fn check_ids(&self, encoded: &[&EncodedPair]) -> Result<()> {
        let vocab = self.config.vocab_size as u32;
        for pair in encoded {
            if let Some(bad) = pair.input_ids.iter().find(|&&id| id >= vocab) {
                return Err(Error::model(
                    &self.files.name,
                    format!("the tokenizer produced token id {bad}, but the embedding table has {vocab} rows"),
                )
                .with_hint("use the tokenizer that belongs to these weights"));
            }
        }
        Ok(())
    }

    /// Device tensors for encoded pairs (padded to the longest).
    pub fn batch_tensors(&self, encoded: &[&EncodedPair]) -> Result<BatchTensors> {
        self.check_ids(encoded)?;
        let padded = self.tokenizer.pad(encoded);
        BatchTensors::new(&padded, &self.config, &self.device)
    }

    /// Logits `(B, num_labels)` in f32 for a batch; differentiable (records the backprop
    /// graph). With a reduced training precision the parameters are cast for this forward and
    /// the logits upcast to f32 (mixed precision).
    pub fn forward(&self, batch: &BatchTensors, mode: &mut Mode) -> Result<Tensor> {
        if !self.train_precision.is_f32() {
            let dtype = self.train_precision.dtype();
            let encoder = Encoder::bind_as(&self.config, &self.params, true, dtype)?;
            let hidden = encoder.hidden_states(&self.config, batch, mode, None)?;
            let logits = encoder.head(&self.config, &hidden, batch, mode)?;
            return Ok(logits.to_dtype(DType::F32)?);
        }
        let hidden = self
            .encoder
            .hidden_states(&self.config, batch, mode, None)?;
        self.encoder.head(&self.config, &hidden, batch, mode)
    }

    /// Logits `(B, num_labels)` for a batch without dropout and without recording the backprop
    /// graph: the same numbers as `forward(batch, &mut Mode::Eval)`, with each intermediate
    /// activation freed as soon as it is used. [`CrossEncoder::predict_logits`],
    /// [`CrossEncoder::embed`] and [`CrossEncoder::all_hidden_states`] run this way.
    ///
    /// The logits come out in f32 whatever the inference precision (upcast before any
    /// activation, as sentence-transformers 6 does).
    pub fn forward_no_graph(&self, batch: &BatchTensors) -> Result<Tensor> {
        let hidden = self
            .inference
            .hidden_states(&self.config, batch, &mut Mode::Eval, None)?;
        Ok(self
            .inference
            .head(&self.config, &hidden, batch, &mut Mode::Eval)?
            .to_dtype(DType::F32)?)
    }

    /// Logits for encoded pairs, with dropout when `dropout` is given; differentiable.
    pub fn forward_encoded(
        &self,
        encoded: &[&EncodedPair],
        dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let batch = self.batch_tensors(encoded)?;
        let mut mode = match dropout {
            Some(stream) => Mode::Train(stream),
            None => Mode::Eval,
        };
        self.forward(&batch, &mut mode)
    }

    /// Hidden states after the embeddings and after every layer (for layer-by-layer checks and
    /// pooling), in f32; no backprop graph.
    pub fn all_hidden_states(&self, batch: &BatchTensors) -> Result<Vec<Tensor>> {
        let mut out = Vec::new();
        self.inference
            .hidden_states(&self.config, batch, &mut Mode::Eval, Some(&mut out))?;
        out.iter()
            .map(|state| Ok(state.to_dtype(DType::F32)?))
            .collect()
    }

    /// The last layer's hidden states `(B, L, H)` in f32; no backprop graph.
    pub fn last_hidden_state(&self, batch: &BatchTensors) -> Result<Tensor> {
        Ok(self
            .inference
            .hidden_states(&self.config, batch, &mut Mode::Eval, None)?
            .to_dtype(DType::F32)?)
    }

    /// Mean-pooled embeddings `(B, H)` of single texts (bi-encoder use of the encoder); no
    /// backprop graph.
    pub fn embed(&self, batch: &BatchTensors) -> Result<Tensor> {
        let hidden = self
            .inference
            .hidden_states(&self.config, batch, &mut Mode::Eval, None)?;
        Encoder::mean_pool(&hidden, &batch.attention_mask)
    }

    /// Raw logits for pairs, in input order, computed in length-sorted batches of
    /// `batch_size`. `on_batch` is told how many pairs each finished batch held.
    pub fn predict_logits<A: AsRef<str> + Sync, B: AsRef<str> + Sync>(
        &self,
        pairs: &[(A, B)],
        batch_size: usize,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        if batch_size == 0 {
            return Err(Error::invalid("batch size must be at least 1, found 0"));
        }
        let encoded = self.tokenizer.encode_pairs(pairs)?;
        in_length_sorted_batches(&encoded, batch_size, on_batch, |batch| {
            Ok(self
                .forward_no_graph(&self.batch_tensors(batch)?)?
                .to_device(&Device::Cpu)?
                .to_vec2::<f32>()?)
        })
    }

    /// Scores for pairs (first logit, after `activation`), in input order.
    pub fn predict<A: AsRef<str> + Sync, B: AsRef<str> + Sync>(
        &self,
        pairs: &[(A, B)],
        batch_size: usize,
        activation: ScoreActivation,
    ) -> Result<Vec<f32>> {
        Ok(self
            .predict_logits(pairs, batch_size, &mut |_| {})?
            .into_iter()
            .map(|row| activation.apply(row[0]))
            .collect())
    }

    /// Save as a `*ForSequenceClassification` checkpoint that transformers and
    /// sentence-transformers load unchanged. The directory is replaced atomically.
    pub fn save(&self, dir: &Path, activation: ScoreActivation) -> Result<()> {
        let staged = StagedDir::new(dir)?;
        self.write_to(staged.path(), activation)?;
        staged.commit()
    }

    /// Write the checkpoint files into an existing directory.
    pub fn write_to(&self, dir: &Path, activation: ScoreActivation) -> Result<()> {
        let config = self.config.to_classification_json(activation.torch_name());
        write_atomic(
            &dir.join("config.json"),
            serde_json::to_string_pretty(&config)?.as_bytes(),
        )?;
        let tensors = self.params.to_named_tensors()?;
        let weights = dir.join("model.safetensors");
        crate::fsutil::save_safetensors(&tensors.into_iter().collect(), &weights)?;
        for side in &self.files.tokenizer_side_files {
            let name = side.file_name().unwrap_or_default();
            std::fs::copy(side, dir.join(name)).map_err(|e| Error::io("cannot copy", side, e))?;
        }
        std::fs::copy(&self.files.tokenizer, dir.join("tokenizer.json"))
            .map_err(|e| Error::io("cannot copy", &self.files.tokenizer, e))?;
        write_tokenizer_config(dir, &self.files, self.tokenizer.max_length())?;
        Ok(())
    }
}

/// tokenizer_config.json with `model_max_length` = our truncation length, so that
/// sentence-transformers truncates exactly as we trained.
fn write_tokenizer_config(dir: &Path, files: &ModelFiles, max_length: usize) -> Result<()> {
    let mut value: serde_json::Value = files
        .tokenizer_config
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(object) = value.as_object_mut() {
        object.insert("model_max_length".into(), max_length.into());
    }
    write_atomic(
        &dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&value)?.as_bytes(),
    )
}

fn validate_layers(layers: &[usize], available: usize, model: &str) -> Result<()> {
    if layers.is_empty() {
        return Err(Error::invalid(
            "`layers` must name at least one encoder layer, found []",
        ));
    }
    if let Some(bad) = layers.iter().find(|&&l| l >= available) {
        return Err(Error::model(
            model,
            format!(
                "layer {bad} asked for, but the model has layers 0..{}",
                available.saturating_sub(1)
            ),
        ));
    }
    let mut sorted = layers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != layers.len() {
        return Err(Error::invalid(format!(
            "`layers` names a layer twice: {layers:?}"
        )));
    }
    Ok(())
}

fn resolve_max_length(
    config: &EncoderConfig,
    files: &ModelFiles,
    asked: Option<usize>,
) -> Result<usize> {
    let limit = config.max_input_length();
    let tokenizer_max = files
        .tokenizer_config
        .as_ref()
        .and_then(|p| p.parent())
        .and_then(crate::tokenize::model_max_length);
    match asked {
        Some(n) if n > limit => Err(Error::invalid(format!(
            "max_length {n} is longer than the model's position table allows ({limit})"
        ))
        .with_hint(format!("use max_length <= {limit}"))),
        Some(n) => Ok(n),
        None => Ok(tokenizer_max.map_or(limit, |t| t.min(limit))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str) -> CrossEncoder {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        CrossEncoder::load(dir.to_str().unwrap(), None, &LoadOptions::default()).unwrap()
    }

    const PAIRS: [(&str, &str); 3] = [
        ("what is python", "Python is a programming language."),
        (
            "capital of france",
            "Paris is the capital and largest city of France, on the Seine.",
        ),
        ("ok", "fine"),
    ];

    fn batch(model: &CrossEncoder) -> BatchTensors {
        let encoded = model.tokenizer().encode_pairs(&PAIRS).unwrap();
        let refs: Vec<&EncodedPair> = encoded.iter().collect();
        model.batch_tensors(&refs).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn graph_free_outputs_equal_the_training_forward() {
        // Reference: the graph-recording forward of the same model (itself pinned to torch by
        // tests/integration/model_parity.rs); the two share kernels, so the numbers are equal.
        for name in ["tiny-bert-ce", "tiny-xlmr-ce"] {
            let model = load(name);
            let batch = batch(&model);
            let trained = model.forward(&batch, &mut Mode::Eval).unwrap();
            let free = model.forward_no_graph(&batch).unwrap();
            assert_eq!(values(&trained), values(&free), "{name}: logits");
            let hidden = model
                .encoder
                .hidden_states(&model.config, &batch, &mut Mode::Eval, None)
                .unwrap();
            assert_eq!(
                values(&Encoder::mean_pool(&hidden, &batch.attention_mask).unwrap()),
                values(&model.embed(&batch).unwrap()),
                "{name}: embeddings"
            );
            assert_eq!(
                values(&hidden),
                values(&model.last_hidden_state(&batch).unwrap()),
                "{name}: hidden states"
            );
            // predict pads each length-sorted batch to its own longest pair: equal up to
            // float rounding.
            let scores = model.predict(&PAIRS, 2, ScoreActivation::Identity).unwrap();
            for (s, t) in scores.iter().zip(values(&trained.narrow(1, 0, 1).unwrap())) {
                assert!((s - t).abs() <= 1e-6, "{name}: predict {s} vs forward {t}");
            }
        }
    }

    fn load_in(name: &str, options: LoadOptions) -> CrossEncoder {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        CrossEncoder::load(dir.to_str().unwrap(), None, &options).unwrap()
    }

    const ARCHITECTURES: [&str; 5] = [
        "tiny-bert-ce",
        "tiny-xlmr-ce",
        "tiny-electra-ce",
        "tiny-modernbert-cls-ce",
        "tiny-modernbert-mean-ce",
    ];

    /// max |a − b| / max |a| over every logit.
    fn relative_error(reference: &[Vec<f32>], other: &[Vec<f32>]) -> f32 {
        let scale = reference
            .iter()
            .flatten()
            .fold(0f32, |m, v| m.max(v.abs()))
            .max(1e-6);
        reference
            .iter()
            .flatten()
            .zip(other.iter().flatten())
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
            / scale
    }

    #[test]
    fn reduced_precision_inference_matches_f32_within_tolerance() {
        // Reference: the f32 forward (pinned to torch by tests/integration/model_parity.rs).
        // The same forward in bf16 (8 bits of mantissa) and f16 (11 bits) through the composed
        // ops, LayerNorm and softmax in f32 inside, logits upcast to f32. Measured maxima on
        // these fixtures: bf16 3.7e-2, f16 7.0e-3 of the largest |logit| (ModernBERT mean pooling).
        for name in ARCHITECTURES {
            let reference = load(name);
            let expected = reference.predict_logits(&PAIRS, 2, &mut |_| {}).unwrap();
            for (precision, tolerance) in [(Precision::Bf16, 5e-2), (Precision::F16, 1e-2)] {
                let model = load_in(
                    name,
                    LoadOptions {
                        dtype: precision,
                        ..LoadOptions::default()
                    },
                );
                assert_eq!(model.dtype(), precision);
                let logits = model.predict_logits(&PAIRS, 2, &mut |_| {}).unwrap();
                let error = relative_error(&expected, &logits);
                eprintln!("{name} {precision}: relative error {error:.2e}");
                assert!(
                    error <= tolerance,
                    "{name} {precision}: relative error {error} > {tolerance}"
                );
                assert_ne!(expected, logits, "{name} {precision}: ran in f32");
                // Embeddings and hidden states come out in f32 too.
                let batch = batch(&model);
                assert_eq!(model.embed(&batch).unwrap().dtype(), DType::F32);
                assert_eq!(model.last_hidden_state(&batch).unwrap().dtype(), DType::F32);
            }
        }
    }

    #[test]
    fn graph_free_forward_records_no_graph() {
        let model = load("tiny-bert-ce");
        let batch = batch(&model);
        let trained = model.forward(&batch, &mut Mode::Eval).unwrap();
        let free = model.forward_no_graph(&batch).unwrap();
        assert!(trained.track_op());
        assert!(!free.track_op());
        // backward through the graph reaches every parameter; through the graph-free output,
        // none.
        let with_graph = trained.sum_all().unwrap().backward().unwrap();
        let without = free.sum_all().unwrap().backward().unwrap();
        for var in model.vars() {
            assert!(with_graph.get(var.as_tensor()).is_some());
            assert!(without.get(var.as_tensor()).is_none());
        }
        for state in model.all_hidden_states(&batch).unwrap() {
            assert!(!state.track_op());
        }
        assert!(!model.embed(&batch).unwrap().track_op());
    }

    #[test]
    fn graph_free_forward_follows_parameter_updates() {
        // Var::set writes in place, so the detached views see optimizer steps.
        let model = load("tiny-bert-ce");
        let batch = batch(&model);
        let before = values(&model.forward_no_graph(&batch).unwrap());
        for var in model.vars() {
            var.set(&(var.as_tensor() * 1.01).unwrap()).unwrap();
        }
        let after = values(&model.forward_no_graph(&batch).unwrap());
        let trained = values(&model.forward(&batch, &mut Mode::Eval).unwrap());
        assert_ne!(before, after);
        assert_eq!(after, trained);
    }
}
