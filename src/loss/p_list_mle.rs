//! PListMLELoss: position-aware ListMLE, the Plackett-Luce likelihood of the target ranking with
//! per-rank weights (sentence-transformers `cross_encoder/losses/plist_mle.py`,
//! `PListMLELoss.forward` and `PListMLELambdaWeight`, with the v5.7 padding fix and the 6.2
//! 1-based weights).
//!
//! Per query with n real documents in target order `s'_1..s'_n` (activated logits; the target
//! order is the input order when `respect_input_order`, else labels descending):
//!
//! ```text
//! lp_i      = s'_i − log(Σ_{j ≥ i} exp(s'_j) + 1e-10)      (padding never enters the sum)
//! w_r       = 2^(n − r) − 1, r = 1..n                      (n = 3 → 3, 1, 0)
//! λ_r       = w_r / (Σ w + 1e-10)
//! per_query = − Σ_i λ_i · lp_i          (ListMLE: λ = 1)
//! L         = mean over queries          (a query without documents counts as 0)
//! ```
//!
//! The normaliser is evaluated as `m + log(Σ exp(s'_j − m) + 1e-10·exp(−m))` with
//! `m = max(0, max s')`: the same number without overflow. Inputs as in
//! [`crate::loss::listwise`].

use candle_core::{Tensor, D};
use serde_json::json;

use crate::error::Result;
use crate::loss::activation::ActivationFn;
use crate::loss::batch::require_one_label;
use crate::loss::listwise::{index_matrix, ListBatch, ListwiseLoss};
use crate::loss::objective::{BuiltinLoss, Loss};
use crate::loss::params::{optional_json, Params};
use crate::loss::tensor_ops::{matrix_like, zero_loss};

/// The fixed `self.eps` of sentence-transformers' PListMLELoss.
const EPS: f64 = 1e-10;

/// BibTeX of the paper sentence-transformers cites for PListMLELoss.
pub const CITATION: Option<&str> = Some(
    r#"@inproceedings{lan2014position,
  title={Position-Aware ListMLE: A Sequential Learning Process for Ranking},
  author={Lan, Yanyan and Zhu, Yadong and Guo, Jiafeng and Niu, Shuzi and Cheng, Xueqi},
  booktitle={UAI},
  volume={14},
  pages={449--458},
  year={2014}
}"#,
);

/// sentence-transformers' default `PListMLELambdaWeight()`: rank r (1-based) of a list of n
/// documents weighs `2^(n − r) − 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PListMleLambdaWeight;

impl PListMleLambdaWeight {
    /// The path sentence-transformers' `fullname()` prints in the model card.
    pub const FULLNAME: &'static str =
        "sentence_transformers.cross_encoder.losses.plist_mle.PListMLELambdaWeight";

    /// Unnormalised weights of ranks 1..n, padded with 0 to `width`.
    pub fn weights(&self, n: usize, width: usize) -> Vec<f64> {
        (1..=width)
            .map(|r| {
                if r <= n {
                    2f64.powi((n - r) as i32) - 1.0
                } else {
                    0.0
                }
            })
            .collect()
    }
}

/// Hyper-parameters of [`p_list_mle`].
#[derive(Debug, Clone, PartialEq)]
pub struct PListMleConfig {
    /// Per-rank weights; `None` makes this ListMLE. Default [`PListMleLambdaWeight`].
    pub lambda_weight: Option<PListMleLambdaWeight>,
    /// Applied to the logits first. Default identity.
    pub activation_fn: ActivationFn,
    /// Pairs per forward pass; does not change the math.
    pub mini_batch_size: Option<i64>,
    /// `true` (default): the input order of the documents is the target ranking and the labels
    /// are unused; `false`: rank by label, descending (ties keep input order).
    pub respect_input_order: bool,
}

