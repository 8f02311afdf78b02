//! DeBERTa's disentangled self-attention for inference: one CPU kernel over f32 slices, the
//! `batch × heads` heads in parallel, each head reading its columns of the fused QKV projection
//! in place (no head-split copies) and writing its columns of the context.
//!
//! Per head, with `s = 1 / sqrt(head_dim · scale_factor)` (`scale_factor` is 1 plus one per
//! term in `pos_att_type`):
//!
//! ```text
//! score[i, j] = s · (q_i · k_j  +  q_i · Pk[c2p(i, j)]  +  k_j · Pq[p2c(i, j)])
//! context_i   = Σ_j softmax_j(score[i, ·] over keys the mask keeps) · v_j
//! ```
//!
//! `Pk`, `Pq` are the relative embeddings projected by the layer's key and query (or
//! `pos_key_proj`, `pos_query_proj`) weights; `c2p`, `p2c` the row indices of
//! [`super::relative_position::RelativeIndex`]. transformers multiplies each query with all
//! `2 · span` position rows and gathers; here only the rows the `L × L` indices reach are
//! multiplied (`2L − 1` of them when positions are exact), then gathered per query and key.

use gemm::Parallelism;
use rayon::prelude::*;

use super::fused::{matmul, SharedMut, View};
use super::relative_position::RelativeIndex;

/// Shape of one attention call.
#[derive(Debug, Clone, Copy)]
pub(super) struct AttentionShape {
    pub(super) batch: usize,
    pub(super) seq_len: usize,
    pub(super) heads: usize,
    pub(super) head_dim: usize,
}

