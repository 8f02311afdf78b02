//! BinaryCrossEntropyLoss: pointwise relevance classification (sentence-transformers
//! `cross_encoder/losses/binary_cross_entropy.py`, `BinaryCrossEntropyLoss.forward`).
//!
//! Inputs: (query, document) pairs, one student logit per pair. Labels: 1 for relevant, 0 for
//! not, or soft labels in [0, 1] (e.g. STS scores / 5).
//!
//! `L = (1/B) Σ_b −[ p·y_b·log σ(x_b) + (1 − y_b)·log(1 − σ(x_b)) ]`, with `x = act(logits)` and
//! `p = pos_weight` (torch `BCEWithLogitsLoss`), computed in the stable form
//! `(1 − y)·x + (1 + (p − 1)·y)·softplus(−x)`.
//!
//! `activation_fn` is applied *before* the BCE-with-logits, as in sentence-transformers: a
//! sigmoid there squashes twice, so keep the identity default.

use candle_core::Tensor;
use serde_json::json;

use crate::data::Row;
use crate::error::{Error, Result};
use crate::loss::activation::ActivationFn;
use crate::loss::batch::require_one_label;
use crate::loss::objective::{BuiltinLoss, Loss};
use crate::loss::params::{optional_json, Params};
use crate::loss::pointwise::PointwiseLoss;
use crate::loss::tensor_ops::{one_label_per_pair, one_logit_per_pair, upcast};

/// sentence-transformers' BinaryCrossEntropyLoss has no `citation` property.
pub const CITATION: Option<&str> = None;

/// Hyper-parameters of [`binary_cross_entropy`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BinaryCrossEntropyConfig {
    /// Applied to the logits before BCE-with-logits. Default identity.
    pub activation_fn: ActivationFn,
    /// Weight of the positive term (torch `pos_weight`); `None` means 1. sentence-transformers
    /// recommends the number of hard negatives per positive for `labeled-pair` data.
    pub pos_weight: Option<f64>,
}

impl BinaryCrossEntropyConfig {
    /// Parameter names accepted in a recipe's `[[loss]]` table.
    pub const PARAMS: &'static [&'static str] = &["activation_fn", "pos_weight"];

    /// Reads the loss parameters (the caller removes `kind`, `labels` and `weight`);
    /// `pos_weight` must be a finite number ≥ 0.
    pub fn from_params(params: &toml::Table) -> Result<Self> {
        let params = Params::new("binary_cross_entropy", params, Self::PARAMS)?;
        let pos_weight = params.f64("pos_weight")?;
        if let Some(p) = pos_weight.filter(|p| *p < 0.0) {
            return Err(params.error("pos_weight", format!("must be >= 0, found {p}")));
        }
        Ok(BinaryCrossEntropyConfig {
            activation_fn: params.activation("activation_fn")?.unwrap_or_default(),
            pos_weight,
        })
    }

    /// The keys sentence-transformers' `get_config_dict` returns, for the model card.
    pub fn config_dict(&self) -> serde_json::Value {
        json!({
            "activation_fn": self.activation_fn.fullname(),
            "pos_weight": optional_json(self.pos_weight),
        })
    }
}

/// `softplus(x) = log(1 + exp(x))`, stable for large |x|, built from differentiable ops.
fn softplus(xs: &Tensor) -> Result<Tensor> {
    let tail = xs.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    Ok(xs.relu()?.add(&tail)?)
}

/// Mean BCE-with-logits of `act(logits)` against `labels`.
///
/// * `logits`: `(B,)` or `(B, 1)` student logits (`num_labels` must be 1).
/// * `labels`: `(B,)` or `(B, 1)`, values in [0, 1] (hard or soft), treated as constants.
pub fn binary_cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    cfg: &BinaryCrossEntropyConfig,
) -> Result<Tensor> {
    let logits = upcast(&one_logit_per_pair("binary_cross_entropy", logits)?)?;
    let labels = one_label_per_pair("binary_cross_entropy", labels, logits.dim(0)?)?
        .detach()
        .to_dtype(logits.dtype())?;
    let xs = cfg.activation_fn.apply(&logits)?;
    let pos_weight = cfg.pos_weight.unwrap_or(1.0);
    // (1 - y) * x + (1 + (p - 1) * y) * softplus(-x)
    let negative_term = labels.affine(-1.0, 1.0)?.mul(&xs)?;
    let log_weight = labels.affine(pos_weight - 1.0, 1.0)?;
    let positive_term = log_weight.mul(&softplus(&xs.neg()?)?)?;
    Ok(negative_term.add(&positive_term)?.mean_all()?)
}