impl Default for PListMleConfig {
    fn default() -> Self {
        PListMleConfig {
            lambda_weight: Some(PListMleLambdaWeight),
            activation_fn: ActivationFn::Identity,
            mini_batch_size: None,
            respect_input_order: true,
        }
    }
}

impl PListMleConfig {
    /// Parameter names accepted in a recipe's `[[loss]]` table.
    pub const PARAMS: &'static [&'static str] = &[
        "lambda_weight",
        "activation_fn",
        "mini_batch_size",
        "respect_input_order",
    ];

    /// Reads the loss parameters (the caller removes `kind`, `labels` and `weight`).
    /// `lambda_weight` is `"PListMLELambdaWeight"` (or its full path, or `"default"`) or
    /// `"none"`; custom discount functions are not expressible in a recipe.
    pub fn from_params(params: &toml::Table) -> Result<Self> {
        let params = Params::new("p_list_mle", params, Self::PARAMS)?;
        let lambda_weight = match params.str("lambda_weight")? {
            None => Some(PListMleLambdaWeight),
            Some(name) => {
                let last = name.rsplit('.').next().unwrap_or_default();
                if last.eq_ignore_ascii_case("none") {
                    None
                } else if last == "PListMLELambdaWeight" || last.eq_ignore_ascii_case("default") {
                    Some(PListMleLambdaWeight)
                } else {
                    return Err(params.error(
                        "lambda_weight",
                        format!("must be \"PListMLELambdaWeight\" or \"none\", found \"{name}\""),
                    ));
                }
            }
        };
        Ok(PListMleConfig {
            lambda_weight,
            activation_fn: params.activation("activation_fn")?.unwrap_or_default(),
            mini_batch_size: params.mini_batch_size("mini_batch_size")?,
            respect_input_order: params.bool("respect_input_order")?.unwrap_or(true),
        })
    }

    /// The keys sentence-transformers' `get_config_dict` returns, for the model card.
    pub fn config_dict(&self) -> serde_json::Value {
        json!({
            "lambda_weight": optional_json(self.lambda_weight.map(|_| PListMleLambdaWeight::FULLNAME)),
            "activation_fn": self.activation_fn.fullname(),
            "mini_batch_size": optional_json(self.mini_batch_size),
            "respect_input_order": self.respect_input_order,
        })
    }
}

/// PListMLE over padded lists: `logits`, `labels`, `mask` all `(B, M)` (mask nonzero = real).
pub fn p_list_mle(
    logits: &Tensor,
    labels: &Tensor,
    mask: &Tensor,
    cfg: &PListMleConfig,
) -> Result<Tensor> {
    plackett_luce("p_list_mle", logits, labels, mask, cfg)
}