impl AttentionShape {
    /// Width of the query, key, value and context rows (`heads · head_dim`).
    pub(super) fn width(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// One relative term: the projected relative embeddings `(2 · span, width)` and the rows each
/// (query, key) reads.
pub(super) struct RelativeTermInput<'a> {
    pub(super) positions: &'a [f32],
    pub(super) index: &'a RelativeIndex,
}

/// Context `(B · L, width)` of disentangled attention over `qkv` `(B · L, 3 · width)` (query,
/// key and value side by side, heads of `head_dim` consecutive columns in each). `key_mask`
/// `(B, L)`: keys with a value ≤ 0.5 get probability 0. Rows of queries the mask drops are
/// computed like any other (callers ignore them).
pub(super) fn disentangled_attention(
    qkv: &[f32],
    key_mask: &[f32],
    shape: AttentionShape,
    scale: f32,
    c2p: Option<RelativeTermInput<'_>>,
    p2c: Option<RelativeTermInput<'_>>,
) -> Vec<f32> {
    let AttentionShape {
        batch,
        seq_len,
        heads,
        head_dim,
    } = shape;
    let width = shape.width();
    let stride = 3 * width;
    assert_eq!(qkv.len(), batch * seq_len * stride, "attention: qkv size");
    assert_eq!(key_mask.len(), batch * seq_len, "attention: key mask size");
    for term in c2p.iter().chain(&p2c) {
        assert_eq!(
            term.index.index.len(),
            seq_len * seq_len,
            "attention: index"
        );
        assert!(
            (term.index.last + 1) * width <= term.positions.len(),
            "attention: relative rows"
        );
    }
    let mut context = vec![0f32; batch * seq_len * width];
    let out = SharedMut(context.as_mut_ptr());
    let square = seq_len * seq_len;
    let c2p_cols = c2p.as_ref().map_or(0, |t| t.index.rows());
    let p2c_cols = p2c.as_ref().map_or(0, |t| t.index.rows());
    let head = |bh: usize, scratch: &mut Scratch| {
        let (b, h) = (bh / heads, bh % heads);
        let row0 = b * seq_len;
        let q_at = row0 * stride + h * head_dim;
        let k_at = q_at + width;
        let v_at = q_at + 2 * width;
        let scores = &mut scratch.scores;
        // SAFETY: every buffer below holds the rows × columns written; the views read inside
        // qkv and the position tables (sizes checked above); head bh writes only its own
        // seq_len × head_dim column block of the context.
        unsafe {
            matmul(
                seq_len,
                seq_len,
                head_dim,
                scores.as_mut_ptr(),
                seq_len,
                false,
                View::rows(qkv, q_at, stride),
                View::transposed(qkv, k_at, stride),
                Parallelism::None,
            );
            // (X Pᵀ) for X the head's queries (c2p) or keys (p2c) and P the position rows the
            // batch reaches, projected by the other side's weights.
            let position_product = |term: &RelativeTermInput, x_at: usize, out: &mut [f32]| {
                let cols = term.index.rows();
                matmul(
                    seq_len,
                    cols,
                    head_dim,
                    out.as_mut_ptr(),
                    cols,
                    false,
                    View::rows(qkv, x_at, stride),
                    View::transposed(
                        term.positions,
                        term.index.first * width + h * head_dim,
                        width,
                    ),
                    Parallelism::None,
                );
            };
            if let Some(term) = &c2p {
                position_product(term, q_at, &mut scratch.c2p);
            }
            if let Some(term) = &p2c {
                position_product(term, k_at, &mut scratch.p2c);
            }
        }
        if let Some(term) = &c2p {
            // score[i, j] += (Q Pkᵀ)[i, c2p(i, j)]
            let first = term.index.first;
            for ((row, index), c_row) in scores
                .chunks_mut(seq_len)
                .zip(term.index.index.chunks(seq_len))
                .zip(scratch.c2p.chunks(c2p_cols))
            {
                for (s, &r) in row.iter_mut().zip(index) {
                    *s += c_row[r as usize - first];
                }
            }
        }
        if let Some(term) = &p2c {
            // score[i, j] += (K Pqᵀ)[j, p2c(i, j)]
            let first = term.index.first;
            for (row, index) in scores
                .chunks_mut(seq_len)
                .zip(term.index.index.chunks(seq_len))
            {
                for (j, (s, &r)) in row.iter_mut().zip(index).enumerate() {
                    *s += scratch.p2c[j * p2c_cols + r as usize - first];
                }
            }
        }
        masked_softmax(scores, &key_mask[row0..row0 + seq_len], scale);
        // SAFETY: as above.
        unsafe {
            matmul(
                seq_len,
                head_dim,
                seq_len,
                out.at(row0 * width + h * head_dim),
                width,
                false,
                View::rows(scores, 0, seq_len),
                View::rows(qkv, v_at, stride),
                Parallelism::None,
            );
        }
    };
    (0..batch * heads).into_par_iter().for_each_init(
        || Scratch {
            scores: vec![0f32; square],
            c2p: vec![0f32; seq_len * c2p_cols],
            p2c: vec![0f32; seq_len * p2c_cols],
        },
        |scratch, bh| head(bh, scratch),
    );
    context
}

/// A task's buffers for one head.
struct Scratch {
    scores: Vec<f32>,
    c2p: Vec<f32>,
    p2c: Vec<f32>,
}

/// Softmax of `scale · row` over each `(L)` row of `scores`, in place, with keys whose mask is
/// ≤ 0.5 at probability 0 (a row with no key left is all zeros).
fn masked_softmax(scores: &mut [f32], key_mask: &[f32], scale: f32) {
    let keys = key_mask.len();
    for row in scores.chunks_mut(keys) {
        let mut max = f32::NEG_INFINITY;
        for (s, m) in row.iter_mut().zip(key_mask) {
            *s *= scale;
            if *m > 0.5 && *s > max {
                max = *s;
            }
        }
        let mut sum = 0f32;
        for (s, m) in row.iter_mut().zip(key_mask) {
            *s = if *m > 0.5 { (*s - max).exp() } else { 0.0 };
            sum += *s;
        }
        if sum > 0.0 {
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|s| *s *= inv);
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, D};

    use super::super::relative_position::RelativeTerm;
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0) * 0.9)
            .collect()
    }

    /// The kernel against the formula written with candle ops, term by term: full `2·span`
    /// products gathered with the indices, as transformers computes them.
    #[test]
    fn matches_the_formula_with_full_position_products_and_padding() {
        let shape = AttentionShape {
            batch: 2,
            seq_len: 7,
            heads: 3,
            head_dim: 4,
        };
        let (b, l, heads, d, w) = (2, 7, 3, 4, 12);
        let span = 3;
        let qkv = values(b * l * 3 * w, 1);
        let pos_key = values(2 * span * w, 2);
        let pos_query = values(2 * span * w, 3);
        let mut key_mask = vec![1f32; b * l];
        key_mask[l + 5..].iter_mut().for_each(|m| *m = 0.0);
        let c2p_index = RelativeIndex::new(RelativeTerm::C2p, l, span, 4, 6);
        let p2c_index = RelativeIndex::new(RelativeTerm::P2c, l, span, 4, 6);
        let scale = 1.0 / ((d * 3) as f32).sqrt();
        let got = disentangled_attention(
            &qkv,
            &key_mask,
            shape,
            scale,
            Some(RelativeTermInput {
                positions: &pos_key,
                index: &c2p_index,
            }),
            Some(RelativeTermInput {
                positions: &pos_query,
                index: &p2c_index,
            }),
        );

        let dev = Device::Cpu;
        let qkv = Tensor::from_vec(qkv, (b, l, 3, heads, d), &dev).unwrap();
        let part = |k: usize| {
            qkv.narrow(2, k, 1)
                .unwrap()
                .squeeze(2)
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (q, k, v) = (part(0), part(1), part(2)); // (B, heads, L, d)
        let positions = |t: Vec<f32>| {
            Tensor::from_vec(t, (2 * span, heads, d), &dev)
                .unwrap()
                .transpose(0, 1)
                .unwrap()
                .contiguous()
                .unwrap()
                .unsqueeze(0)
                .unwrap()
                .broadcast_as((b, heads, 2 * span, d))
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (pk, pq) = (positions(pos_key), positions(pos_query));
        let gather = |xs: &Tensor, index: &RelativeIndex| {
            let index = Tensor::from_vec(index.index.clone(), (l, l), &dev)
                .unwrap()
                .broadcast_as((b, heads, l, l))
                .unwrap()
                .contiguous()
                .unwrap();
            xs.gather(&index, D::Minus1).unwrap()
        };
        let qk = q.matmul(&k.t().unwrap()).unwrap();
        let c2p = gather(&q.matmul(&pk.t().unwrap()).unwrap(), &c2p_index);
        // p2c(i, j) reads row j of K Pqᵀ at p2c(i, j): gather the transpose of the index from
        // K Pqᵀ, then transpose back.
        let p2c_t = RelativeIndex {
            index: (0..l * l)
                .map(|n| p2c_index.index[(n % l) * l + n / l])
                .collect(),
            ..p2c_index.clone()
        };
        let p2c = gather(&k.matmul(&pq.t().unwrap()).unwrap(), &p2c_t)
            .t()
            .unwrap();
        let scores = ((qk + c2p).unwrap() + p2c)
            .unwrap()
            .affine(scale as f64, 0.0)
            .unwrap();
        let mask = Tensor::from_vec(key_mask, (b, 1, 1, l), &dev).unwrap();
        let bias = ((mask - 1.0).unwrap() * 1e9).unwrap();
        let probs =
            candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&bias).unwrap()).unwrap();
        let want: Vec<f32> = probs
            .matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "{diff}");
    }
}
