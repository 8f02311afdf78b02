//! RankNetLoss: the pairwise logistic loss over correctly-ordered pairs (sentence-transformers
//! `cross_encoder/losses/rank_net.py`, `RankNetLoss`, a `LambdaLoss` subclass). It is exactly
//! [`lambda_loss`](crate::loss::lambda::lambda_loss) with `WeightingScheme::None`:
//!
//! `L = − mean_{(b,i,j): t_i > t_j, i ≤ k or j ≤ k} log2(max(σ(sigma·(ŝ_i − ŝ_j)), eps))`
//!
//! over pairs in predicted order (see [`crate::loss::lambda`] for the notation and
//! [`crate::loss::listwise`] for the padded inputs).

use candle_core::Tensor;
use serde_json::Value;

use crate::error::Result;
use crate::loss::activation::ActivationFn;
use crate::loss::batch::require_one_label;
use crate::loss::lambda::{lambda_loss_named, LambdaLossConfig, ReductionLog, WeightingScheme};
use crate::loss::listwise::ListwiseLoss;
use crate::loss::objective::{BuiltinLoss, Loss};
use crate::loss::params::Params;

/// BibTeX of the paper sentence-transformers cites for RankNetLoss.
pub const CITATION: Option<&str> = Some(
    r#"@inproceedings{burges2005learning,
  title={Learning to Rank using Gradient Descent},
  author={Burges, Chris and Shaked, Tal and Renshaw, Erin and Lazier, Ari and Deeds, Matt and Hamilton, Nicole and Hullender, Greg},
  booktitle={Proceedings of the 22nd international conference on Machine learning},
  pages={89--96},
  year={2005}
}"#,
);

/// Hyper-parameters of [`rank_net`]: LambdaLoss's without the weighting scheme.
#[derive(Debug, Clone, PartialEq)]
pub struct RankNetConfig {
    /// Only pairs with a position in the predicted top k; `None` = all.
    pub k: Option<usize>,
    /// Slope of the pair sigmoid. Default 1.
    pub sigma: f64,
    /// Probability floor. Default 1e-10.
    pub eps: f64,
    /// `log2` (default) or `ln`.
    pub reduction_log: ReductionLog,
    /// Applied to the logits first. Default identity.
    pub activation_fn: ActivationFn,
    /// Pairs per forward pass; does not change the math.
    pub mini_batch_size: Option<i64>,
}

impl Default for RankNetConfig {
    fn default() -> Self {
        RankNetConfig::from_lambda(&LambdaLossConfig::default())
    }
}

impl RankNetConfig {
    /// Parameter names accepted in a recipe's `[[loss]]` table.
    pub const PARAMS: &'static [&'static str] = &[
        "k",
        "sigma",
        "eps",
        "reduction_log",
        "activation_fn",
        "mini_batch_size",
    ];

    fn from_lambda(lambda: &LambdaLossConfig) -> Self {
        RankNetConfig {
            k: lambda.k,
            sigma: lambda.sigma,
            eps: lambda.eps,
            reduction_log: lambda.reduction_log,
            activation_fn: lambda.activation_fn,
            mini_batch_size: lambda.mini_batch_size,
        }
    }

    /// The equivalent LambdaLoss configuration (no weighting).
    pub fn lambda(&self) -> LambdaLossConfig {
        LambdaLossConfig {
            weighting_scheme: WeightingScheme::None,
            k: self.k,
            sigma: self.sigma,
            eps: self.eps,
            reduction_log: self.reduction_log,
            activation_fn: self.activation_fn,
            mini_batch_size: self.mini_batch_size,
        }
    }

    /// Reads the loss parameters (the caller removes `kind`, `labels` and `weight`).
    pub fn from_params(params: &toml::Table) -> Result<Self> {
        let params = Params::new("rank_net", params, Self::PARAMS)?;
        Ok(RankNetConfig::from_lambda(&LambdaLossConfig::read_shared(
            &params,
        )?))
    }

    /// The keys sentence-transformers' `get_config_dict` returns: LambdaLoss's minus
    /// `weighting_scheme`.
    pub fn config_dict(&self) -> Value {
        let mut dict = self.lambda().config_dict();
        if let Some(map) = dict.as_object_mut() {
            map.shift_remove("weighting_scheme");
        }
        dict
    }
}