/// The shared ListMLE / PListMLE computation; `loss` names the caller in errors.
pub(crate) fn plackett_luce(
    loss: &str,
    logits: &Tensor,
    labels: &Tensor,
    mask: &Tensor,
    cfg: &PListMleConfig,
) -> Result<Tensor> {
    let batch = ListBatch::new(loss, logits, labels, mask, cfg.activation_fn)?;
    let (queries, width) = (batch.batch(), batch.width);
    if queries == 0 || width == 0 {
        return zero_loss(&batch.logits);
    }
    // Target order per query: its real documents (in input order, or by label descending),
    // then its padding.
    let mut permutation = Vec::with_capacity(queries);
    let mut rank_weights = Vec::with_capacity(queries);
    let mut target_mask = Vec::with_capacity(queries);
    for b in 0..queries {
        let mut order = batch.real_positions(b);
        if !cfg.respect_input_order {
            order.sort_by(|&x, &y| batch.labels[b][y].total_cmp(&batch.labels[b][x]));
        }
        let n = order.len();
        order.extend((0..width).filter(|&j| !batch.mask[b][j]));
        permutation.push(order.iter().map(|&j| j as u32).collect::<Vec<u32>>());
        target_mask.push(
            (0..width)
                .map(|i| f64::from(u8::from(i < n)))
                .collect::<Vec<f64>>(),
        );
        rank_weights.push(match cfg.lambda_weight {
            None => target_mask[b].clone(),
            Some(lambda_weight) => {
                let weights = lambda_weight.weights(n, width);
                let total: f64 = weights.iter().sum::<f64>() + EPS;
                weights.into_iter().map(|w| w / total).collect()
            }
        });
    }
    let like = &batch.logits;
    let permutation = index_matrix(&permutation, width, like.device())?;
    let scores = batch.real_logits(0.0)?.gather(&permutation, 1)?;
    let target_mask = matrix_like(&target_mask, width, like)?;
    let rank_weights = matrix_like(&rank_weights, width, like)?;
    // upper[j][i] = 1 for j ≥ i, so (e @ upper)_i = Σ_{j ≥ i} e_j.
    let upper: Vec<Vec<f64>> = (0..width)
        .map(|j| (0..width).map(|i| f64::from(u8::from(j >= i))).collect())
        .collect();
    let upper = matrix_like(&upper, width, like)?;

    let shift = scores.max_keepdim(D::Minus1)?.detach().maximum(0.0)?;
    let shifted = scores.broadcast_sub(&shift)?;
    let tail_sums = shifted.exp()?.mul(&target_mask)?.matmul(&upper)?;
    let eps_term = shift.neg()?.exp()?.affine(EPS, 0.0)?;
    let log_probs = shifted.sub(&tail_sums.broadcast_add(&eps_term)?.log()?)?;
    let per_query = log_probs.mul(&rank_weights)?.sum(D::Minus1)?;
    Ok(per_query.mean_all()?.neg()?)
}

