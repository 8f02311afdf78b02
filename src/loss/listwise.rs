//! What the listwise losses (LambdaLoss, RankNet, ListNet, ListMLE, PListMLE, ADRMSE) share:
//! padded `(B, M)` inputs with a mask, the `mini_batch_size` forward chunking (the start of
//! `forward` in sentence-transformers `cross_encoder/losses/lambda_loss.py`, `list_net.py`,
//! `plist_mle.py` and `adr_mse.py`), and the adapter [`ListwiseLoss`] that does both for each
//! of them.
//!
//! Data rows are (query, [doc_1..doc_n]) with one label per document; n may differ per query.
//! The glue scores the pairs row-major (`(q_0, d_00), (q_0, d_01), …, (q_1, d_10), …`), forwards
//! them in chunks of [`listwise_chunk_size`] pairs **keeping every graph** (this is not gradient
//! caching: the chunking only bounds the activations of one forward), concatenates the logits
//! to `(P,)` and calls [`pad_lists`] to get `(B, M)` logits, labels and mask, `M = max n`.
//!
//! Every listwise loss takes `(logits, labels, mask)` of shape `(B, M)`: mask nonzero = a real
//! document. Whatever sits in the padded positions is ignored (each loss substitutes its own
//! sentence-transformers padding value, with the same result), so padding a list with more
//! masked documents never changes the loss, and rows may have different numbers of documents.
//! Each loss applies its `activation_fn` to the logits itself.

use candle_core::{DType, Device, Tensor};

use crate::data::Field;
use crate::error::{Error, Result};
use crate::loss::activation::ActivationFn;
use crate::loss::batch::{require_columns, require_labels, student_logits, text_column};
use crate::loss::objective::{BuiltinLoss, Loss, LossInput, LossValue};
use crate::loss::tensor_ops::{host_matrix, matrix_like, upcast};
use crate::model::{CrossEncoder, Dropout};

/// Listwise inputs padded to `(B, M)`.
#[derive(Debug, Clone)]
pub struct PaddedLists {
    /// `(B, M)` logits; padded positions hold 0 and get no gradient.
    pub logits: Tensor,
    /// `(B, M)` labels (f32); padded positions hold 0.
    pub labels: Tensor,
    /// `(B, M)` u8 mask: 1 = real document, 0 = padding.
    pub mask: Tensor,
}

/// Pads row-major pair logits into `(B, M)` lists.
///
/// * `pair_logits`: `(P,)` or `(P, 1)` logits of all (query, document) pairs, row by row.
/// * `labels`: one label list per query; `P` must equal the total number of labels.
///
/// The logits keep their graph (an `index_select`), so gradients reach the model.
pub fn pad_lists(pair_logits: &Tensor, labels: &[Vec<f32>]) -> Result<PaddedLists> {
    let docs_per_query: Vec<usize> = labels.iter().map(Vec::len).collect();
    let total: usize = docs_per_query.iter().sum();
    let flat = match *pair_logits.dims() {
        [p] | [p, 1] if p == total => pair_logits.flatten_all()?,
        _ => {
            return Err(Error::invalid(format!(
                "listwise loss: the logits have shape {:?} but the label lists hold {total} documents ({docs_per_query:?}); every document needs one logit",
                pair_logits.dims()
            )))
        }
    };
    let batch = labels.len();
    let width = docs_per_query.iter().copied().max().unwrap_or(0);
    let device = pair_logits.device();
    let mut index = Vec::with_capacity(batch * width);
    let mut mask = Vec::with_capacity(batch * width);
    let mut padded_labels = Vec::with_capacity(batch * width);
    let mut offset = 0u32;
    for row in labels {
        for j in 0..width {
            let real = j < row.len();
            index.push(if real { offset + j as u32 } else { 0 });
            mask.push(u8::from(real));
            padded_labels.push(if real { row[j] } else { 0.0 });
        }
        offset += row.len() as u32;
    }
    let mask = Tensor::from_vec(mask, (batch, width), device)?;
    let labels = Tensor::from_vec(padded_labels, (batch, width), device)?;
    let logits = if total == 0 {
        Tensor::zeros((batch, width), flat.dtype(), device)?
    } else {
        let index = Tensor::from_vec(index, batch * width, device)?;
        let gathered = flat.index_select(&index, 0)?.reshape((batch, width))?;
        mask.where_cond(&gathered, &gathered.zeros_like()?)?
    };
    Ok(PaddedLists {
        logits,
        labels,
        mask,
    })
}

