//! LambdaLoss: pairwise logistic loss weighted by how much swapping a pair changes NDCG
//! (sentence-transformers `cross_encoder/losses/lambda_loss.py`, `LambdaLoss.forward`, after
//! allRank, with the sentence-transformers 6.2 semantics: top-k keeps a pair when *either*
//! position is in the top k, and a batch without a valid pair has loss 0).
//!
//! Inputs: (query, \[documents\]) with graded labels (see [`crate::loss::listwise`]). Per query,
//! with `s` the activated logits, π the predicted order (`s` descending), `t = y∘π` the labels
//! in that order and `y*` the ideal order (labels descending), positions 1-based:
//!
//! ```text
//! P      = {(i, j): t_i > t_j (any finite pair for NDCGLoss1), i ≤ k or j ≤ k}
//! D_i    = log2(1 + i)
//! maxDCG = max(eps, Σ_{i≤k} (2^{max(y*_i,0)} − 1) / D_i)
//! G_i    = (2^{max(t_i,0)} − 1) / maxDCG
//! W_ij   = weighting_scheme(G, D)
//! p_ij   = max(eps, max(eps, σ(sigma·clip(ŝ_i − ŝ_j, ±1e8)))^{W_ij})
//! L      = − mean_{(b,i,j) ∈ P} log2(p_ij)      (ln with reduction_log = "natural")
//! ```
//!
//! The mean runs over the valid pairs of the whole batch, not per query. Ties between logits
//! are ordered by position (torch's sort order for ties is unspecified).

use candle_core::Tensor;
use serde_json::json;

use crate::error::{Error, Result};
use crate::loss::activation::ActivationFn;
use crate::loss::batch::require_one_label;
use crate::loss::listwise::{ListBatch, ListwiseLoss};
use crate::loss::objective::{BuiltinLoss, Loss};
use crate::loss::params::{optional_json, Params};
use crate::loss::tensor_ops::{host_matrix, vector_like, zero_loss};

/// BibTeX of the paper sentence-transformers cites for LambdaLoss.
pub const CITATION: Option<&str> = Some(
    r#"@inproceedings{wang2018lambdaloss,
  title={The LambdaLoss Framework for Ranking Metric Optimization},
  author={Wang, Xuanhui and Li, Cheng and Golbandi, Nadav and Bendersky, Michael and Najork, Marc},
  booktitle={Proceedings of the 27th ACM international conference on information and knowledge management},
  pages={1313--1322},
  year={2018}
}"#,
);

/// How LambdaLoss weights each pair (sentence-transformers' `BaseWeightingScheme` subclasses).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightingScheme {
    /// `NoWeightingScheme`: W = 1 (this is RankNet).
    None,
    /// `NDCGLoss1Scheme`: `W_ij = G_i / D_i`; pairs need not be ordered (t_i > t_j is dropped).
    NdcgLoss1,
    /// `NDCGLoss2Scheme`: `W_ij = |1/D_{|i−j|} − 1/D_{|i−j|+1}| · |G_i − G_j|`, 0 on the diagonal.
    NdcgLoss2,
    /// `LambdaRankScheme`: `W_ij = |1/D_i − 1/D_j| · |G_i − G_j|`.
    LambdaRank,
    /// `NDCGLoss2PPScheme(mu)`: `mu · NDCGLoss2 + LambdaRank`; the default, with mu = 10.
    NdcgLoss2PP {
        /// Weight of the NDCGLoss2 term.
        mu: f64,
    },
}

impl Default for WeightingScheme {
    fn default() -> Self {
        WeightingScheme::NdcgLoss2PP { mu: 10.0 }
    }
}

/// `(class name, snake_case name)` of every scheme, in the order errors list them.
const SCHEMES: [(&str, &str); 5] = [
    ("NoWeightingScheme", "none"),
    ("NDCGLoss1Scheme", "ndcg_loss1"),
    ("NDCGLoss2Scheme", "ndcg_loss2"),
    ("LambdaRankScheme", "lambda_rank"),
    ("NDCGLoss2PPScheme", "ndcg_loss2pp"),
];

