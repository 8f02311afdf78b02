//! Exact top-k retrieval over normalised embeddings, one chunk of queries at a time: memory is
//! the corpus embeddings plus one `(chunk, corpus)` score block, never the full query × corpus
//! matrix (sentence-transformers issue #3164; the `faiss_batch_size` chunks of `model.similarity`
//! in `mine_hard_negatives`, `util/hard_negatives.py`).

use std::cmp::Ordering;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::bi_encoder::Embeddings;

/// The `k` best corpus documents of every query, best first.
///
/// Row `q` holds `k` slots; a slot is a corpus index with its score, or `None` (score −∞) when
/// the corpus has fewer than `k` documents (sentence-transformers pads with index −1, −∞).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidates {
    k: usize,
    indices: Vec<Option<usize>>,
    scores: Vec<f32>,
}

impl Candidates {
    /// Candidates from row-major slots (`indices.len() == scores.len() == rows × k`).
    pub fn new(k: usize, indices: Vec<Option<usize>>, scores: Vec<f32>) -> Result<Self> {
        if k == 0 || indices.len() != scores.len() || !indices.len().is_multiple_of(k) {
            return Err(Error::invalid(format!(
                "candidates need rows of k={k} slots with one score each, found {} indices and {} scores",
                indices.len(),
                scores.len()
            )));
        }
        Ok(Self { k, indices, scores })
    }

    /// Slots per query.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of queries.
    pub fn num_queries(&self) -> usize {
        self.indices.len() / self.k
    }

    /// The corpus indices of query `q`'s slots.
    pub fn indices(&self, q: usize) -> &[Option<usize>] {
        &self.indices[q * self.k..(q + 1) * self.k]
    }

    /// The scores of query `q`'s slots.
    pub fn scores(&self, q: usize) -> &[f32] {
        &self.scores[q * self.k..(q + 1) * self.k]
    }

    /// The scores of query `q`'s slots, to rescore or filter in place.
    pub fn scores_mut(&mut self, q: usize) -> &mut [f32] {
        &mut self.scores[q * self.k..(q + 1) * self.k]
    }

    /// Every score, row-major.
    pub fn all_scores(&self) -> &[f32] {
        &self.scores
    }
}

/// Order of (score, index) pairs: higher score first, then lower index (deterministic ties).
fn best_first(a: &(f32, usize), b: &(f32, usize)) -> Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// The `k` best of `scores` (a row of the score block), best first, padded with `None`/−∞.
pub fn top_k_of_row(scores: &[f32], k: usize) -> (Vec<Option<usize>>, Vec<f32>) {
    let mut order: Vec<(f32, usize)> = scores.iter().copied().zip(0..).collect();
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, best_first);
        order.truncate(k);
    }
    order.sort_unstable_by(best_first);
    let mut indices: Vec<Option<usize>> = order.iter().map(|&(_, i)| Some(i)).collect();
    let mut values: Vec<f32> = order.iter().map(|&(s, _)| s).collect();
    indices.resize(k, None);
    values.resize(k, f32::NEG_INFINITY);
    (indices, values)
}

