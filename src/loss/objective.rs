//! The [`Loss`] trait the trainer calls, the registry that builds losses by name, and the
//! shared glue that turns a batch of examples into student logits and label tensors.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};

use crate::data::{Field, Row};
use crate::error::{Error, Result};
use crate::model::{CrossEncoder, Dropout};
use crate::tokenize::EncodedPair;

/// What one loss sees of a batch.
#[derive(Debug)]
pub struct LossInput<'a> {
    /// The examples (input fields in column order; column 0 is the query/anchor).
    pub examples: &'a [Row],
    /// Per example, the label values this loss was configured to use: the data label (a
    /// scalar becomes one value) or the teacher's scores of (column 0, document) for every
    /// document of columns 1.., in order. `None` when there are none.
    pub labels: Option<&'a [Vec<f32>]>,
    /// A seed for this step's random choices (in-batch negative sampling), so that a resumed
    /// run makes the same choices.
    pub seed: u64,
}

/// A loss value, with or without its backward pass done.
pub enum LossValue {
    /// A scalar on the autograd graph; the trainer sums the weighted graphs and backpropagates.
    Graph(Tensor),
    /// The loss ran its own backward pass (e.g. GradCache): its value and parameter gradients.
    Backpropagated {
        /// The loss value.
        value: f32,
        /// Gradients of every student variable.
        grads: GradStore,
    },
}

/// A training objective over batches of examples.
///
/// `compute` is called once per micro-batch with the student in training mode (`dropout` is
/// the step's dropout stream). It returns the loss as a graph (the usual case) or, for losses
/// that need their own backward passes, the value and gradients. Errors are user errors (wrong
/// columns, ragged labels) and name what was expected.
pub trait Loss: Send {
    /// The snake_case name (`margin_mse`), logged as `loss/<kind>`.
    fn kind(&self) -> &str;

    /// The loss of a batch.
    fn compute(
        &mut self,
        student: &CrossEncoder,
        input: &LossInput,
        dropout: &mut Dropout,
    ) -> Result<LossValue>;

    /// sentence-transformers' `get_config_dict()` (for the model card).
    fn config_dict(&self) -> serde_json::Value {
        serde_json::Value::Object(Default::default())
    }

    /// BibTeX citation, when the loss has one.
    fn citation(&self) -> Option<&'static str> {
        None
    }
}

/// Builds a loss from its recipe parameters (`[[loss]]` keys other than kind/labels/weight).
pub type LossFactory = fn(params: &toml::Table, num_labels: usize) -> Result<Box<dyn Loss>>;

/// Losses by name: the built-in table plus user-registered ones.
#[derive(Clone)]
pub struct LossRegistry {
    factories: BTreeMap<String, LossFactory>,
}

impl Default for LossRegistry {
    /// The built-in losses plus every loss registered with [`register_custom_loss`].
    fn default() -> Self {
        let mut registry = Self {
            factories: BTreeMap::new(),
        };
        super::register_builtin(&mut registry);
        for (kind, factory) in custom_losses()
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            registry.register(kind, *factory);
        }
        registry
    }
}

fn custom_losses() -> &'static std::sync::RwLock<BTreeMap<String, LossFactory>> {
    static CUSTOM: std::sync::OnceLock<std::sync::RwLock<BTreeMap<String, LossFactory>>> =
        std::sync::OnceLock::new();
    CUSTOM.get_or_init(Default::default)
}

/// Make a user-defined loss available by name to every recipe loaded afterwards in this process
/// (`[[loss]] kind = "<kind>"`): recipe validation accepts the name and
/// [`LossRegistry::default`] builds it with `factory`. Register before loading recipes.
pub fn register_custom_loss(kind: &str, factory: LossFactory) {
    custom_losses()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(kind.to_string(), factory);
}

/// The names registered with [`register_custom_loss`].
pub fn custom_loss_kinds() -> Vec<String> {
    custom_losses()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect()
}

impl LossRegistry {
    /// Add (or replace) a loss under `kind`.
    pub fn register(&mut self, kind: &str, factory: LossFactory) {
        self.factories.insert(kind.to_string(), factory);
    }

