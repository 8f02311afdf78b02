//! MultipleNegativesRankingLoss, CrossEncoder version: a softmax over one positive, in-batch
//! negatives and hard negatives (sentence-transformers
//! `cross_encoder/losses/multiple_negatives_ranking.py`, `MultipleNegativesRankingLoss.forward`
//! and `get_in_batch_negatives`, with the v5.3 fixes).
//!
//! Inputs: rows (anchor, positive, hard_negative_1..hard_negative_H); labels are ignored. Call
//! the B·C documents of a batch the *candidates*, `C = 1 + H` columns: column 0 holds the
//! positives, column h the h-th hard negatives.
//!
//! 1. [`mnrl_pairs`] picks, for every anchor, `num_negatives` in-batch negatives uniformly
//!    without replacement among the candidates of the *other* rows (their positives and their
//!    hard negatives; never the anchor's own row), or all `C·(B−1)` of them when
//!    `num_negatives` is `all` or at least `C·(B−1)`. Candidates are indices: equal texts in two
//!    rows are *not* merged, so a duplicate of the anchor's positive in another row counts as a
//!    negative, exactly as in sentence-transformers (use `batch_sampler = "no_duplicates"`).
//! 2. The glue scores the pairs in the order [`MnrlPairs::pairs`] gives (column-major:
//!    all positives, then each in-batch negative column, then each hard-negative column) and
//!    [`MnrlPairs::score_matrix`] reshapes the logits to `(B, 1 + k + H)`, positive first.
//! 3. [`multiple_negatives_ranking`]: `Z = scale · act(scores)` (scale 0 disables scaling),
//!    `L = (1/B) Σ_i [ −Z_i0 + log Σ_m exp(Z_im) ]`.
//!
//! Differences from sentence-transformers: `num_negatives = 0` means no in-batch negatives
//! (torch's `multinomial` raises there), and sampling is exact (torch's `multinomial` can return
//! masked indices, issue #3640).

use candle_core::{Tensor, D};
use rand::Rng;
use serde_json::json;

use crate::data::Row;
use crate::error::{Error, Result};
use crate::loss::activation::ActivationFn;
use crate::loss::batch::{require_columns, require_one_label, student_logits, text_column};
use crate::loss::objective::{BuiltinLoss, Loss, LossInput, LossValue};
use crate::loss::params::Params;
use crate::loss::tensor_ops::{host_matrix, log_softmax_last_dim, matrix_like, upcast};
use crate::model::{CrossEncoder, Dropout};

/// sentence-transformers' MultipleNegativesRankingLoss (CrossEncoder) has no `citation`
/// property (its docstring references arXiv 1705.00652).
pub const CITATION: Option<&str> = None;

/// How many in-batch negatives each anchor gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumNegatives {
    /// Every candidate of every other row (sentence-transformers `num_negatives=None`).
    All,
    /// At most this many, sampled uniformly without replacement; when it reaches the number of
    /// valid candidates, all of them.
    Count(usize),
}

impl Default for NumNegatives {
    fn default() -> Self {
        NumNegatives::Count(4)
    }
}

impl NumNegatives {
    /// Reads `num_negatives`: an integer ≥ 0 or the string `"all"`.
    pub(crate) fn from_params(params: &Params<'_>) -> Result<Option<Self>> {
        match params.value("num_negatives") {
            None => Ok(None),
            Some(toml::Value::String(s)) if s == "all" => Ok(Some(NumNegatives::All)),
            Some(toml::Value::Integer(i)) if *i >= 0 => Ok(Some(NumNegatives::Count(*i as usize))),
            Some(other) => Err(params.error(
                "num_negatives",
                format!(
                    "must be an integer >= 0 or \"all\", found {} {other}",
                    other.type_str()
                ),
            )),
        }
    }

    /// The value sentence-transformers' `get_config_dict` shows: the count, or `null` for all.
    pub(crate) fn config_value(&self) -> serde_json::Value {
        match self {
            NumNegatives::All => serde_json::Value::Null,
            NumNegatives::Count(k) => json!(k),
        }
    }
}

