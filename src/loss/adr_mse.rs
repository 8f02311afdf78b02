//! ADRMSELoss: approximate-discounted-rank MSE, the Rank-DistiLLM listwise distillation loss
//! (sentence-transformers `cross_encoder/losses/adr_mse.py`, `ADRMSELoss.forward`, v5.5+).
//!
//! Per query, over its real documents (s = activated logits, y = labels):
//!
//! ```text
//! true_rank_i   = #{j: y_j > y_i} + (#{j: y_j = y_i} + 1) / 2     (ties share the average rank)
//! approx_rank_i = 1 + Σ_{j ≠ i} σ(alpha · (s_j − s_i))
//! ℓ_i           = (true_rank_i − approx_rank_i)² / log2(true_rank_i + 1)
//! L             = Σ_{valid i} ℓ_i / #valid documents of the batch
//! ```
//!
//! Inputs as in [`crate::loss::listwise`]. A batch without documents gives 0
//! (sentence-transformers: NaN).

use candle_core::{Tensor, D};
use serde_json::json;

use crate::error::Result;
use crate::loss::activation::ActivationFn;
use crate::loss::batch::require_one_label;
use crate::loss::listwise::{ListBatch, ListwiseLoss};
use crate::loss::objective::{BuiltinLoss, Loss};
use crate::loss::params::{optional_json, Params};
use crate::loss::tensor_ops::{matrix_like, zero_loss};

/// BibTeX of the paper sentence-transformers cites for ADRMSELoss.
pub const CITATION: Option<&str> = Some(
    r#"@inproceedings{schlatt2025rankdistillm,
    title={Rank-DistiLLM: Closing the Effectiveness Gap Between Cross-Encoders and LLMs for Passage Re-ranking},
    author={Schlatt, Ferdinand and Fröbe, Maik and Scells, Harrisen and Zhuang, Shengyao and Koopman, Bevan and Zuccon, Guido and Stein, Benno and Potthast, Martin and Hagen, Matthias},
    booktitle={Advances in Information Retrieval (ECIR 2025)},
    year={2025},
    doi={10.1007/978-3-031-88714-7_31},
}"#,
);

/// Hyper-parameters of [`adr_mse`].
#[derive(Debug, Clone, PartialEq)]
pub struct AdrMseConfig {
    /// Sharpness of the sigmoid in the approximate rank. Default 1.
    pub alpha: f64,
    /// Applied to the logits first. Default identity.
    pub activation_fn: ActivationFn,
    /// Pairs per forward pass; does not change the math.
    pub mini_batch_size: Option<i64>,
}

impl Default for AdrMseConfig {
    fn default() -> Self {
        AdrMseConfig {
            alpha: 1.0,
            activation_fn: ActivationFn::Identity,
            mini_batch_size: None,
        }
    }
}

impl AdrMseConfig {
    /// Parameter names accepted in a recipe's `[[loss]]` table.
    pub const PARAMS: &'static [&'static str] = &["alpha", "activation_fn", "mini_batch_size"];

    /// Reads the loss parameters (the caller removes `kind`, `labels` and `weight`).
    pub fn from_params(params: &toml::Table) -> Result<Self> {
        let params = Params::new("adr_mse", params, Self::PARAMS)?;
        Ok(AdrMseConfig {
            alpha: params.f64("alpha")?.unwrap_or(1.0),
            activation_fn: params.activation("activation_fn")?.unwrap_or_default(),
            mini_batch_size: params.mini_batch_size("mini_batch_size")?,
        })
    }

    /// The keys sentence-transformers' `get_config_dict` returns, for the model card.
    pub fn config_dict(&self) -> serde_json::Value {
        json!({
            "alpha": self.alpha,
            "activation_fn": self.activation_fn.fullname(),
            "mini_batch_size": optional_json(self.mini_batch_size),
        })
    }
}