impl WeightingScheme {
    /// Parses a class name (`NDCGLoss2PPScheme`), its full path
    /// (`sentence_transformers.cross_encoder.losses.lambda_loss.NDCGLoss2PPScheme`) or a
    /// snake_case name (`ndcg_loss2pp`, `lambda_rank`, `none`, …), any case. NDCGLoss2PP gets
    /// mu = 10.
    pub fn parse(name: &str) -> Result<Self> {
        let last = name.trim().rsplit('.').next().unwrap_or_default();
        let position = SCHEMES.iter().position(|(class, snake)| {
            class.eq_ignore_ascii_case(last) || snake.eq_ignore_ascii_case(last)
        });
        Ok(match position {
            Some(0) => WeightingScheme::None,
            Some(1) => WeightingScheme::NdcgLoss1,
            Some(2) => WeightingScheme::NdcgLoss2,
            Some(3) => WeightingScheme::LambdaRank,
            Some(4) => WeightingScheme::default(),
            _ => {
                let accepted: Vec<String> = SCHEMES
                    .iter()
                    .map(|(class, snake)| format!("\"{snake}\" ({class})"))
                    .collect();
                return Err(Error::invalid(format!(
                    "unknown weighting_scheme \"{name}\"; expected one of {}",
                    accepted.join(", ")
                )));
            }
        })
    }

    /// The class name, e.g. `NDCGLoss2PPScheme`.
    pub fn class_name(&self) -> &'static str {
        let index = match self {
            WeightingScheme::None => 0,
            WeightingScheme::NdcgLoss1 => 1,
            WeightingScheme::NdcgLoss2 => 2,
            WeightingScheme::LambdaRank => 3,
            WeightingScheme::NdcgLoss2PP { .. } => 4,
        };
        SCHEMES[index].0
    }

    /// The path sentence-transformers' `fullname()` prints in the model card, e.g.
    /// `sentence_transformers.cross_encoder.losses.lambda_loss.NDCGLoss2PPScheme`.
    pub fn fullname(&self) -> String {
        format!(
            "sentence_transformers.cross_encoder.losses.lambda_loss.{}",
            self.class_name()
        )
    }

    /// `W_ij` for 0-based positions `i, j` in predicted order, gains `G`, discounts `D`.
    fn weight(&self, i: usize, j: usize, gains: &[f64], discounts: &[f64]) -> f64 {
        let ndcg2 = || {
            if i == j {
                return 0.0;
            }
            // D_{|i−j|} and D_{|i−j|+1} with 1-based D_n = log2(1 + n)
            let d = i.abs_diff(j) as f64;
            let delta = (1.0 / (1.0 + d).log2() - 1.0 / (2.0 + d).log2()).abs();
            delta * (gains[i] - gains[j]).abs()
        };
        let lambda_rank =
            || (1.0 / discounts[i] - 1.0 / discounts[j]).abs() * (gains[i] - gains[j]).abs();
        match self {
            WeightingScheme::None => 1.0,
            WeightingScheme::NdcgLoss1 => gains[i] / discounts[i],
            WeightingScheme::NdcgLoss2 => ndcg2(),
            WeightingScheme::LambdaRank => lambda_rank(),
            WeightingScheme::NdcgLoss2PP { mu } => mu * ndcg2() + lambda_rank(),
        }
    }
}

/// The logarithm of the pair terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReductionLog {
    /// `ln`.
    Natural,
    /// `log2`, the default.
    #[default]
    Binary,
}

impl ReductionLog {
    /// `"natural"` or `"binary"`.
    pub fn name(&self) -> &'static str {
        match self {
            ReductionLog::Natural => "natural",
            ReductionLog::Binary => "binary",
        }
    }
}

/// Hyper-parameters of [`lambda_loss`], with sentence-transformers' names and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaLossConfig {
    /// Pair weights. Default NDCGLoss2PP (mu = 10).
    pub weighting_scheme: WeightingScheme,
    /// NDCG@k cut-off; `None` = all documents.
    pub k: Option<usize>,
    /// Slope of the pair sigmoid. Default 1.
    pub sigma: f64,
    /// Floor of probabilities and of maxDCG. Default 1e-10.
    pub eps: f64,
    /// `log2` (default) or `ln` of the pair terms.
    pub reduction_log: ReductionLog,
    /// Applied to the logits first. Default identity.
    pub activation_fn: ActivationFn,
    /// Pairs per forward pass (see [`listwise_chunk_size`](crate::loss::listwise::listwise_chunk_size));
    /// does not change the math.
    pub mini_batch_size: Option<i64>,
}