    /// The registered names.
    pub fn kinds(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    /// Build the loss `kind`.
    pub fn build(
        &self,
        kind: &str,
        params: &toml::Table,
        num_labels: usize,
    ) -> Result<Box<dyn Loss>> {
        match self.factories.get(kind) {
            Some(factory) => factory(params, num_labels),
            None => Err(Error::invalid(format!(
                "unknown loss kind `{kind}`; expected one of {}",
                self.kinds().join(", ")
            ))),
        }
    }
}

/// The text of column `index` of every example, which must be a text column.
pub fn text_column<'a>(examples: &'a [Row], index: usize, loss: &str) -> Result<Vec<&'a str>> {
    examples
        .iter()
        .map(|row| match row.fields.get(index) {
            Some(Field::Text(text)) => Ok(text.as_str()),
            Some(Field::List(list)) => Err(Error::invalid(format!(
                "{loss}: row {} column {index} is a list of {} texts, but this loss needs a text",
                row.line,
                list.len()
            ))),
            None => Err(Error::invalid(format!(
                "{loss}: row {} has {} columns, but this loss needs column {index}",
                row.line,
                row.fields.len()
            ))),
        })
        .collect()
}

/// Check that every example has exactly `expected` columns (a description like "2 (query, document)").
pub fn require_columns(examples: &[Row], expected: usize, loss: &str, what: &str) -> Result<()> {
    for row in examples {
        if row.fields.len() != expected {
            return Err(Error::invalid(format!(
                "{loss} needs {expected} input columns ({what}), but row {} has {}",
                row.line,
                row.fields.len()
            ))
            .with_hint("pick the columns with `columns = [...]` in [data.train]"));
        }
    }
    Ok(())
}

/// Student logits `(n, num_labels)` for pairs, tokenised here; on the autograd graph.
pub fn student_logits(
    student: &CrossEncoder,
    pairs: &[(&str, &str)],
    dropout: Option<&mut Dropout>,
) -> Result<Tensor> {
    let encoded: Vec<EncodedPair> = student.tokenizer().encode_pairs(pairs)?;
    let refs: Vec<&EncodedPair> = encoded.iter().collect();
    student.forward_encoded(&refs, dropout)
}

/// The labels of a batch, required.
pub fn require_labels<'a>(input: &LossInput<'a>, loss: &str) -> Result<&'a [Vec<f32>]> {
    input.labels.ok_or_else(|| {
        Error::invalid(format!("{loss} needs labels, but the batch has none"))
            .with_hint("add a label column to the data, or a [teacher] with labels = \"teacher\"")
    })
}

/// One label per example as a `(B,)` tensor.
pub fn scalar_labels(labels: &[Vec<f32>], loss: &str, device: &Device) -> Result<Tensor> {
    let mut values = Vec::with_capacity(labels.len());
    for (row, label) in labels.iter().enumerate() {
        match label.as_slice() {
            [v] => values.push(*v),
            other => {
                return Err(Error::invalid(format!(
                    "{loss} needs one label per row, but batch row {row} has {}",
                    other.len()
                )))
            }
        }
    }
    Ok(Tensor::from_vec(values, labels.len(), device)?)
}

/// Labels of a binary loss must be in [0, 1] (1 relevant, 0 not, or a soft label), as
/// sentence-transformers documents; anything else trains towards a meaningless target.
fn check_probability_labels(loss: &str, examples: &[Row], labels: &[Vec<f32>]) -> Result<()> {
    for (example, label) in examples.iter().zip(labels) {
        if let Some(value) = label.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(Error::invalid(format!(
                "{loss}: the label of the row at line {} is {value}; expected a value in [0, 1] (1 relevant, 0 not, or a soft label)",
                example.line
            ))
            .with_hint("rescale the labels to [0, 1] (e.g. STS scores / 5), use mse for unbounded scores, or give the teacher activation = \"sigmoid\""));
        }
    }
    Ok(())
}

