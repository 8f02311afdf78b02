//! ListNetLoss: cross-entropy between the softmax of the labels and the softmax of the logits
//! per query (sentence-transformers `cross_encoder/losses/list_net.py`, `ListNetLoss.forward`).
//!
//! `L = (1/B) Σ_b [ − Σ_j softmax(y_b)_j · log_softmax(act(s_b))_j ]` over each query's real
//! documents. There is no temperature: binary labels [1, 0, 0] give the target
//! [0.576, 0.212, 0.212]. With teacher logits as labels this is listwise softmax distillation
//! at T = 1 (KL(p_teacher ‖ p_student) plus a constant). Inputs as in [`crate::loss::listwise`].

use candle_core::Tensor;
use serde_json::json;

use crate::error::{Error, Result};
use crate::loss::activation::ActivationFn;
use crate::loss::batch::require_one_label;
use crate::loss::listwise::{ListBatch, ListwiseLoss};
use crate::loss::objective::{BuiltinLoss, Loss};
use crate::loss::params::{optional_json, Params};
use crate::loss::tensor_ops::{log_softmax_last_dim, matrix_like};

/// BibTeX of the paper sentence-transformers cites for ListNetLoss.
pub const CITATION: Option<&str> = Some(
    r#"@inproceedings{cao2007learning,
    title={Learning to Rank: From Pairwise Approach to Listwise Approach},
    author={Cao, Zhe and Qin, Tao and Liu, Tie-Yan and Tsai, Ming-Feng and Li, Hang},
    booktitle={Proceedings of the 24th international conference on Machine learning},
    pages={129--136},
    year={2007}
}"#,
);

/// Hyper-parameters of [`list_net`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListNetConfig {
    /// Applied to the logits first. Default identity.
    pub activation_fn: ActivationFn,
    /// Pairs per forward pass; does not change the math.
    pub mini_batch_size: Option<i64>,
}

impl ListNetConfig {
    /// Parameter names accepted in a recipe's `[[loss]]` table.
    pub const PARAMS: &'static [&'static str] = &["activation_fn", "mini_batch_size"];

    /// Reads the loss parameters (the caller removes `kind`, `labels` and `weight`).
    pub fn from_params(params: &toml::Table) -> Result<Self> {
        let params = Params::new("list_net", params, Self::PARAMS)?;
        Ok(ListNetConfig {
            activation_fn: params.activation("activation_fn")?.unwrap_or_default(),
            mini_batch_size: params.mini_batch_size("mini_batch_size")?,
        })
    }

    /// The keys sentence-transformers' `get_config_dict` returns, for the model card.
    pub fn config_dict(&self) -> serde_json::Value {
        json!({
            "activation_fn": self.activation_fn.fullname(),
            "mini_batch_size": optional_json(self.mini_batch_size),
        })
    }
}

/// ListNet over padded lists: `logits`, `labels`, `mask` all `(B, M)` (mask nonzero = real).
///
/// A query without documents is an error (sentence-transformers yields NaN).
pub fn list_net(
    logits: &Tensor,
    labels: &Tensor,
    mask: &Tensor,
    cfg: &ListNetConfig,
) -> Result<Tensor> {
    let batch = ListBatch::new("list_net", logits, labels, mask, cfg.activation_fn)?;
    // Target distribution: softmax of the labels over the real documents, 0 on padding (the
    // −inf labels of sentence-transformers).
    let mut targets = Vec::with_capacity(batch.batch());
    for (b, (row, keep)) in batch.labels.iter().zip(&batch.mask).enumerate() {
        let max = (0..batch.width)
            .filter(|&j| keep[j])
            .map(|j| row[j])
            .fold(f64::NEG_INFINITY, f64::max);
        if max == f64::NEG_INFINITY {
            return Err(Error::invalid(format!(
                "list_net: query {b} has no documents; every query needs at least one"
            )));
        }
        let exp: Vec<f64> = (0..batch.width)
            .map(|j| if keep[j] { (row[j] - max).exp() } else { 0.0 })
            .collect();
        let total: f64 = exp.iter().sum();
        targets.push(exp.into_iter().map(|e| e / total).collect::<Vec<f64>>());
    }
    let targets = matrix_like(&targets, batch.width, &batch.logits)?;
    // Padding at −1e16 as in sentence-transformers: exp underflows to 0, and 0 · (−1e16) = 0.
    let log_probs = log_softmax_last_dim(&batch.real_logits(-1e16)?)?;
    let per_query = targets.mul(&log_probs)?.sum(1)?;
    Ok(per_query.mean_all()?.neg()?)
}

