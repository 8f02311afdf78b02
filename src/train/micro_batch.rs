//! One micro-batch of a step: every loss forward and backward, the gradients added into the
//! step's buffers; and what is told of the batch when a loss rejects it.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use super::plan::Plan;
use super::step_losses::StepLosses;
use super::step_optimizer::StepOptimizer;
use crate::error::{Error, Result};
use crate::loss::{LossInput, LossValue};
use crate::model::Dropout;
use crate::pipeline::{label_values, Batch};
use crate::recipe::LabelSource;

/// Seed of the dropout stream of one micro-batch.
pub fn step_seed(seed: u64, step: usize, micro: usize) -> u64 {
    let mut z = seed ^ ((step as u64) << 20) ^ micro as u64;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Forward and backward of every loss on one micro-batch; adds `grad / accumulation` into
/// `grads` and each loss's value into `losses` (on the device: nothing is read from it).
pub fn micro_step(
    plan: &mut Plan,
    batch: &Batch,
    vars: &[Var],
    grads: &mut StepOptimizer,
    seed: u64,
    accumulation: usize,
    losses: &mut StepLosses,
) -> Result<()> {
    let data_labels: Option<Vec<Vec<f32>>> = batch
        .examples
        .iter()
        .map(|row| row.label.as_ref().map(label_values))
        .collect();
    let mut graph: Option<Tensor> = None;
    let mut own_grads: Vec<(f64, GradStore)> = Vec::new();
    for (index, planned) in plan.losses.iter_mut().enumerate() {
        let labels: Option<&[Vec<f32>]> = match planned.labels {
            LabelSource::Teacher => batch.teacher_scores.as_deref(),
            LabelSource::Data => data_labels.as_deref(),
        };
        let input = LossInput {
            examples: &batch.examples,
            labels,
            seed: seed ^ index as u64,
        };
        let mut dropout = Dropout::new(seed);
        let value = planned.loss.compute(&plan.student, &input, &mut dropout)?;
        let kind = planned.log_key.clone();
        match value {
            LossValue::Graph(loss) => {
                losses.add(&kind, planned.weight, &loss)?;
                let weighted = (loss.to_dtype(candle_core::DType::F32)? * planned.weight)?;
                graph = Some(match graph {
                    Some(g) => (g + weighted)?,
                    None => weighted,
                });
            }
            LossValue::Backpropagated { value, grads } => {
                losses.add_host(&kind, planned.weight, f64::from(value))?;
                own_grads.push((planned.weight, grads));
            }
        }
    }
    let scale = 1.0 / accumulation as f64;
    if let Some(graph) = graph {
        let store = graph.backward()?;
        grads.add(vars, &store, scale)?;
    }
    for (weight, store) in own_grads {
        grads.add(vars, &store, weight * scale)?;
    }
    Ok(())
}

/// A loss's complaint about a batch (a label out of range, a wrong number of columns), told with
/// the file and lines of the rows it holds: losses see a batch, the user knows the file.
pub fn in_batch(error: Error, batch: &Batch, train_file: &str) -> Error {
    match error {
        Error::Invalid { message, hint } => {
            let lines: Vec<usize> = batch.examples.iter().map(|row| row.line).collect();
            Error::Invalid {
                message: format!(
                    "{message}; the batch holds the rows at lines {lines:?} of {train_file}"
                ),
                hint,
            }
        }
        other => other,
    }
}

/// Pairs a batch trains on (each example's documents).
pub fn batch_pairs(batch: &Batch) -> usize {
    batch
        .examples
        .iter()
        .map(|row| {
            row.fields
                .iter()
                .skip(1)
                .map(|f| match f {
                    crate::data::Field::Text(_) => 1,
                    crate::data::Field::List(l) => l.len(),
                })
                .sum::<usize>()
        })
        .sum()
}