impl Default for LambdaLossConfig {
    fn default() -> Self {
        LambdaLossConfig {
            weighting_scheme: WeightingScheme::default(),
            k: None,
            sigma: 1.0,
            eps: 1e-10,
            reduction_log: ReductionLog::Binary,
            activation_fn: ActivationFn::Identity,
            mini_batch_size: None,
        }
    }
}

impl LambdaLossConfig {
    /// Parameter names accepted in a recipe's `[[loss]]` table.
    pub const PARAMS: &'static [&'static str] = &[
        "weighting_scheme",
        "k",
        "sigma",
        "eps",
        "reduction_log",
        "activation_fn",
        "mini_batch_size",
    ];

    /// Reads the loss parameters (the caller removes `kind`, `labels` and `weight`).
    pub fn from_params(params: &toml::Table) -> Result<Self> {
        let params = Params::new("lambda", params, Self::PARAMS)?;
        let mut cfg = Self::read_shared(&params)?;
        if let Some(name) = params.str("weighting_scheme")? {
            cfg.weighting_scheme = WeightingScheme::parse(name).map_err(|_| {
                let accepted: Vec<String> = SCHEMES
                    .iter()
                    .map(|(class, snake)| format!("\"{snake}\" ({class})"))
                    .collect();
                params.error(
                    "weighting_scheme",
                    format!("must be one of {}, found \"{name}\"", accepted.join(", ")),
                )
            })?;
        }
        Ok(cfg)
    }

    /// Reads the parameters LambdaLoss shares with RankNet.
    pub(crate) fn read_shared(params: &Params<'_>) -> Result<Self> {
        let defaults = LambdaLossConfig::default();
        let reduction_log = match params.str("reduction_log")? {
            None => defaults.reduction_log,
            Some("binary") => ReductionLog::Binary,
            Some("natural") => ReductionLog::Natural,
            Some(other) => {
                return Err(params.error(
                    "reduction_log",
                    format!("must be \"binary\" or \"natural\", found \"{other}\""),
                ))
            }
        };
        Ok(LambdaLossConfig {
            weighting_scheme: defaults.weighting_scheme,
            k: params.usize_at_least("k", 1)?,
            sigma: params.f64("sigma")?.unwrap_or(defaults.sigma),
            eps: params.positive_f64("eps")?.unwrap_or(defaults.eps),
            reduction_log,
            activation_fn: params.activation("activation_fn")?.unwrap_or_default(),
            mini_batch_size: params.mini_batch_size("mini_batch_size")?,
        })
    }

    /// The keys sentence-transformers' `get_config_dict` returns, for the model card.
    pub fn config_dict(&self) -> serde_json::Value {
        json!({
            "weighting_scheme": self.weighting_scheme.fullname(),
            "k": optional_json(self.k),
            "sigma": self.sigma,
            "eps": self.eps,
            "reduction_log": self.reduction_log.name(),
            "activation_fn": self.activation_fn.fullname(),
            "mini_batch_size": optional_json(self.mini_batch_size),
        })
    }
}

/// LambdaLoss over padded lists.
///
/// * `logits`: `(B, M)` student logits (padded positions ignored).
/// * `labels`: `(B, M)` graded relevance (finite where real; negative labels count as 0 gain).
/// * `mask`: `(B, M)`, nonzero = real document.
///
/// Returns the mean pair loss over the batch, or 0 (connected to the logits) when no pair is
/// valid.
pub fn lambda_loss(
    logits: &Tensor,
    labels: &Tensor,
    mask: &Tensor,
    cfg: &LambdaLossConfig,
) -> Result<Tensor> {
    lambda_loss_named("lambda", logits, labels, mask, cfg)
}

