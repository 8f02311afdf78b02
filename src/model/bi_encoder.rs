//! [`BiEncoder`]: a sentence-transformers embedding model (all-MiniLM-L6-v2, multilingual-e5)
//! run by crossdistill's own encoder, for hard-negative mining and retrieval.
//!
//! A sentence-transformers embedding model is a Hugging Face encoder directory (no ranking head)
//! plus a few side files, which are read when present:
//!
//! * `modules.json` names the `Pooling` module's folder (default `1_Pooling`), whose
//!   `config.json` picks the pooling: `pooling_mode_cls_token`, `pooling_mode_max_tokens`,
//!   `pooling_mode_mean_tokens`, `pooling_mode_mean_sqrt_len_tokens` (several modes are
//!   concatenated in that order, as sentence-transformers does). Without it: mean pooling.
//! * `sentence_bert_config.json` gives `max_seq_length` (special tokens included).
//! * `config_sentence_transformers.json` gives the named `prompts` (e5-style
//!   `{"query": "query: ", "document": "passage: "}`).
//!
//! The encoder is loaded through [`CrossEncoder`]; a checkpoint without a head gets a fresh head
//! that the embedder never uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};
use serde_json::Value;

use super::cross_encoder::{CrossEncoder, LoadOptions};
use super::source::{looks_like_hub_id, ModelFiles};
use crate::error::{Error, Result};
use crate::hub::{self, RepoKind};
use crate::tokenize::{length_sorted_order, EncodedPair};

/// Texts tokenised at once by [`BiEncoder::encode`]: bounds the token ids held in memory while
/// leaving enough texts to length-sort into well-filled batches.
const TOKENIZE_WINDOW: usize = 8192;

/// Most `batch × seq_len²` one forward pass may hold (32 texts of 128 tokens). The encoder's
/// autograd graph keeps every intermediate of a batch alive until the batch ends, and the
/// attention scores grow with the square of the length, so batches of long texts are made
/// smaller; embeddings do not depend on how texts are batched.
const ATTENTION_BUDGET: usize = 32 * 128 * 128;

/// Batch sizes for texts sorted longest first: at most `batch_size` texts each, and fewer where
/// the batch's longest text would push `batch × len²` over [`ATTENTION_BUDGET`] (at least one).
pub fn batch_sizes(sorted_lengths: &[usize], batch_size: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut start = 0;
    while start < sorted_lengths.len() {
        let longest = sorted_lengths[start].max(1);
        let fits = (ATTENTION_BUDGET / (longest * longest)).max(1);
        let size = batch_size.min(fits).min(sorted_lengths.len() - start);
        sizes.push(size);
        start += size;
    }
    sizes
}

/// How token states become one sentence vector (sentence-transformers' `Pooling` modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolingMode {
    /// The first token's state (`[CLS]` / `<s>`).
    Cls,
    /// The element-wise maximum over real tokens.
    Max,
    /// The mean over real tokens.
    Mean,
    /// The sum over real tokens divided by the square root of their number.
    MeanSqrtLen,
}

impl PoolingMode {
    /// The `1_Pooling/config.json` key that turns this mode on.
    pub fn config_key(self) -> &'static str {
        match self {
            PoolingMode::Cls => "pooling_mode_cls_token",
            PoolingMode::Max => "pooling_mode_max_tokens",
            PoolingMode::Mean => "pooling_mode_mean_tokens",
            PoolingMode::MeanSqrtLen => "pooling_mode_mean_sqrt_len_tokens",
        }
    }

    /// Every mode, in the order sentence-transformers concatenates them.
    pub const ALL: [PoolingMode; 4] = [
        PoolingMode::Cls,
        PoolingMode::Max,
        PoolingMode::Mean,
        PoolingMode::MeanSqrtLen,
    ];
}