/// Hyper-parameters of [`multiple_negatives_ranking`] and [`mnrl_pairs`].
#[derive(Debug, Clone, PartialEq)]
pub struct MultipleNegativesRankingConfig {
    /// In-batch negatives per anchor. Default 4.
    pub num_negatives: NumNegatives,
    /// Multiplies the activated scores; 0 disables scaling (as `if self.scale:` does). Default 10.
    pub scale: f64,
    /// Applied to the logits before scaling. Default **sigmoid** (the only losses whose
    /// default is not the identity are this one and its cached variant).
    pub activation_fn: ActivationFn,
}

impl Default for MultipleNegativesRankingConfig {
    fn default() -> Self {
        MultipleNegativesRankingConfig {
            num_negatives: NumNegatives::default(),
            scale: 10.0,
            activation_fn: ActivationFn::Sigmoid,
        }
    }
}

impl MultipleNegativesRankingConfig {
    /// Parameter names accepted in a recipe's `[[loss]]` table.
    pub const PARAMS: &'static [&'static str] = &["num_negatives", "scale", "activation_fn"];

    /// Reads the loss parameters (the caller removes `kind`, `labels` and `weight`);
    /// `num_negatives` is an integer ≥ 0 or `"all"`.
    pub fn from_params(params: &toml::Table) -> Result<Self> {
        let params = Params::new("multiple_negatives_ranking", params, Self::PARAMS)?;
        Self::read(&params)
    }

    pub(crate) fn read(params: &Params<'_>) -> Result<Self> {
        let defaults = MultipleNegativesRankingConfig::default();
        Ok(MultipleNegativesRankingConfig {
            num_negatives: NumNegatives::from_params(params)?.unwrap_or(defaults.num_negatives),
            scale: params.f64("scale")?.unwrap_or(defaults.scale),
            activation_fn: params
                .activation("activation_fn")?
                .unwrap_or(defaults.activation_fn),
        })
    }

    /// The keys sentence-transformers' `get_config_dict` returns, for the model card.
    pub fn config_dict(&self) -> serde_json::Value {
        json!({
            "scale": self.scale,
            "num_negatives": self.num_negatives.config_value(),
            "activation_fn": self.activation_fn.fullname(),
        })
    }
}

/// A candidate document of the batch: column `column` (0 = positive, h = h-th hard negative)
/// of row `row`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// The batch row the document comes from.
    pub row: usize,
    /// The candidate column: 0 for the positive, h ≥ 1 for the h-th hard negative.
    pub column: usize,
}

/// One (anchor, document) pair to score: the anchor of row `anchor` with `candidate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScoredPair {
    /// The row whose anchor (column 0 of the data) is the query.
    pub anchor: usize,
    /// The document.
    pub candidate: Candidate,
}

/// The pairs one MNRL step scores and how their logits form the score matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MnrlPairs {
    /// B, the number of rows (anchors).
    pub batch_size: usize,
    /// k, the in-batch negative columns (the same for every anchor).
    pub num_in_batch: usize,
    /// H, the hard-negative columns of the data.
    pub num_hard: usize,
    /// `(1 + k + H)·B` pairs in column-major order: `pairs[c * B + i]` is score column `c` of
    /// anchor `i` (c = 0 positive, 1..=k in-batch negatives, k+1.. hard negatives). This is the
    /// order sentence-transformers forwards them in.
    pub pairs: Vec<ScoredPair>,
}

impl MnrlPairs {
    /// `1 + k + H`, the columns of the score matrix.
    pub fn num_score_columns(&self) -> usize {
        1 + self.num_in_batch + self.num_hard
    }

    /// Reshapes the logits of [`MnrlPairs::pairs`] (`(P,)` or `(P, 1)`, in that order) into the
    /// `(B, 1 + k + H)` score matrix, positive in column 0 (`cat(scores).reshape(-1, B).T`).
    pub fn score_matrix(&self, pair_logits: &Tensor) -> Result<Tensor> {
        let expected = self.pairs.len();
        let flat = match *pair_logits.dims() {
            [p] | [p, 1] if p == expected => pair_logits.flatten_all()?,
            _ => {
                return Err(Error::invalid(format!(
                    "multiple_negatives_ranking: pair logits have shape {:?} but {} anchors x {} score columns need [{expected}]",
                    pair_logits.dims(),
                    self.batch_size,
                    self.num_score_columns()
                )))
            }
        };
        Ok(flat
            .reshape((self.num_score_columns(), self.batch_size))?
            .t()?
            .contiguous()?)
    }
}