/// [`lambda_loss`] with the loss name used in error messages.
pub(crate) fn lambda_loss_named(
    loss: &str,
    logits: &Tensor,
    labels: &Tensor,
    mask: &Tensor,
    cfg: &LambdaLossConfig,
) -> Result<Tensor> {
    let batch = ListBatch::new(loss, logits, labels, mask, cfg.activation_fn)?;
    let width = batch.width;
    let k = cfg.k.unwrap_or(width);
    let discounts: Vec<f64> = (1..=width).map(|i| (1.0 + i as f64).log2()).collect();
    let scores = host_matrix(&batch.logits)?;
    let order_by_score = |b: usize| {
        let mut real = batch.real_positions(b);
        real.sort_by(|&x, &y| scores[b][y].total_cmp(&scores[b][x]));
        real
    };

    // Valid pairs as flat indices into the (B·M) logits, with their constant weights.
    let mut left = Vec::new();
    let mut right = Vec::new();
    let mut weights = Vec::new();
    for b in 0..batch.batch() {
        let order = order_by_score(b);
        let n = order.len();
        let true_sorted: Vec<f64> = order.iter().map(|&j| batch.labels[b][j]).collect();
        let mut ideal = true_sorted.clone();
        ideal.sort_by(|x, y| y.total_cmp(x));
        let max_dcg = ideal
            .iter()
            .take(k)
            .zip(&discounts)
            .map(|(y, d)| (2f64.powf(y.max(0.0)) - 1.0) / d)
            .sum::<f64>()
            .max(cfg.eps);
        let gains: Vec<f64> = true_sorted
            .iter()
            .map(|t| (2f64.powf(t.max(0.0)) - 1.0) / max_dcg)
            .collect();
        for i in 0..n {
            for j in 0..n {
                let ordered = true_sorted[i] > true_sorted[j];
                let ranked = matches!(cfg.weighting_scheme, WeightingScheme::NdcgLoss1) || ordered;
                if !ranked || !(i < k || j < k) {
                    continue;
                }
                left.push((b * width + order[i]) as u32);
                right.push((b * width + order[j]) as u32);
                weights.push(cfg.weighting_scheme.weight(i, j, &gains, &discounts));
            }
        }
    }
    if left.is_empty() {
        return zero_loss(&batch.real_logits(0.0)?);
    }

    let flat = batch.logits.flatten_all()?;
    let device = flat.device();
    let num_pairs = left.len();
    let left = Tensor::from_vec(left, num_pairs, device)?;
    let right = Tensor::from_vec(right, num_pairs, device)?;
    let diffs = flat
        .index_select(&left, 0)?
        .sub(&flat.index_select(&right, 0)?)?
        .clamp(-1e8, 1e8)?;
    let mut probs = candle_nn::ops::sigmoid(&diffs.affine(cfg.sigma, 0.0)?)?.maximum(cfg.eps)?;
    if cfg.weighting_scheme != WeightingScheme::None {
        probs = probs.pow(&vector_like(weights, &flat)?)?.maximum(cfg.eps)?;
    }
    let log_scale = match cfg.reduction_log {
        ReductionLog::Natural => 1.0,
        ReductionLog::Binary => 1.0 / std::f64::consts::LN_2,
    };
    Ok(probs.log()?.mean_all()?.affine(-log_scale, 0.0)?)
}