/// Pointwise losses over (column 0, column 1) pairs with one label each: `mse`,
/// `binary_cross_entropy`, `cross_entropy`.
pub struct PointwiseLoss<C: Send> {
    kind: &'static str,
    config: C,
    math: fn(&Tensor, &Tensor, &C) -> Result<Tensor>,
    config_dict: fn(&C) -> serde_json::Value,
    citation: Option<&'static str>,
    integer_labels: bool,
}

impl<C: Send> Loss for PointwiseLoss<C> {
    fn kind(&self) -> &str {
        self.kind
    }

    fn compute(
        &mut self,
        student: &CrossEncoder,
        input: &LossInput,
        dropout: &mut Dropout,
    ) -> Result<LossValue> {
        require_columns(input.examples, 2, self.kind, "query and document")?;
        let labels = require_labels(input, self.kind)?;
        let queries = text_column(input.examples, 0, self.kind)?;
        let docs = text_column(input.examples, 1, self.kind)?;
        let pairs: Vec<(&str, &str)> = queries.into_iter().zip(docs).collect();
        if self.kind == "binary_cross_entropy" {
            check_probability_labels(self.kind, input.examples, labels)?;
        }
        let logits = student_logits(student, &pairs, Some(dropout))?;
        let mut labels = scalar_labels(labels, self.kind, student.device())?;
        if self.integer_labels {
            labels = labels.to_dtype(candle_core::DType::I64)?;
        }
        Ok(LossValue::Graph((self.math)(
            &logits,
            &labels,
            &self.config,
        )?))
    }

    fn config_dict(&self) -> serde_json::Value {
        (self.config_dict)(&self.config)
    }

    fn citation(&self) -> Option<&'static str> {
        self.citation
    }
}

/// MarginMSE over (query, positive, negative_1..N) rows: labels are N margins, N+1 raw teacher
/// scores, or one margin (N = 1).
pub struct MarginMseLoss {
    config: super::MarginMseConfig,
}

impl Loss for MarginMseLoss {
    fn kind(&self) -> &str {
        "margin_mse"
    }

    fn compute(
        &mut self,
        student: &CrossEncoder,
        input: &LossInput,
        dropout: &mut Dropout,
    ) -> Result<LossValue> {
        let columns = input.examples.first().map_or(0, |r| r.fields.len());
        if columns < 3 {
            return Err(Error::invalid(format!(
                "margin_mse needs (query, positive, negative_1..N) columns, at least 3, but the rows have {columns}"
            )));
        }
        require_columns(
            input.examples,
            columns,
            "margin_mse",
            "query, positive, negatives",
        )?;
        let labels = require_labels(input, "margin_mse")?;
        let queries = text_column(input.examples, 0, "margin_mse")?;
        let mut pairs = Vec::with_capacity(queries.len() * (columns - 1));
        for column in 1..columns {
            let docs = text_column(input.examples, column, "margin_mse")?;
            pairs.extend(queries.iter().copied().zip(docs));
        }
        // One forward over every (query, doc) pair, column-major: [pos..., neg1..., negN...].
        let batch = queries.len();
        let logits = student_logits(student, &pairs, Some(dropout))?
            .narrow(1, 0, 1)?
            .squeeze(1)?;
        let positive = logits.narrow(0, 0, batch)?;
        let negative = logits
            .narrow(0, batch, batch * (columns - 2))?
            .reshape((columns - 2, batch))?
            .t()?;
        let labels = super::stack_label_rows(labels, student.device())?;
        let labels = if labels.dim(1)? == 1 {
            labels.squeeze(1)?
        } else {
            labels
        };
        Ok(LossValue::Graph(super::margin_mse(
            &positive,
            &negative,
            &labels,
            &self.config,
        )?))
    }

    fn config_dict(&self) -> serde_json::Value {
        self.config.config_dict()
    }

    fn citation(&self) -> Option<&'static str> {
        super::margin_mse::CITATION
    }
}

