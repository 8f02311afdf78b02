//! CachedMultipleNegativesRankingLoss: MNRL with gradient caching over pairs (sentence-transformers
//! `cross_encoder/losses/cached_multiple_negatives_ranking.py` + `base/losses/gradcache.py`,
//! `CachedMultipleNegativesRankingLoss.forward`; GradCache, Gao et al., arXiv 2101.06983).
//!
//! The loss value and the gradients are those of
//! [`multiple_negatives_ranking()`], with the same in-batch sampling
//! ([`mnrl_pairs`](crate::loss::multiple_negatives_ranking::mnrl_pairs));
//! only the memory profile changes. What the glue does per step:
//!
//! 1. Build the pairs with `mnrl_pairs` and split them into [`chunk_ranges`] of
//!    `mini_batch_size` pairs.
//! 2. Forward every chunk **without** a graph; concatenate the logits (`(P,)`, pair order).
//! 3. [`loss_and_logit_gradients`]: the loss and `∂L/∂logits` from those detached logits.
//! 4. For each chunk, forward again **with** a graph (same dropout RNG state as in step 2) and
//!    call `backward` on [`chunk_surrogate`]`(chunk_logits, chunk_gradients) × loss_weight`; the
//!    parameter gradients add up to those of the uncached loss.
//!
//! Under no-grad evaluation, step 3's loss is all that is needed.

use std::ops::Range;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde_json::json;

use crate::error::{Error, Result};
use crate::loss::activation::ActivationFn;
use crate::loss::batch::{require_one_label, student_logits};
use crate::loss::multiple_negatives_ranking::{
    multiple_negatives_ranking, sampled_pairs, MnrlPairs, MultipleNegativesRankingConfig,
    NumNegatives,
};
use crate::loss::objective::{BuiltinLoss, Loss, LossInput, LossValue};
use crate::loss::params::Params;
use crate::model::{CrossEncoder, Dropout};

/// sentence-transformers' CachedMultipleNegativesRankingLoss (CrossEncoder) has no `citation`
/// property.
pub const CITATION: Option<&str> = None;

/// Hyper-parameters of the cached MNRL: the MNRL ones plus `mini_batch_size`.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedMultipleNegativesRankingConfig {
    /// In-batch negatives per anchor. Default 4.
    pub num_negatives: NumNegatives,
    /// Multiplies the activated scores; 0 disables scaling. Default 10.
    pub scale: f64,
    /// Applied to the logits before scaling. Default sigmoid.
    pub activation_fn: ActivationFn,
    /// Pairs per forward pass (not queries). Default 32.
    pub mini_batch_size: usize,
}

impl Default for CachedMultipleNegativesRankingConfig {
    fn default() -> Self {
        let mnrl = MultipleNegativesRankingConfig::default();
        CachedMultipleNegativesRankingConfig {
            num_negatives: mnrl.num_negatives,
            scale: mnrl.scale,
            activation_fn: mnrl.activation_fn,
            mini_batch_size: 32,
        }
    }
}

impl CachedMultipleNegativesRankingConfig {
    /// Parameter names accepted in a recipe's `[[loss]]` table.
    pub const PARAMS: &'static [&'static str] =
        &["num_negatives", "scale", "activation_fn", "mini_batch_size"];

    /// Reads the loss parameters (the caller removes `kind`, `labels` and `weight`);
    /// `mini_batch_size` must be an integer ≥ 1.
    pub fn from_params(params: &toml::Table) -> Result<Self> {
        let params = Params::new("cached_multiple_negatives_ranking", params, Self::PARAMS)?;
        let mnrl = MultipleNegativesRankingConfig::read(&params)?;
        Ok(CachedMultipleNegativesRankingConfig {
            num_negatives: mnrl.num_negatives,
            scale: mnrl.scale,
            activation_fn: mnrl.activation_fn,
            mini_batch_size: params.usize_at_least("mini_batch_size", 1)?.unwrap_or(32),
        })
    }

    /// The MNRL part of the configuration, for [`multiple_negatives_ranking`] and sampling.
    pub fn ranking(&self) -> MultipleNegativesRankingConfig {
        MultipleNegativesRankingConfig {
            num_negatives: self.num_negatives,
            scale: self.scale,
            activation_fn: self.activation_fn,
        }
    }

    /// The keys sentence-transformers' `get_config_dict` returns, for the model card: the MNRL
    /// keys plus `mini_batch_size`.
    pub fn config_dict(&self) -> serde_json::Value {
        let mut dict = self.ranking().config_dict();
        if let Some(map) = dict.as_object_mut() {
            map.insert("mini_batch_size".into(), json!(self.mini_batch_size));
        }
        dict
    }
}

/// The pair ranges forwarded together: `[0, m), [m, 2m), …` up to `num_pairs`.
pub fn chunk_ranges(num_pairs: usize, mini_batch_size: usize) -> Vec<Range<usize>> {
    let step = mini_batch_size.max(1);
    (0..num_pairs)
        .step_by(step)
        .map(|start| start..(start + step).min(num_pairs))
        .collect()
}