/// Picks the in-batch negatives of every anchor: row `i` gets candidates of rows `j ≠ i` (any
/// column), `num_negatives` of them uniformly without replacement, or all `C·(B−1)` in
/// increasing `(column, row)` order when `num_negatives` is [`NumNegatives::All`] or at least
/// `C·(B−1)` (sentence-transformers ≥ 5.3). Returns one list per anchor, all of the same length.
pub fn sample_in_batch_negatives<R: Rng + ?Sized>(
    batch_size: usize,
    num_candidate_columns: usize,
    num_negatives: NumNegatives,
    rng: &mut R,
) -> Result<Vec<Vec<Candidate>>> {
    if num_candidate_columns == 0 {
        return Err(Error::invalid(
            "multiple_negatives_ranking needs at least one candidate column (the positive) after the anchor",
        ));
    }
    let valid = num_candidate_columns * batch_size.saturating_sub(1);
    // The v-th valid candidate of anchor i, in increasing flat order c·B + j over j ≠ i.
    let nth_valid = |anchor: usize, v: usize| {
        let others = batch_size - 1;
        let (column, skip_row) = (v / others, v % others);
        let row = if skip_row < anchor {
            skip_row
        } else {
            skip_row + 1
        };
        Candidate { row, column }
    };
    Ok((0..batch_size)
        .map(|anchor| match num_negatives {
            NumNegatives::Count(k) if k < valid => rand::seq::index::sample(rng, valid, k)
                .into_iter()
                .map(|v| nth_valid(anchor, v))
                .collect(),
            _ => (0..valid).map(|v| nth_valid(anchor, v)).collect(),
        })
        .collect())
}

/// Builds the pairs of one MNRL step: the positives, the sampled in-batch negatives
/// ([`sample_in_batch_negatives`]) and the `num_candidate_columns − 1` hard-negative columns.
pub fn mnrl_pairs<R: Rng + ?Sized>(
    batch_size: usize,
    num_candidate_columns: usize,
    num_negatives: NumNegatives,
    rng: &mut R,
) -> Result<MnrlPairs> {
    let negatives =
        sample_in_batch_negatives(batch_size, num_candidate_columns, num_negatives, rng)?;
    let num_in_batch = negatives.first().map_or(0, Vec::len);
    let num_hard = num_candidate_columns - 1;
    let mut pairs = Vec::with_capacity(batch_size * (1 + num_in_batch + num_hard));
    let own = |column: usize| {
        (0..batch_size).map(move |i| ScoredPair {
            anchor: i,
            candidate: Candidate { row: i, column },
        })
    };
    pairs.extend(own(0));
    for t in 0..num_in_batch {
        pairs.extend(negatives.iter().enumerate().map(|(i, list)| ScoredPair {
            anchor: i,
            candidate: list[t],
        }));
    }
    for h in 1..=num_hard {
        pairs.extend(own(h));
    }
    Ok(MnrlPairs {
        batch_size,
        num_in_batch,
        num_hard,
        pairs,
    })
}

/// The MNRL cross-entropy with the positive as target.
///
/// * `scores`: `(B, 1 + K)` raw student logits, positive in column 0 (see
///   [`MnrlPairs::score_matrix`]); the loss applies `cfg.activation_fn` and `cfg.scale`.
/// * `mask`: optional `(B, 1 + K)`, nonzero = a real score; zero entries leave the softmax
///   (sentence-transformers has no mask: every row has the same columns). Column 0 must be real.
pub fn multiple_negatives_ranking(
    scores: &Tensor,
    mask: Option<&Tensor>,
    cfg: &MultipleNegativesRankingConfig,
) -> Result<Tensor> {
    let (batch, columns) = match *scores.dims() {
        [b, c] if c >= 1 => (b, c),
        _ => {
            return Err(Error::invalid(format!(
                "multiple_negatives_ranking: scores have shape {:?} but need [batch, 1 + negatives] with the positive first",
                scores.dims()
            )))
        }
    };
    let scores = upcast(scores)?;
    let mut z = cfg.activation_fn.apply(&scores)?;
    if cfg.scale != 0.0 {
        z = z.affine(cfg.scale, 0.0)?;
    }
    if let Some(mask) = mask {
        if mask.dims() != [batch, columns] {
            return Err(Error::invalid(format!(
                "multiple_negatives_ranking: mask has shape {:?} but the scores have shape [{batch}, {columns}]",
                mask.dims()
            )));
        }
        let keep = host_matrix(mask)?;
        if let Some(row) = keep.iter().position(|r| r[0] == 0.0) {
            return Err(Error::invalid(format!(
                "multiple_negatives_ranking: row {row} masks out its positive (column 0)"
            )));
        }
        let keep = matrix_like(&keep, columns, &z)?.ne(0.0)?;
        let floor = z.ones_like()?.affine(0.0, -1e30)?;
        z = keep.where_cond(&z, &floor)?;
    }
    let log_probs = log_softmax_last_dim(&z)?;
    let positive = log_probs.narrow(D::Minus1, 0, 1)?;
    Ok(positive.mean_all()?.neg()?)
}