/// Pairs per forward pass of a listwise loss, exactly as sentence-transformers computes it:
/// `mini_batch_size or num_queries` (so `None` and 0 both mean one pair per query of the
/// batch, i.e. B pairs), and a value ≤ 0 after that means all pairs at once. At least 1.
pub fn listwise_chunk_size(
    mini_batch_size: Option<i64>,
    num_queries: usize,
    num_pairs: usize,
) -> usize {
    let size = match mini_batch_size {
        None | Some(0) => num_queries as i64,
        Some(n) => n,
    };
    let size = if size <= 0 { num_pairs as i64 } else { size };
    size.max(1) as usize
}

/// A validated listwise batch: logits after activation (on the device, with their graph),
/// labels and mask on the host.
pub(crate) struct ListBatch {
    /// `(B, M)` logits after `activation_fn`, f32 or f64.
    pub logits: Tensor,
    /// `labels[b][j]`, finite where the mask is set.
    pub labels: Vec<Vec<f64>>,
    /// `mask[b][j]`: a real document.
    pub mask: Vec<Vec<bool>>,
    /// M, the padded width.
    pub width: usize,
}

impl ListBatch {
    /// Checks shapes (`logits`, `labels` and `mask` all `(B, M)`) and that real labels are
    /// finite; applies the activation.
    pub(crate) fn new(
        loss: &str,
        logits: &Tensor,
        labels: &Tensor,
        mask: &Tensor,
        activation_fn: ActivationFn,
    ) -> Result<Self> {
        let (batch, width) = match *logits.dims() {
            [b, m] => (b, m),
            _ => {
                return Err(Error::invalid(format!(
                    "{loss}: logits have shape {:?} but need [queries, documents] (pad the lists with pad_lists)",
                    logits.dims()
                )))
            }
        };
        for (what, tensor) in [("labels", labels), ("mask", mask)] {
            if tensor.dims() != [batch, width] {
                return Err(Error::invalid(format!(
                    "{loss}: {what} have shape {:?} but the logits have shape [{batch}, {width}]; both need [queries, documents]",
                    tensor.dims()
                )));
            }
        }
        let mask: Vec<Vec<bool>> = host_matrix(mask)?
            .into_iter()
            .map(|row| row.into_iter().map(|m| m != 0.0).collect())
            .collect();
        let labels = host_matrix(labels)?;
        for (b, (row, keep)) in labels.iter().zip(&mask).enumerate() {
            if let Some(j) = (0..width).find(|&j| keep[j] && !row[j].is_finite()) {
                return Err(Error::invalid(format!(
                    "{loss}: the label of document {j} of query {b} is {}, but labels must be finite",
                    row[j]
                )));
            }
        }
        let logits = activation_fn.apply(&upcast(logits)?)?;
        Ok(ListBatch {
            logits,
            labels,
            mask,
            width,
        })
    }

    /// B, the number of queries.
    pub(crate) fn batch(&self) -> usize {
        self.mask.len()
    }

    /// The mask as 0/1 in the logits' dtype and device.
    pub(crate) fn mask_tensor(&self) -> Result<Tensor> {
        let rows: Vec<Vec<f64>> = self
            .mask
            .iter()
            .map(|row| row.iter().map(|&m| f64::from(u8::from(m))).collect())
            .collect();
        matrix_like(&rows, self.width, &self.logits)
    }

    /// The logits with every padded position replaced by `pad` (no gradient reaches pads).
    pub(crate) fn real_logits(&self, pad: f64) -> Result<Tensor> {
        let keep = self.mask_tensor()?.ne(0.0)?;
        let pad = self.logits.ones_like()?.affine(0.0, pad)?;
        Ok(keep.where_cond(&self.logits, &pad)?)
    }

    /// Per row, the positions of its real documents.
    pub(crate) fn real_positions(&self, b: usize) -> Vec<usize> {
        (0..self.width).filter(|&j| self.mask[b][j]).collect()
    }
}

/// A `(B, M)` u32 index tensor on `device`.
pub(crate) fn index_matrix(rows: &[Vec<u32>], width: usize, device: &Device) -> Result<Tensor> {
    let flat: Vec<u32> = rows.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (rows.len(), width), device)?.to_dtype(DType::U32)?)
}

/// A listwise loss over (query, [documents]) rows with one label per document; each listwise
/// loss's `build` fills it with its row, config and math.
pub struct ListwiseLoss<C: Send> {
    pub(crate) row: &'static BuiltinLoss,
    pub(crate) config: C,
    /// The loss over `(B, M)` logits, labels and mask.
    pub(crate) math: fn(&Tensor, &Tensor, &Tensor, &C) -> Result<Tensor>,
    pub(crate) mini_batch_size: fn(&C) -> Option<i64>,
    pub(crate) config_dict: fn(&C) -> serde_json::Value,
    pub(crate) citation: Option<&'static str>,
}

impl<C: Send> Loss for ListwiseLoss<C> {
    fn kind(&self) -> &str {
        self.row.kind
    }