/// Listwise losses over (query, [documents]) rows with one label per document.
pub struct ListwiseLoss<C: Send> {
    kind: &'static str,
    config: C,
    math: fn(&Tensor, &Tensor, &Tensor, &C) -> Result<Tensor>,
    mini_batch_size: fn(&C) -> Option<i64>,
    config_dict: fn(&C) -> serde_json::Value,
    citation: Option<&'static str>,
}

impl<C: Send> Loss for ListwiseLoss<C> {
    fn kind(&self) -> &str {
        self.kind
    }

    fn compute(
        &mut self,
        student: &CrossEncoder,
        input: &LossInput,
        dropout: &mut Dropout,
    ) -> Result<LossValue> {
        require_columns(
            input.examples,
            2,
            self.kind,
            "query and a list of documents",
        )?;
        let labels = require_labels(input, self.kind)?;
        let queries = text_column(input.examples, 0, self.kind)?;
        let mut pairs = Vec::new();
        for ((row, query), row_labels) in input.examples.iter().zip(&queries).zip(labels) {
            let docs: Vec<&str> = match &row.fields[1] {
                Field::List(docs) => docs.iter().map(String::as_str).collect(),
                Field::Text(doc) => vec![doc.as_str()],
            };
            if docs.len() != row_labels.len() {
                return Err(Error::invalid(format!(
                    "{}: row {} has {} documents but {} labels",
                    self.kind,
                    row.line,
                    docs.len(),
                    row_labels.len()
                ))
                .with_hint("every document needs exactly one label"));
            }
            pairs.extend(docs.into_iter().map(|d| (*query, d)));
        }
        // Forward in chunks of `mini_batch_size` pairs, as sentence-transformers does (this bounds
        // the size of one forward pass; the chunks' graphs are kept for the backward pass).
        let chunk = super::listwise_chunk_size(
            (self.mini_batch_size)(&self.config),
            queries.len(),
            pairs.len(),
        );
        let mut chunks = Vec::with_capacity(pairs.len().div_ceil(chunk));
        for part in pairs.chunks(chunk) {
            chunks.push(student_logits(student, part, Some(&mut *dropout))?.narrow(1, 0, 1)?);
        }
        let logits = Tensor::cat(&chunks, 0)?;
        let padded = super::pad_lists(&logits, labels)?;
        Ok(LossValue::Graph((self.math)(
            &padded.logits,
            &padded.labels,
            &padded.mask,
            &self.config,
        )?))
    }

    fn config_dict(&self) -> serde_json::Value {
        (self.config_dict)(&self.config)
    }

    fn citation(&self) -> Option<&'static str> {
        self.citation
    }
}

fn num_labels_one(kind: &str, num_labels: usize) -> Result<()> {
    if num_labels != 1 {
        return Err(Error::invalid(format!(
            "{kind} needs a student with num_labels = 1, found {num_labels}"
        ))
        .with_hint("use cross_entropy for several labels"));
    }
    Ok(())
}

macro_rules! pointwise {
    ($registry:ident, $kind:literal, $config:ty, $math:path, $citation:expr, $integer:expr, $one:expr) => {
        $registry.register($kind, |params, num_labels| {
            if $one {
                num_labels_one($kind, num_labels)?;
            }
            Ok(Box::new(PointwiseLoss {
                kind: $kind,
                config: <$config>::from_params(params)?,
                math: $math,
                config_dict: <$config>::config_dict,
                citation: $citation,
                integer_labels: $integer,
            }))
        });
    };
}

macro_rules! listwise {
    ($registry:ident, $kind:literal, $config:ty, $math:path, $citation:expr) => {
        $registry.register($kind, |params, num_labels| {
            num_labels_one($kind, num_labels)?;
            Ok(Box::new(ListwiseLoss {
                kind: $kind,
                config: <$config>::from_params(params)?,
                math: $math,
                mini_batch_size: |config: &$config| config.mini_batch_size,
                config_dict: <$config>::config_dict,
                citation: $citation,
            }))
        });
    };
}