/// ADR-MSE over padded lists: `logits`, `labels`, `mask` all `(B, M)` (mask nonzero = real).
pub fn adr_mse(
    logits: &Tensor,
    labels: &Tensor,
    mask: &Tensor,
    cfg: &AdrMseConfig,
) -> Result<Tensor> {
    let batch = ListBatch::new("adr_mse", logits, labels, mask, cfg.activation_fn)?;
    let width = batch.width;
    // Constants from the labels: true ranks and their discounts (0 on padding).
    let mut true_ranks = Vec::with_capacity(batch.batch());
    let mut discounts = Vec::with_capacity(batch.batch());
    let mut num_valid = 0usize;
    for (row, keep) in batch.labels.iter().zip(&batch.mask) {
        let valid: Vec<f64> = (0..width).filter(|&j| keep[j]).map(|j| row[j]).collect();
        num_valid += valid.len();
        let ranks: Vec<f64> = (0..width)
            .map(|i| {
                if !keep[i] {
                    return 0.0;
                }
                let greater = valid.iter().filter(|&&y| y > row[i]).count() as f64;
                let equal = valid.iter().filter(|&&y| y == row[i]).count() as f64;
                greater + (equal + 1.0) / 2.0
            })
            .collect();
        discounts.push(
            ranks
                .iter()
                .zip(keep)
                .map(|(r, &k)| if k { 1.0 / (r + 1.0).log2() } else { 0.0 })
                .collect::<Vec<f64>>(),
        );
        true_ranks.push(ranks);
    }
    let scores = batch.real_logits(0.0)?;
    if num_valid == 0 {
        return zero_loss(&scores);
    }
    let mask = batch.mask_tensor()?;
    let true_ranks = matrix_like(&true_ranks, width, &scores)?;
    let discounts = matrix_like(&discounts, width, &scores)?;
    // diffs[b, i, j] = s_j − s_i
    let diffs = scores.unsqueeze(1)?.broadcast_sub(&scores.unsqueeze(2)?)?;
    let pairwise = candle_nn::ops::sigmoid(&diffs.affine(cfg.alpha, 0.0)?)?
        .broadcast_mul(&mask.unsqueeze(1)?)?;
    // The diagonal adds σ(0) = 0.5 for each real i; remove it.
    let approx_ranks = pairwise
        .sum(D::Minus1)?
        .sub(&mask.affine(0.5, 0.0)?)?
        .affine(1.0, 1.0)?;
    let errors = true_ranks.sub(&approx_ranks)?.sqr()?.mul(&discounts)?;
    Ok(errors.sum_all()?.affine(1.0 / num_valid as f64, 0.0)?)
}

/// Build `adr_mse` from its recipe parameters (`num_labels` must be 1): the listwise adapter
/// over [`adr_mse()`].
pub fn build(
    row: &'static BuiltinLoss,
    params: &toml::Table,
    num_labels: usize,
) -> Result<Box<dyn Loss>> {
    require_one_label(row.kind, num_labels)?;
    Ok(Box::new(ListwiseLoss {
        row,
        config: AdrMseConfig::from_params(params)?,
        math: adr_mse,
        mini_batch_size: |config: &AdrMseConfig| config.mini_batch_size,
        config_dict: AdrMseConfig::config_dict,
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
        // `ADRMSELoss.forward` (cross_encoder/losses/adr_mse.py), alpha = 1: 0.539200
        let (logits, labels, mask) = golden_batch();
        let loss = adr_mse(&logits, &labels, &mask, &AdrMseConfig::default())?;
        assert_close(scalar(&loss), 0.539200, 5e-7);
        Ok(())
    }

    #[test]
    fn ties_share_the_average_rank() -> Result<()> {
        // labels [1, 1, 0]: true ranks 1.5, 1.5, 3. Equal logits [0, 0, x] with x → −∞ give
        // approx ranks 1 + 0.5 = 1.5 for the tied pair and 3 for the last: loss → 0.
        let loss = adr_mse(
            &m64(&[&[0.0, 0.0, -60.0]]),
            &m64(&[&[1.0, 1.0, 0.0]]),
            &m64(&[&[1.0, 1.0, 1.0]]),
            &AdrMseConfig::default(),
        )?;
        assert_close(scalar(&loss), 0.0, 1e-24);
        Ok(())
    }

    #[test]
    fn padding_does_not_change_the_loss() -> Result<()> {
        let (logits, labels, mask) = golden_batch();
        let (wide_logits, wide_labels, wide_mask) = wider_golden_batch();
        let cfg = AdrMseConfig::default();
        let base = scalar(&adr_mse(&logits, &labels, &mask, &cfg)?);
        assert_close(
            scalar(&adr_mse(&wide_logits, &wide_labels, &wide_mask, &cfg)?),
            base,
            1e-12,
        );
        let shifted = (logits + 4.0)?;
        assert_close(
            scalar(&adr_mse(&shifted, &labels, &mask, &cfg)?),
            base,
            1e-12,
        );
        Ok(())
    }

    #[test]
    fn gradient_matches_central_differences() {
        let (_, labels, mask) = golden_batch();
        let cfg = AdrMseConfig {
            alpha: 2.0,
            ..Default::default()
        };
        check_gradient(&[0.2, 1.0, -0.5, 2.0, 0.5, 0.0], &[2, 3], 1e-6, |x| {
            adr_mse(x, &labels, &mask, &cfg)
        });
    }

    #[test]
    fn empty_batch_is_zero() -> Result<()> {
        let loss = adr_mse(
            &m64(&[&[1.0, 2.0]]),
            &m64(&[&[1.0, 0.0]]),
            &m64(&[&[0.0, 0.0]]),
            &AdrMseConfig::default(),
        )?;
        assert_eq!(scalar(&loss), 0.0);
        Ok(())
    }

    #[test]
    fn config_from_params_and_card() {
        let cfg = AdrMseConfig::from_params(&table("alpha = 2")).unwrap();
        assert_eq!(
            cfg.config_dict(),
            json!({"alpha": 2.0, "activation_fn": "torch.nn.modules.linear.Identity", "mini_batch_size": null})
        );
    }
}