/// Build `binary_cross_entropy` from its recipe parameters (`num_labels` must be 1): the pointwise adapter over
/// [`binary_cross_entropy()`].
pub fn build(
    row: &'static BuiltinLoss,
    params: &toml::Table,
    num_labels: usize,
) -> Result<Box<dyn Loss>> {
    require_one_label(row.kind, num_labels)?;
    Ok(Box::new(PointwiseLoss {
        row,
        config: BinaryCrossEntropyConfig::from_params(params)?,
        math: binary_cross_entropy,
        config_dict: BinaryCrossEntropyConfig::config_dict,
        citation: CITATION,
        integer_labels: false,
        check_labels: Some(check_probability_labels),
    }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::params::table;
    use crate::loss::testing::{assert_close, check_gradient, scalar, t64};

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn hand_computed_value_with_pos_weight() -> Result<()> {
        // torch.nn.BCEWithLogitsLoss(pos_weight=p): mean of −[p·y·log σ(x) + (1−y)·log(1−σ(x))]
        let xs = [1.2, -0.4, 0.0, 3.0];
        let ys = [1.0, 0.0, 0.3, 1.0];
        for pos_weight in [None, Some(4.0)] {
            let p = pos_weight.unwrap_or(1.0);
            let expected = xs
                .iter()
                .zip(ys)
                .map(|(x, y)| -(p * y * sigmoid(*x).ln() + (1.0 - y) * (1.0 - sigmoid(*x)).ln()))
                .sum::<f64>()
                / 4.0;
            let cfg = BinaryCrossEntropyConfig {
                pos_weight,
                ..Default::default()
            };
            let loss = binary_cross_entropy(&t64(&xs, &[4, 1]), &t64(&ys, &[4]), &cfg)?;
            assert_close(scalar(&loss), expected, 1e-14);
        }
        Ok(())
    }

    #[test]
    fn large_logits_stay_finite() -> Result<()> {
        // −log σ(−200) = 200 (+ 1e-87), −log(1 − σ(200)) = 200: the naive form gives inf.
        let loss = binary_cross_entropy(
            &t64(&[-200.0, 200.0], &[2]),
            &t64(&[1.0, 0.0], &[2]),
            &BinaryCrossEntropyConfig::default(),
        )?;
        assert_close(scalar(&loss), 200.0, 1e-9);
        Ok(())
    }

    #[test]
    fn gradient_matches_central_differences() {
        let labels = t64(&[1.0, 0.0, 0.25], &[3]);
        for (activation_fn, pos_weight) in [
            (ActivationFn::Identity, None),
            (ActivationFn::Identity, Some(3.0)),
            (ActivationFn::Tanh, Some(0.5)),
        ] {
            let cfg = BinaryCrossEntropyConfig {
                activation_fn,
                pos_weight,
            };
            check_gradient(&[0.0, -0.7, 1.3], &[3], 1e-6, |x| {
                binary_cross_entropy(x, &labels, &cfg)
            });
        }
    }

    #[test]
    fn num_labels_mismatch_is_an_error() {
        let message = binary_cross_entropy(
            &t64(&[0.0; 6], &[2, 3]),
            &t64(&[0.0; 2], &[2]),
            &BinaryCrossEntropyConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.starts_with(
                "binary_cross_entropy needs one logit per pair (num_labels = 1) but the logits have shape [2, 3]"
            ),
            "{message}"
        );
    }

    #[test]
    fn config_from_params_and_card() {
        let cfg = BinaryCrossEntropyConfig::from_params(&table("pos_weight = 4")).unwrap();
        assert_eq!(cfg.pos_weight, Some(4.0));
        assert_eq!(
            cfg.config_dict(),
            json!({"activation_fn": "torch.nn.modules.linear.Identity", "pos_weight": 4.0})
        );
        assert_eq!(
            BinaryCrossEntropyConfig::default().config_dict(),
            json!({"activation_fn": "torch.nn.modules.linear.Identity", "pos_weight": null})
        );
        let message = BinaryCrossEntropyConfig::from_params(&table("pos_weight = -1"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "loss \"binary_cross_entropy\": parameter \"pos_weight\" must be >= 0, found -1"
        );
    }
}