/// Register the built-in losses.
pub(super) fn register_builtin(registry: &mut LossRegistry) {
    use super::*;
    pointwise!(registry, "mse", MseConfig, mse, mse::CITATION, false, true);
    pointwise!(
        registry,
        "binary_cross_entropy",
        BinaryCrossEntropyConfig,
        binary_cross_entropy,
        binary_cross_entropy::CITATION,
        false,
        true
    );
    pointwise!(
        registry,
        "cross_entropy",
        CrossEntropyConfig,
        cross_entropy,
        cross_entropy::CITATION,
        true,
        false
    );
    registry.register("margin_mse", |params, num_labels| {
        num_labels_one("margin_mse", num_labels)?;
        Ok(Box::new(MarginMseLoss {
            config: MarginMseConfig::from_params(params)?,
        }))
    });
    registry.register("multiple_negatives_ranking", |params, num_labels| {
        num_labels_one("multiple_negatives_ranking", num_labels)?;
        Ok(Box::new(MultipleNegativesRankingLoss {
            config: MultipleNegativesRankingConfig::from_params(params)?,
        }))
    });
    registry.register("cached_multiple_negatives_ranking", |params, num_labels| {
        num_labels_one("cached_multiple_negatives_ranking", num_labels)?;
        Ok(Box::new(CachedMultipleNegativesRankingLoss {
            config: CachedMultipleNegativesRankingConfig::from_params(params)?,
        }))
    });
    listwise!(
        registry,
        "lambda",
        LambdaLossConfig,
        lambda_loss,
        lambda::CITATION
    );
    listwise!(
        registry,
        "rank_net",
        RankNetConfig,
        rank_net,
        rank_net::CITATION
    );
    listwise!(
        registry,
        "list_net",
        ListNetConfig,
        list_net,
        list_net::CITATION
    );
    listwise!(
        registry,
        "list_mle",
        ListMleConfig,
        list_mle,
        list_mle::CITATION
    );
    listwise!(
        registry,
        "p_list_mle",
        PListMleConfig,
        p_list_mle,
        p_list_mle::CITATION
    );
    listwise!(
        registry,
        "adr_mse",
        AdrMseConfig,
        adr_mse,
        adr_mse::CITATION
    );
}

/// The texts of an MNRL batch: anchors and candidate columns (positive, hard negatives).
fn mnrl_texts<'a>(examples: &'a [Row], kind: &str) -> Result<(Vec<&'a str>, Vec<Vec<&'a str>>)> {
    let columns = examples.first().map_or(0, |r| r.fields.len());
    if columns < 2 {
        return Err(Error::invalid(format!(
            "{kind} needs (anchor, positive, optional hard negatives...) columns, at least 2, but the rows have {columns}"
        )));
    }
    require_columns(examples, columns, kind, "anchor, positive, hard negatives")?;
    let anchors = text_column(examples, 0, kind)?;
    let candidates = (1..columns)
        .map(|c| text_column(examples, c, kind))
        .collect::<Result<Vec<_>>>()?;
    Ok((anchors, candidates))
}

/// The (anchor, document) pairs one MNRL step scores, with in-batch negatives sampled from the
/// step's seed, and their texts in the same order.
fn sampled_pairs<'a>(
    input: &LossInput<'a>,
    kind: &str,
    num_negatives: super::NumNegatives,
) -> Result<(super::MnrlPairs, Vec<(&'a str, &'a str)>)> {
    use rand::SeedableRng;
    let (anchors, candidates) = mnrl_texts(input.examples, kind)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(input.seed);
    let pairs = super::mnrl_pairs(anchors.len(), candidates.len(), num_negatives, &mut rng)?;
    let texts = pairs
        .pairs
        .iter()
        .map(|p| {
            (
                anchors[p.anchor],
                candidates[p.candidate.column][p.candidate.row],
            )
        })
        .collect();
    Ok((pairs, texts))
}

/// MultipleNegativesRankingLoss: each anchor against its positive, `num_negatives` in-batch
/// negatives sampled (seeded) from the other rows' documents, and its own hard negatives.
/// Use `batch_sampler = "no_duplicates"` so in-batch negatives are not copies of the positive.
pub struct MultipleNegativesRankingLoss {
    config: super::MultipleNegativesRankingConfig,
}

