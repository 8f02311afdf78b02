//! ListMLELoss: the Plackett-Luce likelihood of the target ranking (sentence-transformers
//! `cross_encoder/losses/list_mle.py`, `ListMLELoss`, a `PListMLELoss` subclass, with the v5.7
//! padding fix). It is [`p_list_mle`](crate::loss::p_list_mle::p_list_mle) without rank weights:
//!
//! `per_query = − Σ_{i ≤ n} [ s'_i − log(Σ_{i ≤ j ≤ n} exp(s'_j) + 1e-10) ]`, mean over queries,
//! with `s'` the activated logits in target order (input order by default, or labels
//! descending). Inputs as in [`crate::loss::listwise`].

use candle_core::Tensor;
use serde_json::Value;

use crate::error::Result;
use crate::loss::activation::ActivationFn;
use crate::loss::batch::require_one_label;
use crate::loss::listwise::ListwiseLoss;
use crate::loss::objective::{BuiltinLoss, Loss};
use crate::loss::p_list_mle::{plackett_luce, PListMleConfig};
use crate::loss::params::Params;

/// BibTeX of the paper sentence-transformers cites for ListMLELoss.
pub const CITATION: Option<&str> = Some(
    r#"@inproceedings{10.1145/1390156.1390306,
    title = {Listwise Approach to Learning to Rank - Theory and Algorithm},
    author = {Xia, Fen and Liu, Tie-Yan and Wang, Jue and Zhang, Wensheng and Li, Hang},
    booktitle = {Proceedings of the 25th International Conference on Machine Learning},
    pages = {1192-1199},
    year = {2008},
    url = {https://doi.org/10.1145/1390156.1390306},
}"#,
);

/// Hyper-parameters of [`list_mle`].
#[derive(Debug, Clone, PartialEq)]
pub struct ListMleConfig {
    /// Applied to the logits first. Default identity.
    pub activation_fn: ActivationFn,
    /// Pairs per forward pass; does not change the math.
    pub mini_batch_size: Option<i64>,
    /// `true` (default): input order is the target ranking; `false`: labels descending.
    pub respect_input_order: bool,
}

impl Default for ListMleConfig {
    fn default() -> Self {
        ListMleConfig {
            activation_fn: ActivationFn::Identity,
            mini_batch_size: None,
            respect_input_order: true,
        }
    }
}

impl ListMleConfig {
    /// Parameter names accepted in a recipe's `[[loss]]` table.
    pub const PARAMS: &'static [&'static str] =
        &["activation_fn", "mini_batch_size", "respect_input_order"];

    /// Reads the loss parameters (the caller removes `kind`, `labels` and `weight`).
    pub fn from_params(params: &toml::Table) -> Result<Self> {
        let params = Params::new("list_mle", params, Self::PARAMS)?;
        Ok(ListMleConfig {
            activation_fn: params.activation("activation_fn")?.unwrap_or_default(),
            mini_batch_size: params.mini_batch_size("mini_batch_size")?,
            respect_input_order: params.bool("respect_input_order")?.unwrap_or(true),
        })
    }

    /// The equivalent PListMLE configuration (no rank weights).
    pub fn p_list_mle(&self) -> PListMleConfig {
        PListMleConfig {
            lambda_weight: None,
            activation_fn: self.activation_fn,
            mini_batch_size: self.mini_batch_size,
            respect_input_order: self.respect_input_order,
        }
    }

    /// The keys sentence-transformers' `get_config_dict` returns: PListMLE's minus
    /// `lambda_weight`.
    pub fn config_dict(&self) -> Value {
        let mut dict = self.p_list_mle().config_dict();
        if let Some(map) = dict.as_object_mut() {
            map.shift_remove("lambda_weight");
        }
        dict
    }
}

/// ListMLE over padded lists: `logits`, `labels`, `mask` all `(B, M)` (mask nonzero = real).
pub fn list_mle(
    logits: &Tensor,
    labels: &Tensor,
    mask: &Tensor,
    cfg: &ListMleConfig,
) -> Result<Tensor> {
    plackett_luce("list_mle", logits, labels, mask, &cfg.p_list_mle())
}