    fn class_name(&self) -> String {
        self.row.class_name.to_string()
    }

    fn compute(
        &mut self,
        student: &CrossEncoder,
        input: &LossInput,
        dropout: &mut Dropout,
    ) -> Result<LossValue> {
        let kind = self.row.kind;
        require_columns(input.examples, 2, kind, "query and a list of documents")?;
        let labels = require_labels(input, kind)?;
        let queries = text_column(input.examples, 0, kind)?;
        let mut pairs = Vec::new();
        for ((row, query), row_labels) in input.examples.iter().zip(&queries).zip(labels) {
            let docs: Vec<&str> = match &row.fields[1] {
                Field::List(docs) => docs.iter().map(String::as_str).collect(),
                Field::Text(doc) => vec![doc.as_str()],
            };
            if docs.len() != row_labels.len() {
                return Err(Error::invalid(format!(
                    "{kind}: row {} has {} documents but {} labels",
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
        let chunk = listwise_chunk_size(
            (self.mini_batch_size)(&self.config),
            queries.len(),
            pairs.len(),
        );
        let mut chunks = Vec::with_capacity(pairs.len().div_ceil(chunk));
        for part in pairs.chunks(chunk) {
            chunks.push(student_logits(student, part, Some(&mut *dropout))?.narrow(1, 0, 1)?);
        }
        let logits = Tensor::cat(&chunks, 0)?;
        let padded = pad_lists(&logits, labels)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::t64;
    use candle_core::Var;

    #[test]
    fn pads_rows_of_different_lengths_and_keeps_the_graph() -> Result<()> {
        let flat = Var::from_tensor(&t64(&[0.2, 1.0, -0.5, 2.0, 0.5], &[5]))?;
        let padded = pad_lists(flat.as_tensor(), &[vec![1.0, 0.0, 0.0], vec![0.0, 1.0]])?;
        assert_eq!(
            padded.logits.to_vec2::<f64>()?,
            vec![vec![0.2, 1.0, -0.5], vec![2.0, 0.5, 0.0]]
        );
        assert_eq!(
            padded.labels.to_vec2::<f32>()?,
            vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0]]
        );
        assert_eq!(
            padded.mask.to_vec2::<u8>()?,
            vec![vec![1, 1, 1], vec![1, 1, 0]]
        );
        let grads = padded.logits.sum_all()?.backward()?;
        let g: Vec<f64> = grads.get(&flat).expect("connected").to_vec1()?;
        assert_eq!(g, vec![1.0; 5]);
        Ok(())
    }

    #[test]
    fn logit_count_must_match_the_labels() {
        let message = pad_lists(
            &t64(&[0.0; 4], &[4]),
            &[vec![1.0, 0.0, 0.0], vec![0.0, 1.0]],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            message,
            "listwise loss: the logits have shape [4] but the label lists hold 5 documents ([3, 2]); every document needs one logit"
        );
    }

    #[test]
    fn chunk_size_follows_sentence_transformers() {
        // `mini_batch_size or batch_size`, then `<= 0` → all pairs
        assert_eq!(listwise_chunk_size(None, 16, 160), 16);
        assert_eq!(listwise_chunk_size(Some(0), 16, 160), 16);
        assert_eq!(listwise_chunk_size(Some(8), 16, 160), 8);
        assert_eq!(listwise_chunk_size(Some(-1), 16, 160), 160);
        assert_eq!(listwise_chunk_size(None, 0, 0), 1);
    }

    #[test]
    fn shapes_are_checked_with_the_real_values() {
        let logits = t64(&[0.0; 6], &[2, 3]);
        let labels = t64(&[0.0; 4], &[2, 2]);
        let message = ListBatch::new("lambda", &logits, &labels, &logits, ActivationFn::Identity)
            .err()
            .expect("shape mismatch")
            .to_string();
        assert_eq!(
            message,
            "lambda: labels have shape [2, 2] but the logits have shape [2, 3]; both need [queries, documents]"
        );
        let message = ListBatch::new(
            "lambda",
            &t64(&[0.0; 3], &[3]),
            &labels,
            &labels,
            ActivationFn::Identity,
        )
        .err()
        .expect("rank mismatch")
        .to_string();
        assert!(
            message.starts_with("lambda: logits have shape [3]"),
            "{message}"
        );
        let nan_labels = t64(&[0.0, f64::NAN, 0.0, 0.0, 0.0, 0.0], &[2, 3]);
        let message = ListBatch::new(
            "lambda",
            &logits,
            &nan_labels,
            &t64(&[1.0; 6], &[2, 3]),
            ActivationFn::Identity,
        )
        .err()
        .expect("NaN label")
        .to_string();
        assert_eq!(
            message,
            "lambda: the label of document 1 of query 0 is NaN, but labels must be finite"
        );
    }
}
