//! Every sentence-transformers CrossEncoder loss, as free functions over candle tensors.
//!
//! One file per loss, named by the recipe's `kind` (snake_case of the sentence-transformers
//! class name), and one row per loss in [`BUILTIN_LOSSES`] (kind, class name, builder), which
//! the registry, the recipe checker and the model card read. Each file has:
//! * the math as a free function over student logits the glue has already computed, built from
//!   differentiable candle ops so `Tensor::backward` reaches the model; each function applies
//!   its config's `activation_fn` itself, so pass **raw** logits;
//! * a config struct with sentence-transformers' parameter names and defaults,
//!   `from_params(&toml::Table)` (the `[[loss]]` table minus `kind`, `labels`, `weight`) and
//!   `config_dict()` (exactly the keys of sentence-transformers' `get_config_dict`, for the
//!   model card);
//! * `CITATION`, the BibTeX sentence-transformers attaches, or `None`;
//! * `build`, which makes the [`Loss`] the trainer calls: the shared [`PointwiseLoss`] or
//!   [`ListwiseLoss`] adapter over the math, or the loss's own adapter ([`MarginMseLoss`],
//!   [`MultipleNegativesRankingLoss`], [`CachedMultipleNegativesRankingLoss`]).
//!
//! A loss of your own implements [`Loss`] and is registered by name with
//! [`register_custom_loss`] (see `examples/custom_loss.rs`).
//!
//! The semantics are sentence-transformers 6.2's (`sentence_transformers/cross_encoder/losses/`,
//! one file per loss): MNRL samples like v5.3+, (P)ListMLE masks padding like v5.7+, LambdaLoss
//! top-k keeps a pair when either position is in the top k and returns 0 without valid pairs,
//! PListMLE weights are 1-based. Half-precision logits are computed in f32.
//!
//! | kind | function | inputs |
//! |---|---|---|
//! | `cross_entropy` | [`cross_entropy()`] | `(B, C)` logits, class labels |
//! | `binary_cross_entropy` | [`binary_cross_entropy()`] | `(B,)` logits, labels in [0, 1] |
//! | `mse` | [`mse()`] | `(B,)` logits, `(B,)` targets |
//! | `margin_mse` | [`margin_mse()`] | `(B,)` positive, `(B, N)` negative logits, margins or raw scores |
//! | `multiple_negatives_ranking` | [`mnrl_pairs()`] then [`multiple_negatives_ranking()`] | `(B, 1 + k + H)` scores |
//! | `cached_multiple_negatives_ranking` | [`loss_and_logit_gradients()`], [`chunk_surrogate()`] | pair logits |
//! | `lambda`, `rank_net`, `list_net`, `list_mle`, `p_list_mle`, `adr_mse` | [`lambda_loss()`], [`rank_net()`], … | `(B, M)` logits, labels, mask ([`pad_lists()`]) |

pub mod activation;
pub mod adr_mse;
mod batch;
pub mod binary_cross_entropy;
mod builtin;
pub mod cached_multiple_negatives_ranking;
pub mod cross_entropy;
pub mod lambda;
pub mod list_mle;
pub mod list_net;
pub mod listwise;
pub mod margin_mse;
pub mod mse;
pub mod multiple_negatives_ranking;
mod objective;
pub mod p_list_mle;
mod params;
mod pointwise;
pub mod rank_net;
mod registry;
mod tensor_ops;
#[cfg(test)]
mod testing;

pub use activation::ActivationFn;
pub use adr_mse::{adr_mse, AdrMseConfig};
pub use batch::{require_columns, require_labels, scalar_labels, student_logits, text_column};
pub use binary_cross_entropy::{binary_cross_entropy, BinaryCrossEntropyConfig};
pub use builtin::{builtin_loss, BUILTIN_KINDS, BUILTIN_LOSSES};
pub use cached_multiple_negatives_ranking::{
    chunk_ranges, chunk_surrogate, loss_and_logit_gradients, CachedMultipleNegativesRankingConfig,
    CachedMultipleNegativesRankingLoss,
};
pub use cross_entropy::{cross_entropy, CrossEntropyConfig};
pub use lambda::{lambda_loss, LambdaLossConfig, ReductionLog, WeightingScheme};
pub use list_mle::{list_mle, ListMleConfig};
pub use list_net::{list_net, ListNetConfig};
pub use listwise::{listwise_chunk_size, pad_lists, ListwiseLoss, PaddedLists};
pub use margin_mse::{margin_labels, margin_mse, stack_label_rows, MarginMseConfig, MarginMseLoss};
pub use mse::{mse, MseConfig};
pub use multiple_negatives_ranking::{
    mnrl_pairs, multiple_negatives_ranking, sample_in_batch_negatives, Candidate, MnrlPairs,
    MultipleNegativesRankingConfig, MultipleNegativesRankingLoss, NumNegatives, ScoredPair,
};
pub use objective::{default_class_name, BuiltinLoss, Loss, LossFactory, LossInput, LossValue};
pub use p_list_mle::{p_list_mle, PListMleConfig, PListMleLambdaWeight};
pub use pointwise::PointwiseLoss;
pub use rank_net::{rank_net, RankNetConfig};
pub use registry::{custom_loss_kinds, register_custom_loss, LossRegistry};