impl Loss for MultipleNegativesRankingLoss {
    fn kind(&self) -> &str {
        "multiple_negatives_ranking"
    }

    fn compute(
        &mut self,
        student: &CrossEncoder,
        input: &LossInput,
        dropout: &mut Dropout,
    ) -> Result<LossValue> {
        let (pairs, texts) = sampled_pairs(input, self.kind(), self.config.num_negatives)?;
        let logits = student_logits(student, &texts, Some(dropout))?.narrow(1, 0, 1)?;
        let scores = pairs.score_matrix(&logits)?;
        Ok(LossValue::Graph(super::multiple_negatives_ranking(
            &scores,
            None,
            &self.config,
        )?))
    }

    fn config_dict(&self) -> serde_json::Value {
        self.config.config_dict()
    }

    fn citation(&self) -> Option<&'static str> {
        super::multiple_negatives_ranking::CITATION
    }
}

/// CachedMultipleNegativesRankingLoss (GradCache): the same loss and gradients as
/// [`MultipleNegativesRankingLoss`], computed in chunks of `mini_batch_size` pairs so memory
/// stays bounded: a pass without the graph, the loss gradient w.r.t. the logits, then a
/// re-forward per chunk (with the same dropout masks) that backpropagates the cached gradient.
pub struct CachedMultipleNegativesRankingLoss {
    config: super::CachedMultipleNegativesRankingConfig,
}

fn chunk_seed(seed: u64, chunk: usize) -> u64 {
    seed.rotate_left(17) ^ (chunk as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Loss for CachedMultipleNegativesRankingLoss {
    fn kind(&self) -> &str {
        "cached_multiple_negatives_ranking"
    }

    fn compute(
        &mut self,
        student: &CrossEncoder,
        input: &LossInput,
        _dropout: &mut Dropout,
    ) -> Result<LossValue> {
        let (pairs, texts) = sampled_pairs(input, self.kind(), self.config.num_negatives)?;
        let chunks = super::chunk_ranges(texts.len(), self.config.mini_batch_size);
        // Pass 1: logits of every chunk, detached.
        let mut detached = Vec::with_capacity(chunks.len());
        for (index, range) in chunks.iter().enumerate() {
            let mut stream = Dropout::new(chunk_seed(input.seed, index));
            detached.push(
                student_logits(student, &texts[range.clone()], Some(&mut stream))?
                    .narrow(1, 0, 1)?
                    .detach(),
            );
        }
        let all = Tensor::cat(&detached, 0)?;
        let (loss, logit_grads) = super::loss_and_logit_gradients(&all, &pairs, &self.config)?;
        // Pass 2: re-forward each chunk with the same masks and push the cached gradient through.
        let mut total: Option<GradStore> = None;
        for (index, range) in chunks.iter().enumerate() {
            let mut stream = Dropout::new(chunk_seed(input.seed, index));
            let logits = student_logits(student, &texts[range.clone()], Some(&mut stream))?
                .narrow(1, 0, 1)?;
            let chunk_grads = logit_grads.narrow(0, range.start, range.len())?;
            let store = super::chunk_surrogate(&logits, &chunk_grads)?.backward()?;
            match total.as_mut() {
                None => total = Some(store),
                Some(total) => {
                    for var in student.vars() {
                        if let Some(grad) = store.get(var.as_tensor()) {
                            let sum = match total.remove(var.as_tensor()) {
                                Some(previous) => (previous + grad)?,
                                None => grad.clone(),
                            };
                            total.insert(var.as_tensor(), sum);
                        }
                    }
                }
            }
        }
        let grads = total.ok_or_else(|| {
            Error::invalid("cached_multiple_negatives_ranking: the batch has no pairs")
        })?;
        Ok(LossValue::Backpropagated {
            value: loss.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?,
            grads,
        })
    }

    fn config_dict(&self) -> serde_json::Value {
        self.config.config_dict()
    }

    fn citation(&self) -> Option<&'static str> {
        super::cached_multiple_negatives_ranking::CITATION
    }
}