/// Parse a sentence-transformers `Pooling` config: the modes that are on, in concatenation
/// order. Modes crossdistill does not implement (`weightedmean`, `lasttoken`, a prompt excluded
/// from pooling) are errors that name the key.
pub fn parse_pooling_config(value: &Value, path: &Path) -> Result<Vec<PoolingMode>> {
    let flag = |key: &str| -> Result<bool> {
        match value.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(on)) => Ok(*on),
            Some(other) => Err(Error::input(
                path,
                None,
                format!("`{key}` must be true or false, found {other}"),
            )),
        }
    };
    for unsupported in ["pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"] {
        if flag(unsupported)? {
            return Err(Error::input(
                path,
                None,
                format!("`{unsupported}` is true, but crossdistill implements only cls, max, mean and mean_sqrt_len pooling"),
            )
            .with_hint("use a model with mean/cls/max pooling, or override the pooling"));
        }
    }
    if value.get("include_prompt") == Some(&Value::Bool(false)) {
        return Err(Error::input(
            path,
            None,
            "`include_prompt` is false (prompt tokens excluded from pooling), which crossdistill does not implement",
        )
        .with_hint("use a model that pools over the prompt tokens too"));
    }
    let mut modes = Vec::new();
    for mode in PoolingMode::ALL {
        if flag(mode.config_key())? {
            modes.push(mode);
        }
    }
    if modes.is_empty() {
        return Err(Error::input(
            path,
            None,
            "no pooling mode is on; expected one of pooling_mode_cls_token, pooling_mode_max_tokens, pooling_mode_mean_tokens, pooling_mode_mean_sqrt_len_tokens",
        ));
    }
    Ok(modes)
}

/// Pool token states `(B, L, H)` over the real tokens of `mask` `(B, L)` into `(B, H·modes)`.
pub fn pool(hidden: &Tensor, mask: &Tensor, modes: &[PoolingMode]) -> Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?;
    let expanded = mask.unsqueeze(D::Minus1)?.broadcast_as(hidden.shape())?;
    let counts = mask.sum_keepdim(1)?;
    let mut parts = Vec::with_capacity(modes.len());
    for mode in modes {
        let part = match mode {
            PoolingMode::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            PoolingMode::Max => {
                // sentence-transformers sets padding states to -1e9 before the max.
                let floor = Tensor::full(-1e9f32, hidden.shape(), hidden.device())?;
                expanded.ne(0f32)?.where_cond(hidden, &floor)?.max(1)?
            }
            PoolingMode::Mean => hidden
                .mul(&expanded)?
                .sum(1)?
                .broadcast_div(&counts.clamp(1e-9, f64::MAX)?)?,
            PoolingMode::MeanSqrtLen => hidden
                .mul(&expanded)?
                .sum(1)?
                .broadcast_div(&counts.clamp(1e-9, f64::MAX)?.sqrt()?)?,
        };
        parts.push(part);
    }
    Ok(Tensor::cat(&parts, 1)?)
}

/// Embeddings of several texts, one row of `dim` values per text, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    dim: usize,
    values: Vec<f32>,
}

impl Embeddings {
    /// Wrap row-major `values`; their count must be a multiple of `dim` (≥ 1).
    pub fn new(dim: usize, values: Vec<f32>) -> Result<Self> {
        if dim == 0 || !values.len().is_multiple_of(dim) {
            return Err(Error::invalid(format!(
                "embeddings of dimension {dim} need a multiple of {dim} values, found {}",
                values.len()
            )));
        }
        Ok(Self { dim, values })
    }

    /// The width of one embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of embeddings.
    pub fn len(&self) -> usize {
        self.values.len() / self.dim
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Embedding `index`.
    pub fn row(&self, index: usize) -> &[f32] {
        &self.values[index * self.dim..(index + 1) * self.dim]
    }

    /// All values, row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The values, row-major, without copying.
    pub fn into_values(self) -> Vec<f32> {
        self.values
    }
}

/// Divide `row` by its L2 norm (floored at 1e-12, as torch's `F.normalize`).
pub fn normalize_in_place(row: &mut [f32]) {
    let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    row.iter_mut().for_each(|x| *x /= norm);
}

/// Options for [`BiEncoder::load`].
#[derive(Debug, Clone)]
pub struct BiEncoderOptions {
    /// Where the parameters live.
    pub device: Device,
    /// Truncation length (special tokens included); default `max_seq_length` from
    /// `sentence_bert_config.json`, else the cross-encoder default.
    pub max_seq_length: Option<usize>,
    /// Pooling; default from the model's `Pooling` config, else mean.
    pub pooling: Option<Vec<PoolingMode>>,
}

impl Default for BiEncoderOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            max_seq_length: None,
            pooling: None,
        }
    }
}