/// Exact top-`k` by dot product (cosine on normalised embeddings) of every query against
/// `corpus` `(N, D)` (on any device), `chunk` queries at a time. `on_chunk` is told how many
/// queries each finished chunk held.
pub fn exact_top_k(
    queries: &Embeddings,
    corpus: &Tensor,
    k: usize,
    chunk: usize,
    on_chunk: &mut dyn FnMut(usize),
) -> Result<Candidates> {
    let (corpus_len, dim) = corpus.dims2()?;
    if dim != queries.dim() {
        return Err(Error::invalid(format!(
            "query embeddings have dimension {} but corpus embeddings {dim}",
            queries.dim()
        )));
    }
    if k == 0 || chunk == 0 {
        return Err(Error::invalid(format!(
            "top-k search needs k ≥ 1 and a chunk ≥ 1, found k={k}, chunk={chunk}"
        )));
    }
    let corpus_t = corpus.t()?;
    let mut indices = Vec::with_capacity(queries.len() * k);
    let mut scores = Vec::with_capacity(queries.len() * k);
    let num_queries = queries.len();
    let mut start = 0;
    while start < num_queries {
        let rows = chunk.min(num_queries - start);
        let block = Tensor::from_slice(
            &queries.values()[start * dim..(start + rows) * dim],
            (rows, dim),
            corpus.device(),
        )?
        .matmul(&corpus_t)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
        let tops: Vec<(Vec<Option<usize>>, Vec<f32>)> = block
            .par_chunks(corpus_len.max(1))
            .take(rows)
            .map(|row| top_k_of_row(row, k))
            .collect();
        if corpus_len == 0 {
            // No documents: every slot is padding.
            indices.extend(std::iter::repeat_n(None, rows * k));
            scores.extend(std::iter::repeat_n(f32::NEG_INFINITY, rows * k));
        } else {
            for (row_indices, row_scores) in tops {
                indices.extend(row_indices);
                scores.extend(row_scores);
            }
        }
        on_chunk(rows);
        start += rows;
    }
    Candidates::new(k, indices, scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_breaks_ties_by_index_and_pads_short_rows() {
        let (indices, scores) = top_k_of_row(&[0.1, 0.5, 0.5, -1.0, 0.9], 3);
        assert_eq!(indices, vec![Some(4), Some(1), Some(2)]);
        assert_eq!(scores, vec![0.9, 0.5, 0.5]);
        let (indices, scores) = top_k_of_row(&[0.2, 0.3], 4);
        assert_eq!(indices, vec![Some(1), Some(0), None, None]);
        assert_eq!(scores[..2], [0.3, 0.2]);
        assert!(scores[2..].iter().all(|s| *s == f32::NEG_INFINITY));
    }

    /// Chunked search equals a brute-force full sort of every query's dot products, whatever
    /// the chunk size.
    #[test]
    fn chunked_search_equals_brute_force() {
        let dim = 3;
        let corpus_rows: Vec<[f32; 3]> = (0..11)
            .map(|i| {
                let x = i as f32;
                [(x * 0.7).sin(), (x * 1.3).cos(), (x * 0.2 - 1.0).tanh()]
            })
            .collect();
        let query_rows: Vec<[f32; 3]> = (0..5)
            .map(|i| {
                let x = i as f32 + 0.5;
                [(x * 1.1).cos(), (x * 0.4).sin(), 0.3 * x - 0.5]
            })
            .collect();
        let corpus = Tensor::from_vec(
            corpus_rows.iter().flatten().copied().collect::<Vec<f32>>(),
            (11, dim),
            &Device::Cpu,
        )
        .unwrap();
        let queries = Embeddings::new(dim, query_rows.iter().flatten().copied().collect()).unwrap();
        for chunk in [1, 2, 5, 100] {
            let found = exact_top_k(&queries, &corpus, 4, chunk, &mut |_| {}).unwrap();
            for (q, query) in query_rows.iter().enumerate() {
                let mut brute: Vec<(f32, usize)> = corpus_rows
                    .iter()
                    .enumerate()
                    .map(|(i, doc)| (query.iter().zip(doc).map(|(a, b)| a * b).sum(), i))
                    .collect();
                brute.sort_by(best_first);
                let expected: Vec<Option<usize>> =
                    brute[..4].iter().map(|&(_, i)| Some(i)).collect();
                assert_eq!(found.indices(q), expected.as_slice(), "chunk {chunk}");
                for (got, want) in found.scores(q).iter().zip(&brute[..4]) {
                    assert!((got - want.0).abs() < 1e-6);
                }
            }
        }
        let padded = exact_top_k(&queries, &corpus, 13, 3, &mut |_| {}).unwrap();
        assert_eq!(padded.indices(0)[11..], [None, None]);
    }
}