/// GradCache step 3: the MNRL loss of the detached pair logits and its gradient with respect
/// to each logit.
///
/// * `pair_logits`: `(P,)` logits of `pairs.pairs`, in that order (no graph needed).
///
/// Returns `(loss, gradients)`: a detached scalar and a `(P,)` tensor in the logits' order.
pub fn loss_and_logit_gradients(
    pair_logits: &Tensor,
    pairs: &MnrlPairs,
    cfg: &CachedMultipleNegativesRankingConfig,
) -> Result<(Tensor, Tensor)> {
    let logits = Var::from_tensor(&pair_logits.detach())?;
    let scores = pairs.score_matrix(logits.as_tensor())?;
    let loss = multiple_negatives_ranking(&scores, None, &cfg.ranking())?;
    let grads = loss.backward()?;
    let gradients = grads
        .get(logits.as_tensor())
        .cloned()
        .map(Ok)
        .unwrap_or_else(|| logits.as_tensor().zeros_like())?
        .reshape(pair_logits.dims())?;
    Ok((loss.detach(), gradients))
}

/// GradCache step 4 for one chunk: `Σ logits · cached_gradients`, whose backward through the
/// re-run chunk yields that chunk's share of the parameter gradients. Multiply by the loss
/// weight (and any gradient-accumulation factor) before `backward`, as sentence-transformers
/// multiplies by `grad_output`.
pub fn chunk_surrogate(chunk_logits: &Tensor, chunk_gradients: &Tensor) -> Result<Tensor> {
    let logits = chunk_logits.flatten_all()?;
    let gradients = chunk_gradients.flatten_all()?.detach();
    if logits.dims() != gradients.dims() {
        return Err(Error::invalid(format!(
            "cached_multiple_negatives_ranking: chunk logits have shape {:?} but the cached gradients have shape {:?}",
            chunk_logits.dims(),
            chunk_gradients.dims()
        )));
    }
    let gradients = gradients.to_dtype(logits.dtype())?;
    Ok(logits.mul(&gradients)?.sum_all()?)
}

/// CachedMultipleNegativesRankingLoss (GradCache): the same loss and gradients as
/// [`MultipleNegativesRankingLoss`](crate::loss::MultipleNegativesRankingLoss), computed in chunks of `mini_batch_size` pairs so memory
/// stays bounded: a pass without the graph, the loss gradient w.r.t. the logits, then a
/// re-forward per chunk (with the same dropout masks) that backpropagates the cached gradient.
pub struct CachedMultipleNegativesRankingLoss {
    row: &'static BuiltinLoss,
    config: CachedMultipleNegativesRankingConfig,
}

/// Build `cached_multiple_negatives_ranking` from its recipe parameters (`num_labels` must be 1).
pub fn build(
    row: &'static BuiltinLoss,
    params: &toml::Table,
    num_labels: usize,
) -> Result<Box<dyn Loss>> {
    require_one_label(row.kind, num_labels)?;
    Ok(Box::new(CachedMultipleNegativesRankingLoss {
        row,
        config: CachedMultipleNegativesRankingConfig::from_params(params)?,
    }))
}