/// How [`BiEncoder::encode`] runs.
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions<'a> {
    /// Texts per forward pass.
    pub batch_size: usize,
    /// Text put before every input (e5's `"query: "`), already resolved.
    pub prompt: Option<&'a str>,
    /// Divide every embedding by its L2 norm.
    pub normalize: bool,
}

/// Which kind of text is encoded, for the model's default prompts (`encode_query` /
/// `encode_document` in sentence-transformers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextRole {
    /// Queries/anchors: the model's `query` prompt.
    Query,
    /// Corpus documents: the first of the model's `document`, `passage`, `corpus` prompts.
    Document,
}

/// A sentence-transformers embedding model: encoder + pooling (+ normalisation on request).
pub struct BiEncoder {
    model: CrossEncoder,
    pooling: Vec<PoolingMode>,
    prompts: BTreeMap<String, String>,
    weight_files: Vec<PathBuf>,
}

impl std::fmt::Debug for BiEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BiEncoder")
            .field("model", &self.model.files().name)
            .field("pooling", &self.pooling)
            .field("max_seq_length", &self.max_seq_length())
            .finish()
    }
}

/// A sentence-transformers side file of `files`: in the model directory, or (for a hub id not
/// found locally) from the hub cache or a download; `None` when the model has none.
fn side_file(files: &ModelFiles, name: &str) -> Option<PathBuf> {
    let local = files.dir.join(name);
    if local.is_file() {
        return Some(local);
    }
    if looks_like_hub_id(&files.name) && !Path::new(&files.name).exists() {
        return hub::cached_file(&files.name, RepoKind::Model, name)
            .or_else(|| hub::resolve_file(&files.name, RepoKind::Model, name).ok());
    }
    None
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::input(path, Some(e.line()), format!("invalid JSON: {e}")))
}

/// The `Pooling` module's folder from `modules.json` (default `1_Pooling`).
fn pooling_folder(files: &ModelFiles) -> Result<String> {
    let Some(path) = side_file(files, "modules.json") else {
        return Ok("1_Pooling".into());
    };
    let modules = read_json(&path)?;
    let folder = modules.as_array().and_then(|list| {
        list.iter().find_map(|module| {
            let kind = module.get("type")?.as_str()?;
            kind.ends_with(".Pooling")
                .then(|| module.get("path")?.as_str().map(str::to_string))?
        })
    });
    Ok(folder.unwrap_or_else(|| "1_Pooling".into()))
}

impl BiEncoder {
    /// Load an embedding model from a local directory or a hub id (`spec`), resolving relative
    /// paths against `base_dir`.
    pub fn load(spec: &str, base_dir: Option<&Path>, options: &BiEncoderOptions) -> Result<Self> {
        let files = ModelFiles::locate(spec, base_dir)?;
        let pooling = match &options.pooling {
            Some(modes) if modes.is_empty() => {
                return Err(Error::invalid(
                    "pooling must name at least one mode, found none",
                ))
            }
            Some(modes) => modes.clone(),
            None => {
                let folder = pooling_folder(&files)?;
                match side_file(&files, &format!("{folder}/config.json")) {
                    Some(path) => parse_pooling_config(&read_json(&path)?, &path)?,
                    None => vec![PoolingMode::Mean],
                }
            }
        };
        let max_seq_length = match options.max_seq_length {
            Some(n) => Some(n),
            None => match side_file(&files, "sentence_bert_config.json") {
                Some(path) => match read_json(&path)?.get("max_seq_length") {
                    None | Some(Value::Null) => None,
                    Some(value) => Some(value.as_u64().map(|n| n as usize).ok_or_else(|| {
                        Error::input(
                            &path,
                            None,
                            format!("`max_seq_length` must be a positive integer, found {value}"),
                        )
                    })?),
                },
                None => None,
            },
        };
        let prompts = match side_file(&files, "config_sentence_transformers.json") {
            Some(path) => {
                let config = read_json(&path)?;
                match config.get("prompts") {
                    None | Some(Value::Null) => BTreeMap::new(),
                    Some(Value::Object(map)) => map
                        .iter()
                        .map(|(name, prompt)| match prompt.as_str() {
                            Some(text) => Ok((name.clone(), text.to_string())),
                            None => Err(Error::input(
                                &path,
                                None,
                                format!("prompt `{name}` must be a string, found {prompt}"),
                            )),
                        })
                        .collect::<Result<_>>()?,
                    Some(other) => {
                        return Err(Error::input(
                            &path,
                            None,
                            format!("`prompts` must be an object of strings, found {other}"),
                        ))
                    }
                }
            }
            None => BTreeMap::new(),
        };
        let weight_files = files.weights.clone();
        let load = LoadOptions {
            device: options.device.clone(),
            max_length: max_seq_length,
            ..LoadOptions::default()
        };
        let model = CrossEncoder::from_files(files, &load)?;
        Ok(Self {
            model,
            pooling,
            prompts,
            weight_files,
        })
    }