/// Build `list_net` from its recipe parameters (`num_labels` must be 1): the listwise adapter
/// over [`list_net()`].
pub fn build(
    row: &'static BuiltinLoss,
    params: &toml::Table,
    num_labels: usize,
) -> Result<Box<dyn Loss>> {
    require_one_label(row.kind, num_labels)?;
    Ok(Box::new(ListwiseLoss {
        row,
        config: ListNetConfig::from_params(params)?,
        math: list_net,
        mini_batch_size: |config: &ListNetConfig| config.mini_batch_size,
        config_dict: ListNetConfig::config_dict,
        citation: CITATION,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::lambda::tests::{golden_batch, wider_golden_batch};
    use crate::loss::params::table;
    use crate::loss::testing::{assert_close, check_gradient, m64, scalar};

    #[test]
    fn golden_value() -> Result<()> {
        // `ListNetLoss.forward` (cross_encoder/losses/list_net.py): 1.295551
        let (logits, labels, mask) = golden_batch();
        let loss = list_net(&logits, &labels, &mask, &ListNetConfig::default())?;
        assert_close(scalar(&loss), 1.295551, 5e-7);
        Ok(())
    }

    #[test]
    fn padding_and_shift_invariance() -> Result<()> {
        let (logits, labels, mask) = golden_batch();
        let (wide_logits, wide_labels, wide_mask) = wider_golden_batch();
        let cfg = ListNetConfig::default();
        let base = scalar(&list_net(&logits, &labels, &mask, &cfg)?);
        assert_close(
            scalar(&list_net(&wide_logits, &wide_labels, &wide_mask, &cfg)?),
            base,
            1e-12,
        );
        let shifted = m64(&[&[-3.8, -3.0, -4.5], &[12.0, 10.5, 0.0]]);
        assert_close(
            scalar(&list_net(&shifted, &labels, &mask, &cfg)?),
            base,
            1e-12,
        );
        Ok(())
    }

    #[test]
    fn equals_kl_plus_teacher_entropy() -> Result<()> {
        // With teacher scores as labels: CE(p_t, p_s) = KL(p_t‖p_s) + H(p_t) ≥ H(p_t), with
        // equality when the student logits equal the teacher's.
        let teacher = m64(&[&[2.0, -1.0, 0.5]]);
        let mask = m64(&[&[1.0, 1.0, 1.0]]);
        let z: f64 = [2.0f64, -1.0, 0.5].iter().map(|x| x.exp()).sum();
        let entropy: f64 = [2.0f64, -1.0, 0.5]
            .iter()
            .map(|x| {
                let p = x.exp() / z;
                -p * p.ln()
            })
            .sum();
        let loss = list_net(&teacher, &teacher, &mask, &ListNetConfig::default())?;
        assert_close(scalar(&loss), entropy, 1e-14);
        Ok(())
    }

    #[test]
    fn gradient_matches_central_differences() {
        let (_, labels, mask) = golden_batch();
        for activation_fn in [ActivationFn::Identity, ActivationFn::Sigmoid] {
            let cfg = ListNetConfig {
                activation_fn,
                ..Default::default()
            };
            check_gradient(&[0.2, 1.0, -0.5, 2.0, 0.5, 0.0], &[2, 3], 1e-6, |x| {
                list_net(x, &labels, &mask, &cfg)
            });
        }
    }

    #[test]
    fn empty_query_is_an_error() {
        let message = list_net(
            &m64(&[&[1.0, 2.0], &[0.0, 0.0]]),
            &m64(&[&[1.0, 0.0], &[0.0, 0.0]]),
            &m64(&[&[1.0, 1.0], &[0.0, 0.0]]),
            &ListNetConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            message,
            "list_net: query 1 has no documents; every query needs at least one"
        );
    }

    #[test]
    fn config_from_params_and_card() {
        let cfg = ListNetConfig::from_params(&table("mini_batch_size = 32")).unwrap();
        assert_eq!(
            cfg.config_dict(),
            json!({"activation_fn": "torch.nn.modules.linear.Identity", "mini_batch_size": 32})
        );
        assert!(CITATION.unwrap().contains("cao2007learning"));
    }
}