fn chunk_seed(seed: u64, chunk: usize) -> u64 {
    seed.rotate_left(17) ^ (chunk as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Loss for CachedMultipleNegativesRankingLoss {
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
        _dropout: &mut Dropout,
    ) -> Result<LossValue> {
        let (pairs, texts) = sampled_pairs(input, self.kind(), self.config.num_negatives)?;
        let chunks = chunk_ranges(texts.len(), self.config.mini_batch_size);
        // Pass 1: logits of every chunk, detached.
        let mut detached = Vec::with_capacity(chunks.len());
        for (index, range) in chunks.iter().enumerate() {
            let mut stream = Dropout::new(chunk_seed(input.seed, index));
            detached.push(
                student_logits(student, &texts[range.clone()], Some(&mut stream))?
                    .narrow(1, 0, 1)?
                    .detach(),
            );
        }
        let all = Tensor::cat(&detached, 0)?;
        let (loss, logit_grads) = loss_and_logit_gradients(&all, &pairs, &self.config)?;
        // Pass 2: re-forward each chunk with the same masks and push the cached gradient through.
        let mut total: Option<GradStore> = None;
        for (index, range) in chunks.iter().enumerate() {
            let mut stream = Dropout::new(chunk_seed(input.seed, index));
            let logits = student_logits(student, &texts[range.clone()], Some(&mut stream))?
                .narrow(1, 0, 1)?;
            let chunk_grads = logit_grads.narrow(0, range.start, range.len())?;
            let store = chunk_surrogate(&logits, &chunk_grads)?.backward()?;
            match total.as_mut() {
                None => total = Some(store),
                Some(total) => {
                    for var in student.vars() {
                        if let Some(grad) = store.get(var.as_tensor()) {
                            let sum = match total.remove(var.as_tensor()) {
                                Some(previous) => (previous + grad)?,
                                None => grad.clone(),
                            };
                            total.insert(var.as_tensor(), sum);
                        }
                    }
                }
            }
        }
        let grads = total.ok_or_else(|| {
            Error::invalid("cached_multiple_negatives_ranking: the batch has no pairs")
        })?;
        Ok(LossValue::Backpropagated {
            value: loss.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?,
            grads,
        })
    }

    fn config_dict(&self) -> serde_json::Value {
        self.config.config_dict()
    }

    fn citation(&self) -> Option<&'static str> {
        CITATION
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::multiple_negatives_ranking::mnrl_pairs;
    use crate::loss::params::table;
    use crate::loss::testing::{assert_close, scalar, t64};
    use candle_core::Device;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A toy scorer: the logit of pair (anchor i, candidate (row j, column c)) is
    /// `w · features(i, j, c)`, so parameter gradients are easy to compare.
    fn features(pairs: &MnrlPairs) -> Tensor {
        let rows: Vec<f64> = pairs
            .pairs
            .iter()
            .flat_map(|p| {
                let (i, j, c) = (
                    p.anchor as f64,
                    p.candidate.row as f64,
                    p.candidate.column as f64,
                );
                [
                    1.0,
                    (i - j).sin(),
                    0.3 * c + 0.1 * j,
                    (i * 0.7 + j * 0.2).cos(),
                ]
            })
            .collect();
        t64(&rows, &[pairs.pairs.len(), 4])
    }

    #[test]
    fn cached_gradients_equal_uncached_for_every_chunk_size() -> Result<()> {
        let cfg = CachedMultipleNegativesRankingConfig::default();
        let pairs = mnrl_pairs(5, 2, cfg.num_negatives, &mut ChaCha8Rng::seed_from_u64(11))?;
        let x = features(&pairs);
        let w = Var::from_tensor(&t64(&[0.2, -0.5, 0.8, 0.3], &[4, 1]))?;

        // uncached: one graph through every pair
        let logits = x.matmul(w.as_tensor())?.flatten_all()?;
        let loss = multiple_negatives_ranking(&pairs.score_matrix(&logits)?, None, &cfg.ranking())?;
        let expected: Vec<f64> = loss
            .backward()?
            .get(&w)
            .expect("w used")
            .flatten_all()?
            .to_vec1()?;

        for mini_batch_size in [1, 2, 7, 64] {
            let detached = x.matmul(&w.as_tensor().detach())?.flatten_all()?;
            let (cached_loss, gradients) = loss_and_logit_gradients(&detached, &pairs, &cfg)?;
            assert_close(scalar(&cached_loss), scalar(&loss), 1e-14);
            let mut total = [0.0; 4];
            for range in chunk_ranges(pairs.pairs.len(), mini_batch_size) {
                let chunk = x.narrow(0, range.start, range.len())?;
                let chunk_logits = chunk.matmul(w.as_tensor())?;
                let surrogate = chunk_surrogate(
                    &chunk_logits,
                    &gradients.narrow(0, range.start, range.len())?,
                )?;
                let g: Vec<f64> = surrogate
                    .backward()?
                    .get(&w)
                    .expect("w used")
                    .flatten_all()?
                    .to_vec1()?;
                total.iter_mut().zip(g).for_each(|(t, g)| *t += g);
            }
            for (got, want) in total.iter().zip(&expected) {
                assert_close(*got, *want, 1e-13);
            }
        }
        Ok(())
    }

    #[test]
    fn chunks_cover_every_pair_once() {
        assert_eq!(chunk_ranges(7, 3), vec![0..3, 3..6, 6..7]);
        assert_eq!(chunk_ranges(6, 3), vec![0..3, 3..6]);
        assert_eq!(chunk_ranges(2, 32), vec![0..2]);
        assert!(chunk_ranges(0, 4).is_empty());
    }

    #[test]
    fn surrogate_shape_mismatch_is_an_error() {
        let message = chunk_surrogate(
            &Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
            &Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            message,
            "cached_multiple_negatives_ranking: chunk logits have shape [3] but the cached gradients have shape [4]"
        );
    }

    #[test]
    fn config_from_params_and_card() {
        assert_eq!(
            CachedMultipleNegativesRankingConfig::default().config_dict(),
            json!({
                "scale": 10.0,
                "num_negatives": 4,
                "activation_fn": "torch.nn.modules.activation.Sigmoid",
                "mini_batch_size": 32
            })
        );
        let cfg = CachedMultipleNegativesRankingConfig::from_params(&table(
            "mini_batch_size = 8\nnum_negatives = 2",
        ))
        .unwrap();
        assert_eq!(
            (cfg.mini_batch_size, cfg.num_negatives),
            (8, NumNegatives::Count(2))
        );
        let message =
            CachedMultipleNegativesRankingConfig::from_params(&table("mini_batch_size = 0"))
                .unwrap_err()
                .to_string();
        assert_eq!(
            message,
            "loss \"cached_multiple_negatives_ranking\": parameter \"mini_batch_size\" must be an integer >= 1, found 0"
        );
    }
}