/// Build `p_list_mle` from its recipe parameters (`num_labels` must be 1): the listwise adapter
/// over [`p_list_mle()`].
pub fn build(
    row: &'static BuiltinLoss,
    params: &toml::Table,
    num_labels: usize,
) -> Result<Box<dyn Loss>> {
    require_one_label(row.kind, num_labels)?;
    Ok(Box::new(ListwiseLoss {
        row,
        config: PListMleConfig::from_params(params)?,
        math: p_list_mle,
        mini_batch_size: |config: &PListMleConfig| config.mini_batch_size,
        config_dict: PListMleConfig::config_dict,
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
    fn golden_value_with_1_based_weights() -> Result<()> {
        // `PListMLELoss.forward` (cross_encoder/losses/plist_mle.py, sentence-transformers 6.2:
        // weights (3,1,0)/4 and (1,0)/1, masked): 0.618744
        let (logits, labels, mask) = golden_batch();
        let loss = p_list_mle(&logits, &labels, &mask, &PListMleConfig::default())?;
        assert_close(scalar(&loss), 0.618744, 5e-7);
        Ok(())
    }

    #[test]
    fn weights_by_hand() -> Result<()> {
        assert_eq!(PListMleLambdaWeight.weights(3, 4), vec![3.0, 1.0, 0.0, 0.0]);
        // One query [1.5, 0.3], n = 2: weights (1, 0) → only the first term:
        // −(1.5 − log(e^1.5 + e^0.3 + 1e-10)) · 1/(1 + 1e-10)
        let expected = -(1.5 - (1.5f64.exp() + 0.3f64.exp() + 1e-10).ln()) / (1.0 + 1e-10);
        let loss = p_list_mle(
            &m64(&[&[1.5, 0.3]]),
            &m64(&[&[1.0, 0.0]]),
            &m64(&[&[1.0, 1.0]]),
            &PListMleConfig::default(),
        )?;
        assert_close(scalar(&loss), expected, 1e-14);
        Ok(())
    }

    #[test]
    fn label_order_when_not_respecting_input_order() -> Result<()> {
        // Labels [0, 2, 1] give the target order (1, 2, 0): same as feeding the logits
        // permuted that way in input order.
        let cfg = PListMleConfig {
            respect_input_order: false,
            ..Default::default()
        };
        let by_labels = p_list_mle(
            &m64(&[&[0.4, -0.3, 1.1]]),
            &m64(&[&[0.0, 2.0, 1.0]]),
            &m64(&[&[1.0; 3]]),
            &cfg,
        )?;
        let by_input = p_list_mle(
            &m64(&[&[-0.3, 1.1, 0.4]]),
            &m64(&[&[9.0, 9.0, 9.0]]),
            &m64(&[&[1.0; 3]]),
            &PListMleConfig::default(),
        )?;
        assert_close(scalar(&by_labels), scalar(&by_input), 1e-14);
        Ok(())
    }

    #[test]
    fn padding_does_not_change_the_loss() -> Result<()> {
        let (logits, labels, mask) = golden_batch();
        let (wide_logits, wide_labels, wide_mask) = wider_golden_batch();
        for respect_input_order in [true, false] {
            let cfg = PListMleConfig {
                respect_input_order,
                ..Default::default()
            };
            let base = scalar(&p_list_mle(&logits, &labels, &mask, &cfg)?);
            let wide = scalar(&p_list_mle(&wide_logits, &wide_labels, &wide_mask, &cfg)?);
            assert_close(wide, base, 1e-12);
            // a padded position in the middle of a row is skipped the same way
            let holed = p_list_mle(
                &m64(&[&[0.2, 7.0, 1.0, -0.5], &[2.0, 0.5, 3.0, 3.0]]),
                &m64(&[&[1.0, 5.0, 0.0, 0.0], &[0.0, 1.0, 0.0, 0.0]]),
                &m64(&[&[1.0, 0.0, 1.0, 1.0], &[1.0, 1.0, 0.0, 0.0]]),
                &cfg,
            )?;
            assert_close(scalar(&holed), base, 1e-12);
        }
        Ok(())
    }

    #[test]
    fn large_logits_do_not_overflow() -> Result<()> {
        // exp(200) overflows f32; the shifted form equals −Σ λ·(s_i − logsumexp(s_i..)).
        let logits = m64(&[&[200.0, 199.0]]).to_dtype(candle_core::DType::F32)?;
        let loss = p_list_mle(
            &logits,
            &m64(&[&[1.0, 0.0]]),
            &m64(&[&[1.0, 1.0]]),
            &PListMleConfig::default(),
        )?;
        let expected = (1.0 + (-1.0f64).exp()).ln(); // −(200 − log(e^200 + e^199))
        assert_close(scalar(&loss), expected, 1e-5);
        Ok(())
    }

    #[test]
    fn gradient_matches_central_differences() {
        let (_, labels, mask) = golden_batch();
        for respect_input_order in [true, false] {
            let cfg = PListMleConfig {
                respect_input_order,
                ..Default::default()
            };
            check_gradient(&[0.2, 1.0, -0.5, 2.0, 0.5, 0.0], &[2, 3], 1e-6, |x| {
                p_list_mle(x, &labels, &mask, &cfg)
            });
        }
    }

    #[test]
    fn config_from_params_and_card() {
        assert_eq!(
            PListMleConfig::default().config_dict(),
            json!({
                "lambda_weight": "sentence_transformers.cross_encoder.losses.plist_mle.PListMLELambdaWeight",
                "activation_fn": "torch.nn.modules.linear.Identity",
                "mini_batch_size": null,
                "respect_input_order": true
            })
        );
        let cfg = PListMleConfig::from_params(&table(
            "lambda_weight = \"none\"\nrespect_input_order = false",
        ))
        .unwrap();
        assert_eq!((cfg.lambda_weight, cfg.respect_input_order), (None, false));
        let message = PListMleConfig::from_params(&table("respect_input_order = \"yes\""))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "loss \"p_list_mle\": parameter \"respect_input_order\" must be true or false, found string \"yes\""
        );
    }
}
