//! MSELoss: pointwise distillation of teacher scores (sentence-transformers
//! `cross_encoder/losses/mse.py`, `MSELoss.forward`).
//!
//! Inputs: (query, document) pairs, one student logit per pair. Labels: one float per pair
//! (teacher logits, or teacher sigmoid scores together with `activation_fn = "sigmoid"`).
//!
//! `L = (1/B) Σ_b (act(logit_b) − label_b)²`
//!
//! Reference: Hofstätter et al., "Improving Efficient Neural Ranking Models with
//! Cross-Architecture Knowledge Distillation", arXiv 2010.02666 (sentence-transformers cites it
//! in the docstring only, so [`CITATION`] is `None`).

use candle_core::Tensor;
use serde_json::json;

use crate::error::Result;
use crate::loss::activation::ActivationFn;
use crate::loss::batch::require_one_label;
use crate::loss::objective::{BuiltinLoss, Loss};
use crate::loss::params::Params;
use crate::loss::pointwise::PointwiseLoss;
use crate::loss::tensor_ops::{one_label_per_pair, one_logit_per_pair, upcast};

/// sentence-transformers' MSELoss has no `citation` property.
pub const CITATION: Option<&str> = None;

/// Hyper-parameters of [`mse`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MseConfig {
    /// Applied to the logits before the squared error. Default identity.
    pub activation_fn: ActivationFn,
}

impl MseConfig {
    /// Parameter names accepted in a recipe's `[[loss]]` table.
    pub const PARAMS: &'static [&'static str] = &["activation_fn"];

    /// Reads the loss parameters (the caller removes `kind`, `labels` and `weight`); unknown
    /// names and wrong types are errors that say what was expected.
    pub fn from_params(params: &toml::Table) -> Result<Self> {
        let params = Params::new("mse", params, Self::PARAMS)?;
        Ok(MseConfig {
            activation_fn: params.activation("activation_fn")?.unwrap_or_default(),
        })
    }

    /// The keys sentence-transformers' `get_config_dict` returns, for the model card.
    pub fn config_dict(&self) -> serde_json::Value {
        json!({ "activation_fn": self.activation_fn.fullname() })
    }
}

/// Mean squared error between `act(logits)` and `labels`.
///
/// * `logits`: `(B,)` or `(B, 1)`, the student's logits (a `(B, C)` with `C != 1` is an error:
///   the loss needs `num_labels = 1`).
/// * `labels`: `(B,)` or `(B, 1)` targets, treated as constants (sentence-transformers detaches
///   them).
///
/// Returns a scalar in the logits' dtype (f32 for half-precision logits).
pub fn mse(logits: &Tensor, labels: &Tensor, cfg: &MseConfig) -> Result<Tensor> {
    let logits = upcast(&one_logit_per_pair("mse", logits)?)?;
    let labels = one_label_per_pair("mse", labels, logits.dim(0)?)?
        .detach()
        .to_dtype(logits.dtype())?;
    let scores = cfg.activation_fn.apply(&logits)?;
    Ok(scores.sub(&labels)?.sqr()?.mean_all()?)
}

/// Build `mse` from its recipe parameters (`num_labels` must be 1): the pointwise adapter over
/// [`mse()`].
pub fn build(
    row: &'static BuiltinLoss,
    params: &toml::Table,
    num_labels: usize,
) -> Result<Box<dyn Loss>> {
    require_one_label(row.kind, num_labels)?;
    Ok(Box::new(PointwiseLoss {
        row,
        config: MseConfig::from_params(params)?,
        math: mse,
        config_dict: MseConfig::config_dict,
        citation: CITATION,
        integer_labels: false,
        check_labels: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::params::table;
    use crate::loss::testing::{assert_close, check_gradient, scalar, t64};

    #[test]
    fn hand_computed_value() -> Result<()> {
        // ((0.5-1)^2 + (2-0)^2 + (-1+1)^2) / 3 = (0.25 + 4 + 0) / 3
        let loss = mse(
            &t64(&[0.5, 2.0, -1.0], &[3]),
            &t64(&[1.0, 0.0, -1.0], &[3]),
            &MseConfig::default(),
        )?;
        assert_close(scalar(&loss), 4.25 / 3.0, 1e-15);
        Ok(())
    }

    #[test]
    fn sigmoid_activation_is_applied_before_the_error() -> Result<()> {
        let cfg = MseConfig {
            activation_fn: ActivationFn::Sigmoid,
        };
        let loss = mse(&t64(&[0.0], &[1, 1]), &t64(&[1.0], &[1]), &cfg)?;
        assert_close(scalar(&loss), 0.25, 1e-15); // (sigmoid(0) - 1)^2
        Ok(())
    }

    #[test]
    fn zero_when_student_equals_teacher() -> Result<()> {
        let scores = t64(&[3.2, -1.0, 0.0, 7.5], &[4]);
        assert_eq!(scalar(&mse(&scores, &scores, &MseConfig::default())?), 0.0);
        Ok(())
    }

    #[test]
    fn gradient_matches_central_differences() {
        let labels = t64(&[0.3, -1.0, 2.0], &[3]);
        for activation_fn in [
            ActivationFn::Identity,
            ActivationFn::Sigmoid,
            ActivationFn::Tanh,
        ] {
            let cfg = MseConfig { activation_fn };
            check_gradient(&[0.4, -0.7, 1.3], &[3], 1e-6, |x| mse(x, &labels, &cfg));
        }
    }

    #[test]
    fn shape_errors_carry_the_shapes() {
        let cfg = MseConfig::default();
        let message = mse(&t64(&[0.0; 6], &[2, 3]), &t64(&[0.0; 2], &[2]), &cfg)
            .unwrap_err()
            .to_string();
        assert!(message.contains("shape [2, 3]"), "{message}");
        let message = mse(&t64(&[0.0; 3], &[3]), &t64(&[0.0; 2], &[2]), &cfg)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "mse: labels have shape [2] but 3 logits need [3] (one label per pair)"
        );
    }

    #[test]
    fn config_from_params_and_card() {
        let cfg = MseConfig::from_params(&table("activation_fn = \"sigmoid\"")).unwrap();
        assert_eq!(cfg.activation_fn, ActivationFn::Sigmoid);
        assert_eq!(
            cfg.config_dict(),
            json!({"activation_fn": "torch.nn.modules.activation.Sigmoid"})
        );
        assert_eq!(
            MseConfig::from_params(&toml::Table::new()).unwrap(),
            MseConfig::default()
        );
        let message = MseConfig::from_params(&table("scale = 2"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "loss \"mse\": unknown parameter \"scale\"; accepted parameters: activation_fn"
        );
    }
}