/// Build `lambda` from its recipe parameters (`num_labels` must be 1): the listwise adapter
/// over [`lambda_loss()`].
pub fn build(
    row: &'static BuiltinLoss,
    params: &toml::Table,
    num_labels: usize,
) -> Result<Box<dyn Loss>> {
    require_one_label(row.kind, num_labels)?;
    Ok(Box::new(ListwiseLoss {
        row,
        config: LambdaLossConfig::from_params(params)?,
        math: lambda_loss,
        mini_batch_size: |config: &LambdaLossConfig| config.mini_batch_size,
        config_dict: LambdaLossConfig::config_dict,
        citation: CITATION,
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::loss::params::table;
    use crate::loss::testing::{assert_close, check_gradient, m64, scalar};

    /// The listwise golden batch (the `forward` of each loss in sentence-transformers
    /// `cross_encoder/losses/`, ported to Python, gives the golden values): query 0 logits
    /// [0.2, 1.0, -0.5] labels [1, 0, 0]; query 1 logits [2.0, 0.5] labels [0, 1], padded to
    /// M = 3.
    pub(crate) fn golden_batch() -> (Tensor, Tensor, Tensor) {
        (
            m64(&[&[0.2, 1.0, -0.5], &[2.0, 0.5, 0.0]]),
            m64(&[&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0]]),
            m64(&[&[1.0, 1.0, 1.0], &[1.0, 1.0, 0.0]]),
        )
    }

    /// The golden batch with two more padded columns holding garbage.
    pub(crate) fn wider_golden_batch() -> (Tensor, Tensor, Tensor) {
        (
            m64(&[&[0.2, 1.0, -0.5, 50.0, -7.0], &[2.0, 0.5, 9.0, 3.0, 1.0]]),
            m64(&[&[1.0, 0.0, 0.0, 4.0, 2.0], &[0.0, 1.0, 3.0, -1.0, 5.0]]),
            m64(&[&[1.0, 1.0, 1.0, 0.0, 0.0], &[1.0, 1.0, 0.0, 0.0, 0.0]]),
        )
    }

    fn with_scheme(weighting_scheme: WeightingScheme) -> LambdaLossConfig {
        LambdaLossConfig {
            weighting_scheme,
            ..Default::default()
        }
    }

    #[test]
    fn golden_values() -> Result<()> {
        // `LambdaLoss.forward` (cross_encoder/losses/lambda_loss.py) with each scheme of that
        // file; k = None, so the 6.2 top-k fix does not change them.
        let (logits, labels, mask) = golden_batch();
        for (scheme, expected) in [
            (WeightingScheme::default(), 6.349100),
            (WeightingScheme::NdcgLoss2, 0.581389),
            (WeightingScheme::LambdaRank, 0.535215),
            (WeightingScheme::NdcgLoss1, 0.326425),
        ] {
            let loss = lambda_loss(&logits, &labels, &mask, &with_scheme(scheme))?;
            assert_close(scalar(&loss), expected, 5e-7);
        }
        Ok(())
    }

    #[test]
    fn golden_decomposition_of_the_default() -> Result<()> {
        // `LambdaLoss.forward` (cross_encoder/losses/lambda_loss.py): 3 valid pairs, log2 terms
        // −6.859, −2.223, −9.965 → mean 6.349
        let expected = (6.859 + 2.223 + 9.965) / 3.0;
        let (logits, labels, mask) = golden_batch();
        let loss = lambda_loss(&logits, &labels, &mask, &LambdaLossConfig::default())?;
        assert_close(scalar(&loss), expected, 1e-3);
        Ok(())
    }

    #[test]
    fn top_k_keeps_pairs_with_either_position_in_the_top_k() -> Result<()> {
        // By hand with k = 1 (sentence-transformers 6.2: i < k OR j < k). Predicted orders:
        // query 0 → labels [0, 1, 0], valid pairs (1,0) and (1,2); only (1,0) has a position < 1.
        // query 1 → labels [0, 1], pair (1,0) kept. With AND no pair survives (the old code
        // would return NaN).
        // RankNet terms: −log2 σ(0.2 − 1.0) and −log2 σ(0.5 − 2.0).
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let expected = -((sigmoid(-0.8)).log2() + (sigmoid(-1.5)).log2()) / 2.0;
        let (logits, labels, mask) = golden_batch();
        let cfg = LambdaLossConfig {
            k: Some(1),
            ..with_scheme(WeightingScheme::None)
        };
        assert_close(
            scalar(&lambda_loss(&logits, &labels, &mask, &cfg)?),
            expected,
            1e-12,
        );
        assert_close(expected, 2.072081, 1e-6);
        // NDCGLoss2++ with k = 1, from the same formula in f64 (independent scalar port of
        // lambda_loss.py with the 6.2 OR): 8.412177; natural log 5.830877.
        let cfg = LambdaLossConfig {
            k: Some(1),
            ..Default::default()
        };
        assert_close(
            scalar(&lambda_loss(&logits, &labels, &mask, &cfg)?),
            8.412177,
            1e-6,
        );
        let cfg = LambdaLossConfig {
            reduction_log: ReductionLog::Natural,
            ..cfg
        };
        assert_close(
            scalar(&lambda_loss(&logits, &labels, &mask, &cfg)?),
            5.830877,
            1e-6,
        );
        Ok(())
    }

    #[test]
    fn no_valid_pair_gives_zero() -> Result<()> {
        let logits = m64(&[&[0.3, -0.2], &[1.0, 2.0]]);
        let labels = m64(&[&[1.0, 1.0], &[0.0, 0.0]]);
        let mask = m64(&[&[1.0, 1.0], &[1.0, 1.0]]);
        let loss = lambda_loss(&logits, &labels, &mask, &LambdaLossConfig::default())?;
        assert_eq!(scalar(&loss), 0.0);
        Ok(())
    }

    #[test]
    fn padding_does_not_change_the_loss() -> Result<()> {
        let (logits, labels, mask) = golden_batch();
        let (wide_logits, wide_labels, wide_mask) = wider_golden_batch();
        for cfg in [
            LambdaLossConfig::default(),
            with_scheme(WeightingScheme::NdcgLoss1),
            LambdaLossConfig {
                k: Some(2),
                ..Default::default()
            },
        ] {
            let narrow = scalar(&lambda_loss(&logits, &labels, &mask, &cfg)?);
            let wide = scalar(&lambda_loss(&wide_logits, &wide_labels, &wide_mask, &cfg)?);
            assert_close(wide, narrow, 1e-12);
        }
        Ok(())
    }

    #[test]
    fn shifting_a_query_logits_does_not_change_the_loss() -> Result<()> {
        let (logits, labels, mask) = golden_batch();
        let shifted = m64(&[&[5.2, 6.0, 4.5], &[-1.0, -2.5, 0.0]]);
        for scheme in [
            WeightingScheme::default(),
            WeightingScheme::NdcgLoss1,
            WeightingScheme::None,
        ] {
            let cfg = with_scheme(scheme);
            let base = scalar(&lambda_loss(&logits, &labels, &mask, &cfg)?);
            let moved = scalar(&lambda_loss(&shifted, &labels, &mask, &cfg)?);
            assert_close(moved, base, 1e-12);
        }
        Ok(())
    }

    #[test]
    fn gradient_matches_central_differences() {
        let (_, labels, mask) = golden_batch();
        let labels_graded = m64(&[&[2.0, 0.0, 1.0], &[0.0, 3.0, 0.0]]);
        let x0 = [0.2, 1.0, -0.5, 2.0, 0.5, 0.0];
        for scheme in [
            WeightingScheme::default(),
            WeightingScheme::NdcgLoss1,
            WeightingScheme::NdcgLoss2,
            WeightingScheme::LambdaRank,
            WeightingScheme::None,
        ] {
            for labels in [&labels, &labels_graded] {
                let cfg = LambdaLossConfig {
                    sigma: 1.5,
                    ..with_scheme(scheme)
                };
                check_gradient(&x0, &[2, 3], 1e-6, |x| lambda_loss(x, labels, &mask, &cfg));
            }
        }
    }

    #[test]
    fn scheme_names_and_config() {
        assert_eq!(
            WeightingScheme::parse("NDCGLoss2PPScheme").unwrap(),
            WeightingScheme::NdcgLoss2PP { mu: 10.0 }
        );
        assert_eq!(
            WeightingScheme::parse(
                "sentence_transformers.cross_encoder.losses.LambdaLoss.LambdaRankScheme"
            )
            .unwrap(),
            WeightingScheme::LambdaRank
        );
        assert_eq!(
            WeightingScheme::parse("ndcg_loss1").unwrap(),
            WeightingScheme::NdcgLoss1
        );
        assert_eq!(
            WeightingScheme::parse("none").unwrap(),
            WeightingScheme::None
        );
        assert_eq!(
            LambdaLossConfig::default().config_dict(),
            json!({
                "weighting_scheme": "sentence_transformers.cross_encoder.losses.lambda_loss.NDCGLoss2PPScheme",
                "k": null,
                "sigma": 1.0,
                "eps": 1e-10,
                "reduction_log": "binary",
                "activation_fn": "torch.nn.modules.linear.Identity",
                "mini_batch_size": null
            })
        );
        let cfg = LambdaLossConfig::from_params(&table(
            "weighting_scheme = \"NDCGLoss2Scheme\"\nk = 10\nreduction_log = \"natural\"\nmini_batch_size = 16",
        ))
        .unwrap();
        assert_eq!(cfg.weighting_scheme, WeightingScheme::NdcgLoss2);
        assert_eq!((cfg.k, cfg.mini_batch_size), (Some(10), Some(16)));
        assert_eq!(cfg.reduction_log, ReductionLog::Natural);
        let message = LambdaLossConfig::from_params(&table("reduction_log = \"log10\""))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "loss \"lambda\": parameter \"reduction_log\" must be \"binary\" or \"natural\", found \"log10\""
        );
        let message = LambdaLossConfig::from_params(&table("weighting_scheme = \"ndcg\""))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(
                "parameter \"weighting_scheme\" must be one of \"none\" (NoWeightingScheme)"
            ),
            "{message}"
        );
        let message = LambdaLossConfig::from_params(&table("k = 0"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "loss \"lambda\": parameter \"k\" must be an integer >= 1, found 0"
        );
    }
}