/// RankNet over padded lists: `logits`, `labels`, `mask` all `(B, M)` (mask nonzero = real).
/// Returns 0 (connected to the logits) when no pair is valid.
pub fn rank_net(
    logits: &Tensor,
    labels: &Tensor,
    mask: &Tensor,
    cfg: &RankNetConfig,
) -> Result<Tensor> {
    lambda_loss_named("rank_net", logits, labels, mask, &cfg.lambda())
}

/// Build `rank_net` from its recipe parameters (`num_labels` must be 1): the listwise adapter
/// over [`rank_net()`].
pub fn build(
    row: &'static BuiltinLoss,
    params: &toml::Table,
    num_labels: usize,
) -> Result<Box<dyn Loss>> {
    require_one_label(row.kind, num_labels)?;
    Ok(Box::new(ListwiseLoss {
        row,
        config: RankNetConfig::from_params(params)?,
        math: rank_net,
        mini_batch_size: |config: &RankNetConfig| config.mini_batch_size,
        config_dict: RankNetConfig::config_dict,
        citation: CITATION,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::lambda::tests::{golden_batch, wider_golden_batch};
    use crate::loss::params::table;
    use crate::loss::testing::{assert_close, check_gradient, m64, scalar};
    use serde_json::json;

    #[test]
    fn golden_value() -> Result<()> {
        // `RankNetLoss.forward` (cross_encoder/losses/rank_net.py via lambda_loss.py): 1.575279
        let (logits, labels, mask) = golden_batch();
        let loss = rank_net(&logits, &labels, &mask, &RankNetConfig::default())?;
        assert_close(scalar(&loss), 1.575279, 5e-7);
        Ok(())
    }

    #[test]
    fn classic_ranknet_by_hand() -> Result<()> {
        // One query, labels [2, 1, 0], logits [0.5, 1.0, -1.0]: predicted order (1.0, 0.5, −1.0)
        // has labels (1, 2, 0); ordered pairs (label_i > label_j): (2>1), (2>0), (1>0) →
        // −log σ(0.5−1.0), −log σ(0.5+1.0), −log σ(1.0+1.0), natural log, mean of 3.
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let expected = -(sigmoid(-0.5).ln() + sigmoid(1.5).ln() + sigmoid(2.0).ln()) / 3.0;
        let cfg = RankNetConfig {
            reduction_log: ReductionLog::Natural,
            ..Default::default()
        };
        let loss = rank_net(
            &m64(&[&[0.5, 1.0, -1.0]]),
            &m64(&[&[2.0, 1.0, 0.0]]),
            &m64(&[&[1.0; 3]]),
            &cfg,
        )?;
        assert_close(scalar(&loss), expected, 1e-14);
        Ok(())
    }

    #[test]
    fn padding_and_shift_invariance() -> Result<()> {
        let (logits, labels, mask) = golden_batch();
        let (wide_logits, wide_labels, wide_mask) = wider_golden_batch();
        let cfg = RankNetConfig::default();
        let base = scalar(&rank_net(&logits, &labels, &mask, &cfg)?);
        assert_close(
            scalar(&rank_net(&wide_logits, &wide_labels, &wide_mask, &cfg)?),
            base,
            1e-12,
        );
        let shifted = (logits + 3.0)?;
        assert_close(
            scalar(&rank_net(&shifted, &labels, &mask, &cfg)?),
            base,
            1e-12,
        );
        Ok(())
    }

    #[test]
    fn gradient_matches_central_differences() {
        let (_, labels, mask) = golden_batch();
        let cfg = RankNetConfig {
            sigma: 0.7,
            ..Default::default()
        };
        check_gradient(&[0.2, 1.0, -0.5, 2.0, 0.5, 0.0], &[2, 3], 1e-6, |x| {
            rank_net(x, &labels, &mask, &cfg)
        });
    }

    #[test]
    fn config_from_params_and_card() {
        assert_eq!(
            RankNetConfig::default().config_dict(),
            json!({
                "k": null,
                "sigma": 1.0,
                "eps": 1e-10,
                "reduction_log": "binary",
                "activation_fn": "torch.nn.modules.linear.Identity",
                "mini_batch_size": null
            })
        );
        let message = RankNetConfig::from_params(&table("weighting_scheme = \"none\""))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "loss \"rank_net\": unknown parameter \"weighting_scheme\"; accepted parameters: k, sigma, eps, reduction_log, activation_fn, mini_batch_size"
        );
        let cfg = RankNetConfig::from_params(&table("sigma = 2\nk = 5")).unwrap();
        assert_eq!((cfg.sigma, cfg.k), (2.0, Some(5)));
    }
}