/// The texts of an MNRL batch: anchors and candidate columns (positive, hard negatives).
fn mnrl_texts<'a>(examples: &'a [Row], kind: &str) -> Result<(Vec<&'a str>, Vec<Vec<&'a str>>)> {
    let columns = examples.first().map_or(0, |r| r.fields.len());
    if columns < 2 {
        return Err(Error::invalid(format!(
            "{kind} needs (anchor, positive, optional hard negatives...) columns, at least 2, but the rows have {columns}"
        )));
    }
    require_columns(examples, columns, kind, "anchor, positive, hard negatives")?;
    let anchors = text_column(examples, 0, kind)?;
    let candidates = (1..columns)
        .map(|c| text_column(examples, c, kind))
        .collect::<Result<Vec<_>>>()?;
    Ok((anchors, candidates))
}

/// The (anchor, document) pairs one MNRL step scores, with in-batch negatives sampled from the
/// step's seed, and their texts in the same order.
pub(crate) fn sampled_pairs<'a>(
    input: &LossInput<'a>,
    kind: &str,
    num_negatives: NumNegatives,
) -> Result<(MnrlPairs, Vec<(&'a str, &'a str)>)> {
    use rand::SeedableRng;
    let (anchors, candidates) = mnrl_texts(input.examples, kind)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(input.seed);
    let pairs = mnrl_pairs(anchors.len(), candidates.len(), num_negatives, &mut rng)?;
    let texts = pairs
        .pairs
        .iter()
        .map(|p| {
            (
                anchors[p.anchor],
                candidates[p.candidate.column][p.candidate.row],
            )
        })
        .collect();
    Ok((pairs, texts))
}

/// MultipleNegativesRankingLoss: each anchor against its positive, `num_negatives` in-batch
/// negatives sampled (seeded) from the other rows' documents, and its own hard negatives.
/// Use `batch_sampler = "no_duplicates"` so in-batch negatives are not copies of the positive.
pub struct MultipleNegativesRankingLoss {
    row: &'static BuiltinLoss,
    config: MultipleNegativesRankingConfig,
}

/// Build `multiple_negatives_ranking` from its recipe parameters (`num_labels` must be 1).
pub fn build(
    row: &'static BuiltinLoss,
    params: &toml::Table,
    num_labels: usize,
) -> Result<Box<dyn Loss>> {
    require_one_label(row.kind, num_labels)?;
    Ok(Box::new(MultipleNegativesRankingLoss {
        row,
        config: MultipleNegativesRankingConfig::from_params(params)?,
    }))
}