/// Build `list_mle` from its recipe parameters (`num_labels` must be 1): the listwise adapter
/// over [`list_mle()`].
pub fn build(
    row: &'static BuiltinLoss,
    params: &toml::Table,
    num_labels: usize,
) -> Result<Box<dyn Loss>> {
    require_one_label(row.kind, num_labels)?;
    Ok(Box::new(ListwiseLoss {
        row,
        config: ListMleConfig::from_params(params)?,
        math: list_mle,
        mini_batch_size: |config: &ListMleConfig| config.mini_batch_size,
        config_dict: ListMleConfig::config_dict,
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
    fn golden_value_without_the_pad_leak() -> Result<()> {
        // `ListMLELoss.forward` (cross_encoder/losses/list_mle.py via plist_mle.py), v5.7+:
        // 0.858561; the ≤ v5.6 value with padding leaking into the normaliser was 1.148071.
        let (logits, labels, mask) = golden_batch();
        let loss = scalar(&list_mle(
            &logits,
            &labels,
            &mask,
            &ListMleConfig::default(),
        )?);
        assert_close(loss, 0.858561, 5e-7);
        assert!((loss - 1.148071).abs() > 0.2);
        Ok(())
    }

    #[test]
    fn pr_3827_single_list() -> Result<()> {
        // sentence-transformers PR #3827 (`PListMLELoss.forward`, plist_mle.py): ListMLE of
        // [1.5, 0.3] is 0.2633 without padding; with a pad the old code gave 0.9759, the fixed
        // code still 0.2633.
        let cfg = ListMleConfig::default();
        let alone = list_mle(
            &m64(&[&[1.5, 0.3]]),
            &m64(&[&[1.0, 0.0]]),
            &m64(&[&[1.0, 1.0]]),
            &cfg,
        )?;
        assert_close(scalar(&alone), 0.2633, 5e-5);
        let padded = list_mle(
            &m64(&[&[1.5, 0.3, 1e-16]]),
            &m64(&[&[1.0, 0.0, 0.0]]),
            &m64(&[&[1.0, 1.0, 0.0]]),
            &cfg,
        )?;
        assert_close(scalar(&padded), 0.2633, 5e-5);
        Ok(())
    }

    #[test]
    fn invariances() -> Result<()> {
        let (logits, labels, mask) = golden_batch();
        let (wide_logits, wide_labels, wide_mask) = wider_golden_batch();
        for respect_input_order in [true, false] {
            let cfg = ListMleConfig {
                respect_input_order,
                ..Default::default()
            };
            let base = scalar(&list_mle(&logits, &labels, &mask, &cfg)?);
            let wide = scalar(&list_mle(&wide_logits, &wide_labels, &wide_mask, &cfg)?);
            assert_close(wide, base, 1e-12);
            // Adding a constant per query changes ListMLE only through the 1e-10 in the
            // normaliser: below 1e-9 here.
            let shifted = m64(&[&[2.2, 3.0, 1.5], &[-1.0, -2.5, 0.0]]);
            assert_close(
                scalar(&list_mle(&shifted, &labels, &mask, &cfg)?),
                base,
                1e-9,
            );
        }
        Ok(())
    }

    #[test]
    fn gradient_matches_central_differences() {
        let (_, labels, mask) = golden_batch();
        for activation_fn in [ActivationFn::Identity, ActivationFn::Tanh] {
            let cfg = ListMleConfig {
                activation_fn,
                respect_input_order: false,
                ..Default::default()
            };
            check_gradient(&[0.2, 1.0, -0.5, 2.0, 0.5, 0.0], &[2, 3], 1e-6, |x| {
                list_mle(x, &labels, &mask, &cfg)
            });
        }
    }

    #[test]
    fn config_from_params_and_card() {
        assert_eq!(
            ListMleConfig::default().config_dict(),
            json!({
                "activation_fn": "torch.nn.modules.linear.Identity",
                "mini_batch_size": null,
                "respect_input_order": true
            })
        );
        let message = ListMleConfig::from_params(&table("lambda_weight = \"none\""))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "loss \"list_mle\": unknown parameter \"lambda_weight\"; accepted parameters: activation_fn, mini_batch_size, respect_input_order"
        );
    }
}