/// The recipe `kind` of every built-in loss: the snake_case of the sentence-transformers class
/// name, in the order of [`BUILTIN_LOSSES`].
pub fn kinds() -> &'static [&'static str] {
    &BUILTIN_KINDS
}

/// The sentence-transformers class name of a built-in loss `kind` (for the model card), or
/// `None` for an unknown kind.
pub fn class_name(kind: &str) -> Option<&'static str> {
    builtin_loss(kind).map(|row| row.class_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Result;
    use crate::loss::lambda::tests::golden_batch;
    use crate::loss::testing::{assert_close, scalar};
    use candle_core::{DType, Tensor, Var};

    type ListwiseLoss = fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>;

    /// Every listwise loss with default parameters and its golden value on the batch of
    /// `lambda::tests::golden_batch` (a Python port of each loss's `forward`).
    fn listwise_losses() -> Vec<(&'static str, ListwiseLoss, f64)> {
        vec![
            (
                "lambda",
                |x, y, m| lambda_loss(x, y, m, &Default::default()),
                6.349100,
            ),
            (
                "rank_net",
                |x, y, m| rank_net(x, y, m, &Default::default()),
                1.575279,
            ),
            (
                "list_net",
                |x, y, m| list_net(x, y, m, &Default::default()),
                1.295551,
            ),
            (
                "list_mle",
                |x, y, m| list_mle(x, y, m, &Default::default()),
                0.858561,
            ),
            (
                "p_list_mle",
                |x, y, m| p_list_mle(x, y, m, &Default::default()),
                0.618744,
            ),
            (
                "adr_mse",
                |x, y, m| adr_mse(x, y, m, &Default::default()),
                0.539200,
            ),
        ]
    }

    #[test]
    fn listwise_goldens_hold_in_f32() -> Result<()> {
        let (logits, labels, mask) = golden_batch();
        let (logits, labels, mask) = (
            logits.to_dtype(DType::F32)?,
            labels.to_dtype(DType::F32)?,
            mask.to_dtype(DType::U8)?,
        );
        for (name, loss, golden) in listwise_losses() {
            let value = loss(&logits, &labels, &mask)?;
            assert_eq!(value.dtype(), DType::F32, "{name}");
            assert_close(scalar(&value), golden, 2e-5);
        }
        Ok(())
    }

    #[test]
    fn half_precision_logits_give_a_finite_f32_loss_and_gradient() -> Result<()> {
        // sentence-transformers test_listwise_loss_supports_low_precision: bf16/fp16 models
        // must give an fp32, finite loss and finite gradients.
        let (logits, labels, mask) = golden_batch();
        for dtype in [DType::BF16, DType::F16] {
            for (name, loss, golden) in listwise_losses() {
                let var = Var::from_tensor(&logits.to_dtype(dtype)?)?;
                let value = loss(var.as_tensor(), &labels, &mask)?;
                assert_eq!(value.dtype(), DType::F32, "{name}");
                // bf16 rounds 0.2 to 0.2002: the loss moves by well under 1 %.
                assert_close(scalar(&value), golden, 0.01 * golden);
                let grad = value.backward()?.get(&var).expect("connected").clone();
                assert_eq!(grad.dtype(), dtype);
                let grad: Vec<f32> = grad.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                assert!(grad.iter().all(|g| g.is_finite()), "{name}: {grad:?}");
            }
        }
        Ok(())
    }

    #[test]
    fn pad_lists_feeds_every_listwise_loss() -> Result<()> {
        // The glue's path: row-major pair logits + ragged label lists → golden values.
        let pair_logits = Tensor::new(&[0.2f64, 1.0, -0.5, 2.0, 0.5], &candle_core::Device::Cpu)?;
        let lists = pad_lists(&pair_logits, &[vec![1.0, 0.0, 0.0], vec![0.0, 1.0]])?;
        for (name, loss, golden) in listwise_losses() {
            let value = loss(&lists.logits, &lists.labels, &lists.mask)?;
            assert!((scalar(&value) - golden).abs() < 5e-7, "{name}");
        }
        Ok(())
    }

    #[test]
    fn every_kind_has_a_class_name() {
        assert_eq!(kinds().len(), 12);
        for kind in kinds() {
            assert!(class_name(kind).is_some(), "{kind}");
        }
        assert_eq!(class_name("lambda_loss"), None);
    }
}