impl Loss for MultipleNegativesRankingLoss {
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
        dropout: &mut Dropout,
    ) -> Result<LossValue> {
        let (pairs, texts) = sampled_pairs(input, self.kind(), self.config.num_negatives)?;
        let logits = student_logits(student, &texts, Some(dropout))?.narrow(1, 0, 1)?;
        let scores = pairs.score_matrix(&logits)?;
        Ok(LossValue::Graph(multiple_negatives_ranking(
            &scores,
            None,
            &self.config,
        )?))
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
    use crate::loss::params::table;
    use crate::loss::testing::{assert_close, check_gradient, m64, scalar, t64};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::collections::HashSet;

    fn reference_loss(rows: &[&[f64]], scale: f64, sigmoid: bool) -> f64 {
        rows.iter()
            .map(|row| {
                let z: Vec<f64> = row
                    .iter()
                    .map(|x| if sigmoid { 1.0 / (1.0 + (-x).exp()) } else { *x } * scale)
                    .collect();
                -z[0] + z.iter().map(|v| v.exp()).sum::<f64>().ln()
            })
            .sum::<f64>()
            / rows.len() as f64
    }

    #[test]
    fn hand_computed_value_with_default_sigmoid_and_scale() -> Result<()> {
        let rows: [&[f64]; 2] = [&[2.0, 0.5, -1.0], &[0.3, 1.2, 0.0]];
        let cfg = MultipleNegativesRankingConfig::default();
        let loss = multiple_negatives_ranking(&m64(&rows), None, &cfg)?;
        assert_close(scalar(&loss), reference_loss(&rows, 10.0, true), 1e-13);
        let cfg = MultipleNegativesRankingConfig {
            scale: 0.0,
            activation_fn: ActivationFn::Identity,
            ..Default::default()
        };
        let loss = multiple_negatives_ranking(&m64(&rows), None, &cfg)?;
        assert_close(scalar(&loss), reference_loss(&rows, 1.0, false), 1e-13);
        Ok(())
    }

    #[test]
    fn masked_scores_leave_the_softmax() -> Result<()> {
        let cfg = MultipleNegativesRankingConfig::default();
        let full = multiple_negatives_ranking(&m64(&[&[2.0, 0.5]]), None, &cfg)?;
        let padded = multiple_negatives_ranking(
            &m64(&[&[2.0, 0.5, 9.0]]),
            Some(&m64(&[&[1.0, 1.0, 0.0]])),
            &cfg,
        )?;
        assert_close(scalar(&padded), scalar(&full), 1e-12);
        let message =
            multiple_negatives_ranking(&m64(&[&[2.0, 0.5]]), Some(&m64(&[&[0.0, 1.0]])), &cfg)
                .unwrap_err()
                .to_string();
        assert_eq!(
            message,
            "multiple_negatives_ranking: row 0 masks out its positive (column 0)"
        );
        Ok(())
    }

    #[test]
    fn gradient_matches_central_differences() {
        let mask = m64(&[&[1.0, 1.0, 1.0], &[1.0, 0.0, 1.0]]);
        for (activation_fn, scale) in [(ActivationFn::Sigmoid, 10.0), (ActivationFn::Identity, 0.0)]
        {
            let cfg = MultipleNegativesRankingConfig {
                activation_fn,
                scale,
                ..Default::default()
            };
            let x0 = [2.0, 0.5, -1.0, 0.3, 1.2, 0.1];
            check_gradient(&x0, &[2, 3], 1e-6, |x| {
                multiple_negatives_ranking(x, None, &cfg)
            });
            check_gradient(&x0, &[2, 3], 1e-6, |x| {
                multiple_negatives_ranking(x, Some(&mask), &cfg)
            });
        }
    }

    #[test]
    fn sampling_takes_distinct_candidates_of_other_rows() -> Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (batch, columns) = (5, 3); // 3 candidate columns: positive + 2 hard negatives
        for _ in 0..50 {
            let negatives =
                sample_in_batch_negatives(batch, columns, NumNegatives::Count(6), &mut rng)?;
            for (anchor, list) in negatives.iter().enumerate() {
                assert_eq!(list.len(), 6);
                assert!(list
                    .iter()
                    .all(|c| c.row != anchor && c.row < batch && c.column < columns));
                assert_eq!(list.iter().collect::<HashSet<_>>().len(), 6, "no repeats");
            }
        }
        Ok(())
    }

    #[test]
    fn sampling_is_uniform_over_valid_candidates() -> Result<()> {
        // anchor 0 of B=3, C=2 has 4 valid candidates; picking 1 each time, each should come up
        // ~1/4 of 4000 draws (binomial sd ≈ 27, so ±150 is > 5 sd).
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..4000 {
            let negatives = sample_in_batch_negatives(3, 2, NumNegatives::Count(1), &mut rng)?;
            *counts.entry(negatives[0][0]).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 4);
        for (candidate, count) in counts {
            assert!(candidate.row != 0);
            assert!(
                (850..=1150).contains(&count),
                "{candidate:?} drawn {count} times"
            );
        }
        Ok(())
    }

    #[test]
    fn all_negatives_in_flat_order_when_asked_or_when_k_reaches_the_pool() -> Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        // B=3, C=2: anchor 1's valid flat indices c·B + j, j ≠ 1: (c0,r0), (c0,r2), (c1,r0), (c1,r2)
        let expected = vec![
            Candidate { row: 0, column: 0 },
            Candidate { row: 2, column: 0 },
            Candidate { row: 0, column: 1 },
            Candidate { row: 2, column: 1 },
        ];
        for num_negatives in [
            NumNegatives::All,
            NumNegatives::Count(4),
            NumNegatives::Count(99),
        ] {
            let negatives = sample_in_batch_negatives(3, 2, num_negatives, &mut rng)?;
            assert_eq!(negatives[1], expected);
            assert_eq!(negatives[0].len(), 4);
        }
        // one row: no other rows, no in-batch negatives
        assert_eq!(
            sample_in_batch_negatives(1, 2, NumNegatives::Count(4), &mut rng)?,
            vec![Vec::<Candidate>::new()]
        );
        assert_eq!(
            sample_in_batch_negatives(3, 1, NumNegatives::Count(0), &mut rng)?,
            vec![Vec::<Candidate>::new(); 3]
        );
        Ok(())
    }

    #[test]
    fn same_seed_same_negatives() -> Result<()> {
        let a = sample_in_batch_negatives(
            8,
            2,
            NumNegatives::Count(3),
            &mut ChaCha8Rng::seed_from_u64(5),
        )?;
        let b = sample_in_batch_negatives(
            8,
            2,
            NumNegatives::Count(3),
            &mut ChaCha8Rng::seed_from_u64(5),
        )?;
        assert_eq!(a, b);
        Ok(())
    }

    #[test]
    fn pairs_are_column_major_and_rebuild_the_score_matrix() -> Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (batch, columns) = (3, 2);
        let layout = mnrl_pairs(batch, columns, NumNegatives::Count(2), &mut rng)?;
        assert_eq!((layout.num_in_batch, layout.num_hard), (2, 1));
        assert_eq!(layout.num_score_columns(), 4);
        assert_eq!(layout.pairs.len(), 12);
        for (index, pair) in layout.pairs.iter().enumerate() {
            let (c, i) = (index / batch, index % batch);
            assert_eq!(pair.anchor, i);
            match c {
                0 => assert_eq!(pair.candidate, Candidate { row: i, column: 0 }),
                1 | 2 => assert_ne!(pair.candidate.row, i),
                _ => assert_eq!(pair.candidate, Candidate { row: i, column: 1 }),
            }
        }
        // logit of pair p = p: the score matrix entry (i, c) must be c·B + i
        let flat = t64(&(0..12).map(f64::from).collect::<Vec<_>>(), &[12]);
        let matrix: Vec<Vec<f64>> = layout.score_matrix(&flat)?.to_vec2()?;
        for (i, row) in matrix.iter().enumerate() {
            for (c, value) in row.iter().enumerate() {
                assert_eq!(*value, (c * batch + i) as f64);
            }
        }
        let message = layout
            .score_matrix(&t64(&[0.0; 11], &[11]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "multiple_negatives_ranking: pair logits have shape [11] but 3 anchors x 4 score columns need [12]"
        );
        Ok(())
    }

    #[test]
    fn config_from_params_and_card() {
        let cfg = MultipleNegativesRankingConfig::default();
        assert_eq!(
            cfg.config_dict(),
            json!({"scale": 10.0, "num_negatives": 4, "activation_fn": "torch.nn.modules.activation.Sigmoid"})
        );
        let cfg = MultipleNegativesRankingConfig::from_params(&table(
            "num_negatives = \"all\"\nscale = 20\nactivation_fn = \"identity\"",
        ))
        .unwrap();
        assert_eq!(cfg.num_negatives, NumNegatives::All);
        assert_eq!(
            cfg.config_dict(),
            json!({"scale": 20.0, "num_negatives": null, "activation_fn": "torch.nn.modules.linear.Identity"})
        );
        let message = MultipleNegativesRankingConfig::from_params(&table("num_negatives = -1"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "loss \"multiple_negatives_ranking\": parameter \"num_negatives\" must be an integer >= 0 or \"all\", found integer -1"
        );
    }
}
