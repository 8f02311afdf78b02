//! The [`Loss`] trait the trainer calls, what it is given ([`LossInput`]) and returns
//! ([`LossValue`]), and the shape of a row of the built-in loss table ([`BuiltinLoss`]).

use candle_core::backprop::GradStore;
use candle_core::Tensor;

use crate::data::Row;
use crate::error::Result;
use crate::model::{CrossEncoder, Dropout};

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

    /// The sentence-transformers class name (`MarginMSELoss`), the loss's title on the model
    /// card. The default is [`default_class_name`] of [`kind`](Loss::kind):
    /// `pairwise_hinge` → `PairwiseHingeLoss`.
    fn class_name(&self) -> String {
        default_class_name(self.kind())
    }

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

/// Builds a loss from its recipe parameters (`[[loss]]` keys other than kind/labels/weight) and
/// the student's `num_labels`; errors are user errors that name the parameter.
pub type LossFactory = fn(params: &toml::Table, num_labels: usize) -> Result<Box<dyn Loss>>;

/// One row of the built-in loss table ([`BUILTIN_LOSSES`](crate::loss::BUILTIN_LOSSES)): the
/// names a built-in loss goes by and how to build it.
#[derive(Debug)]
pub struct BuiltinLoss {
    /// The recipe `kind`, the snake_case of the class name (`margin_mse`).
    pub kind: &'static str,
    /// The sentence-transformers class name (`MarginMSELoss`), for the model card.
    pub class_name: &'static str,
    /// Builds the loss from its recipe parameters and the student's `num_labels`; it is given
    /// this row so the loss it builds reports the row's `kind` and `class_name`.
    pub build: fn(
        row: &'static BuiltinLoss,
        params: &toml::Table,
        num_labels: usize,
    ) -> Result<Box<dyn Loss>>,
}

/// The class name a loss goes by when it does not say: its `kind` in CamelCase + `Loss`
/// (`pairwise_hinge` → `PairwiseHingeLoss`).
pub fn default_class_name(kind: &str) -> String {
    let mut name: String = kind
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_uppercase().chain(chars).collect()
            })
        })
        .collect();
    name.push_str("Loss");
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_class_name_is_the_camel_cased_kind() {
        assert_eq!(default_class_name("pairwise_hinge"), "PairwiseHingeLoss");
        assert_eq!(default_class_name("lambda"), "LambdaLoss");
    }
}
