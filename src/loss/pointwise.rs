//! What the pointwise losses (MSELoss, BinaryCrossEntropyLoss, CrossEntropyLoss) share: the
//! adapter that scores (column 0, column 1) pairs with one label each and hands the logits to
//! the loss's math.

use candle_core::{DType, Tensor};

use crate::data::Row;
use crate::error::Result;
use crate::loss::batch::{
    require_columns, require_labels, scalar_labels, student_logits, text_column,
};
use crate::loss::objective::{BuiltinLoss, Loss, LossInput, LossValue};
use crate::model::{CrossEncoder, Dropout};

/// A check of a batch's labels against its rows (the loss kind, the rows, their labels).
pub(crate) type LabelCheck = fn(&str, &[Row], &[Vec<f32>]) -> Result<()>;

/// A pointwise loss over (column 0, column 1) pairs with one label each; each pointwise loss's
/// `build` fills it with its row, config and math.
pub struct PointwiseLoss<C: Send> {
    pub(crate) row: &'static BuiltinLoss,
    pub(crate) config: C,
    /// The loss over `(B, num_labels)` logits and `(B,)` labels.
    pub(crate) math: fn(&Tensor, &Tensor, &C) -> Result<Tensor>,
    pub(crate) config_dict: fn(&C) -> serde_json::Value,
    pub(crate) citation: Option<&'static str>,
    /// Labels are class indices (cast to i64) rather than scores.
    pub(crate) integer_labels: bool,
    /// A check of the labels against the rows, run before the forward pass.
    pub(crate) check_labels: Option<LabelCheck>,
}

impl<C: Send> Loss for PointwiseLoss<C> {
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
        require_columns(input.examples, 2, kind, "query and document")?;
        let labels = require_labels(input, kind)?;
        let queries = text_column(input.examples, 0, kind)?;
        let docs = text_column(input.examples, 1, kind)?;
        let pairs: Vec<(&str, &str)> = queries.into_iter().zip(docs).collect();
        if let Some(check_labels) = self.check_labels {
            check_labels(kind, input.examples, labels)?;
        }
        let logits = student_logits(student, &pairs, Some(dropout))?;
        let mut labels = scalar_labels(labels, kind, student.device())?;
        if self.integer_labels {
            labels = labels.to_dtype(DType::I64)?;
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