    /// Use a loaded encoder (its head is ignored) with the given pooling and named prompts.
    pub fn from_cross_encoder(
        model: CrossEncoder,
        pooling: Vec<PoolingMode>,
        prompts: BTreeMap<String, String>,
    ) -> Result<Self> {
        if pooling.is_empty() {
            return Err(Error::invalid(
                "pooling must name at least one mode, found none",
            ));
        }
        let weight_files = model.files().weights.clone();
        Ok(Self {
            model,
            pooling,
            prompts,
            weight_files,
        })
    }

    /// The underlying encoder.
    pub fn model(&self) -> &CrossEncoder {
        &self.model
    }

    /// The pooling modes, in concatenation order.
    pub fn pooling(&self) -> &[PoolingMode] {
        &self.pooling
    }

    /// Truncation length in tokens, special tokens included.
    pub fn max_seq_length(&self) -> usize {
        self.model.tokenizer().max_length()
    }

    /// Width of one embedding: hidden size × number of pooling modes.
    pub fn dimension(&self) -> usize {
        self.model.config().hidden_size * self.pooling.len()
    }

    /// The model's named prompts (`config_sentence_transformers.json`).
    pub fn prompts(&self) -> &BTreeMap<String, String> {
        &self.prompts
    }

    /// The weight files (for cache keys).
    pub fn weight_files(&self) -> &[PathBuf] {
        &self.weight_files
    }

