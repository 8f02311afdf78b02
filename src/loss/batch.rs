//! Reading a batch for a loss: the checks and conversions every loss adapter shares (text
//! columns, labels, the student's `num_labels`) and the student forward over (query, document)
//! pairs.

use candle_core::{Device, Tensor};

use crate::data::{Field, Row};
use crate::error::{Error, Result};
use crate::loss::objective::LossInput;
use crate::model::{CrossEncoder, Dropout};
use crate::tokenize::EncodedPair;

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

/// Check that the student scores a pair with one logit (`num_labels = 1`), as every loss but
/// `cross_entropy` needs.
pub(crate) fn require_one_label(kind: &str, num_labels: usize) -> Result<()> {
    if num_labels != 1 {
        return Err(Error::invalid(format!(
            "{kind} needs a student with num_labels = 1, found {num_labels}"
        ))
        .with_hint("use cross_entropy for several labels"));
    }
    Ok(())
}