    /// The prompt to use for `role`, as sentence-transformers resolves it: an explicit `prompt`
    /// wins, then the named prompt `prompt_name` (which must exist), then the model's default
    /// prompt for the role (`query`; `document`, `passage` or `corpus`), else none.
    pub fn resolve_prompt(
        &self,
        role: TextRole,
        prompt: Option<&str>,
        prompt_name: Option<&str>,
    ) -> Result<Option<String>> {
        if let Some(text) = prompt {
            return Ok(Some(text.to_string()));
        }
        if let Some(name) = prompt_name {
            return match self.prompts.get(name) {
                Some(text) => Ok(Some(text.clone())),
                None => {
                    let known: Vec<&str> = self.prompts.keys().map(String::as_str).collect();
                    Err(Error::invalid(format!(
                        "prompt name `{name}` is not one of the model's prompts ({})",
                        if known.is_empty() {
                            "it has none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ))
                    .with_hint("pass the prompt text itself (e.g. --query-prompt \"query: \")"))
                }
            };
        }
        let defaults: &[&str] = match role {
            TextRole::Query => &["query"],
            TextRole::Document => &["document", "passage", "corpus"],
        };
        Ok(defaults
            .iter()
            .find_map(|name| self.prompts.get(*name).cloned()))
    }

    /// Pooled embeddings `(B, dimension)` of tokenised texts (not normalised).
    pub fn embed_encoded(&self, encoded: &[&EncodedPair]) -> Result<Tensor> {
        let batch = self.model.batch_tensors(encoded)?;
        let hidden = self.model.last_hidden_state(&batch)?;
        pool(&hidden, &batch.attention_mask, &self.pooling)
    }

    /// Embed `texts` (with `options.prompt` in front of each), in length-sorted batches; the
    /// result is in input order. `on_batch` is told how many texts each finished batch held.
    pub fn encode<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        options: &EncodeOptions,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Embeddings> {
        if options.batch_size == 0 {
            return Err(Error::invalid("batch size must be at least 1, found 0"));
        }
        let dim = self.dimension();
        let mut values = vec![0f32; texts.len() * dim];
        for (window_index, window) in texts.chunks(TOKENIZE_WINDOW).enumerate() {
            let offset = window_index * TOKENIZE_WINDOW;
            let encoded = match options.prompt {
                Some(prompt) => {
                    let prompted: Vec<String> = window
                        .iter()
                        .map(|text| format!("{prompt}{}", text.as_ref()))
                        .collect();
                    self.model.tokenizer().encode_texts(&prompted)?
                }
                None => self.model.tokenizer().encode_texts(window)?,
            };
            let lengths: Vec<usize> = encoded.iter().map(EncodedPair::len).collect();
            let order = length_sorted_order(&lengths);
            let sorted: Vec<usize> = order.iter().map(|&i| lengths[i]).collect();
            let mut start = 0;
            for size in batch_sizes(&sorted, options.batch_size) {
                let chunk = &order[start..start + size];
                start += size;
                let batch: Vec<&EncodedPair> = chunk.iter().map(|&i| &encoded[i]).collect();
                let pooled = self
                    .embed_encoded(&batch)?
                    .to_device(&Device::Cpu)?
                    .to_vec2::<f32>()?;
                for (&i, mut row) in chunk.iter().zip(pooled) {
                    if options.normalize {
                        normalize_in_place(&mut row);
                    }
                    let start = (offset + i) * dim;
                    values[start..start + dim].copy_from_slice(&row);
                }
                on_batch(chunk.len());
            }
        }
        Embeddings::new(dim, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn tiny(pooling: Option<Vec<PoolingMode>>) -> BiEncoder {
        let options = BiEncoderOptions {
            pooling,
            ..BiEncoderOptions::default()
        };
        BiEncoder::load(fixture("tiny-bert-ce").to_str().unwrap(), None, &options).unwrap()
    }

    const TEXTS: [&str; 3] = [
        "what is python",
        "Python is a programming language that lets you work quickly.",
        "ok",
    ];

    #[test]
    fn long_texts_get_smaller_batches() {
        // 32 × 128² is the budget: a batch led by a 256-token text holds 8, one led by a
        // 128-token text 32 (10 × 256, then 40 × 128, then 5 × 10 tokens, longest first).
        let mut lengths = vec![256; 10];
        lengths.extend(vec![128; 40]);
        lengths.extend(vec![10; 5]);
        assert_eq!(batch_sizes(&lengths, 32), vec![8, 8, 32, 7]);
        assert_eq!(batch_sizes(&[600, 5], 32), vec![1, 1]);
        assert_eq!(batch_sizes(&[], 32), Vec::<usize>::new());
    }

    #[test]
    fn pooling_config_follows_sentence_transformers_keys_and_order() {
        let path = Path::new("1_Pooling/config.json");
        let minilm = serde_json::json!({
            "word_embedding_dimension": 384,
            "pooling_mode_cls_token": false,
            "pooling_mode_mean_tokens": true,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false
        });
        assert_eq!(
            parse_pooling_config(&minilm, path).unwrap(),
            vec![PoolingMode::Mean]
        );
        let several = serde_json::json!({
            "pooling_mode_mean_tokens": true,
            "pooling_mode_cls_token": true,
            "pooling_mode_max_tokens": true
        });
        assert_eq!(
            parse_pooling_config(&several, path).unwrap(),
            vec![PoolingMode::Cls, PoolingMode::Max, PoolingMode::Mean]
        );
        let weighted = serde_json::json!({"pooling_mode_weightedmean_tokens": true});
        let error = parse_pooling_config(&weighted, path)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("pooling_mode_weightedmean_tokens"),
            "{error}"
        );
        let none = serde_json::json!({"pooling_mode_mean_tokens": false});
        assert!(parse_pooling_config(&none, path).is_err());
    }

    /// Each pooling mode against the definition, computed by hand from the encoder's last
    /// hidden states of each text alone (no padding): the batched, padded path must agree.
    #[test]
    fn pooling_modes_match_their_definitions_and_ignore_padding() {
        let encoder = tiny(Some(PoolingMode::ALL.to_vec()));
        let batched = encoder
            .encode(
                &TEXTS,
                &EncodeOptions {
                    batch_size: 3,
                    prompt: None,
                    normalize: false,
                },
                &mut |_| {},
            )
            .unwrap();
        let hidden_size = encoder.model().config().hidden_size;
        assert_eq!(batched.dim(), 4 * hidden_size);
        for (index, text) in TEXTS.iter().enumerate() {
            let encoded = encoder.model().tokenizer().encode_texts(&[*text]).unwrap();
            let batch = encoder.model().batch_tensors(&[&encoded[0]]).unwrap();
            let states = encoder
                .model()
                .all_hidden_states(&batch)
                .unwrap()
                .pop()
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let tokens = states.len() as f32;
            let column = |h: usize| states.iter().map(move |row| row[h]);
            let mut expected = Vec::new();
            expected.extend(states[0].iter().copied());
            expected.extend((0..hidden_size).map(|h| column(h).fold(f32::MIN, f32::max)));
            expected.extend((0..hidden_size).map(|h| column(h).sum::<f32>() / tokens));
            expected.extend((0..hidden_size).map(|h| column(h).sum::<f32>() / tokens.sqrt()));
            let got = batched.row(index);
            for (g, e) in got.iter().zip(&expected) {
                assert!((g - e).abs() < 1e-4, "text {index}: {g} vs {e}");
            }
        }
    }

    #[test]
    fn mean_pooling_is_the_default_and_normalised_rows_have_unit_norm() {
        let encoder = tiny(None);
        assert_eq!(encoder.pooling(), &[PoolingMode::Mean]);
        // tests/fixtures/tiny-bert-ce/tokenizer_config.json: model_max_length 128.
        assert_eq!(encoder.max_seq_length(), 128);
        let embeddings = encoder
            .encode(
                &TEXTS,
                &EncodeOptions {
                    batch_size: 2,
                    prompt: None,
                    normalize: true,
                },
                &mut |_| {},
            )
            .unwrap();
        for index in 0..TEXTS.len() {
            let norm: f32 = embeddings.row(index).iter().map(|x| x * x).sum();
            assert!((norm.sqrt() - 1.0).abs() < 1e-5);
        }
        // CrossEncoder::embed is mean pooling too.
        let encoded = encoder.model().tokenizer().encode_texts(&TEXTS).unwrap();
        let refs: Vec<&EncodedPair> = encoded.iter().collect();
        let batch = encoder.model().batch_tensors(&refs).unwrap();
        let mut mean = encoder
            .model()
            .embed(&batch)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (index, row) in mean.iter_mut().enumerate() {
            normalize_in_place(row);
            for (a, b) in row.iter().zip(embeddings.row(index)) {
                assert!((a - b).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn side_files_set_pooling_length_and_prompts() {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(fixture("tiny-bert-ce")).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
        std::fs::create_dir(dir.path().join("pool")).unwrap();
        std::fs::write(
            dir.path().join("modules.json"),
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                {"idx":1,"name":"1","path":"pool","type":"sentence_transformers.models.Pooling"}]"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pool/config.json"),
            r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("sentence_bert_config.json"),
            r#"{"max_seq_length": 16, "do_lower_case": false}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("config_sentence_transformers.json"),
            r#"{"prompts": {"query": "query: ", "passage": "passage: "}}"#,
        )
        .unwrap();
        let encoder = BiEncoder::load(
            dir.path().to_str().unwrap(),
            None,
            &BiEncoderOptions::default(),
        )
        .unwrap();
        assert_eq!(encoder.pooling(), &[PoolingMode::Cls]);
        assert_eq!(encoder.max_seq_length(), 16);
        let query = encoder.resolve_prompt(TextRole::Query, None, None).unwrap();
        assert_eq!(query.as_deref(), Some("query: "));
        let document = encoder
            .resolve_prompt(TextRole::Document, None, None)
            .unwrap();
        assert_eq!(document.as_deref(), Some("passage: "));
        let explicit = encoder
            .resolve_prompt(TextRole::Query, Some("q: "), Some("passage"))
            .unwrap();
        assert_eq!(explicit.as_deref(), Some("q: "));
        let named = encoder
            .resolve_prompt(TextRole::Query, None, Some("passage"))
            .unwrap();
        assert_eq!(named.as_deref(), Some("passage: "));
        let error = encoder
            .resolve_prompt(TextRole::Query, None, Some("missing"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("passage, query"), "{error}");

        // A prompt is text in front of the input: embedding "query: x" without a prompt equals
        // embedding "x" with it.
        let with_prompt = encoder
            .encode(
                &["x"],
                &EncodeOptions {
                    batch_size: 1,
                    prompt: Some("query: "),
                    normalize: true,
                },
                &mut |_| {},
            )
            .unwrap();
        let spelled_out = encoder
            .encode(
                &["query: x"],
                &EncodeOptions {
                    batch_size: 1,
                    prompt: None,
                    normalize: true,
                },
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(with_prompt, spelled_out);
    }
}
