//! DeBERTa's relative positions: `i − j` between query `i` and key `j`, in log buckets past half
//! the bucket count (transformers' `build_relative_position` / `make_log_bucket_position`), and
//! the rows of the relative-embedding table the c2p and p2c terms read for them.

/// The relative position of query `i` to key `j` (`i − j`), bucketed as transformers'
/// `make_log_bucket_position` does when `bucket_size` and `max_position` are both positive:
/// distances below `bucket_size / 2` stay exact, longer ones go to
/// `ceil(ln(|d| / mid) / ln((max_position − 1) / mid) · (mid − 1)) + mid` with the sign of `d`,
/// computed in f32 as torch does.
pub(super) fn relative_position(
    query: usize,
    key: usize,
    bucket_size: isize,
    max_position: isize,
) -> isize {
    let rel = query as isize - key as isize;
    if bucket_size <= 0 || max_position <= 0 {
        return rel;
    }
    let mid = bucket_size / 2;
    let abs_pos = if rel < mid && rel > -mid {
        mid - 1
    } else {
        rel.abs()
    };
    if abs_pos <= mid {
        return rel;
    }
    let base = (((max_position - 1) as f64) / mid as f64) as f32;
    let log_pos =
        ((abs_pos as f32 / mid as f32).ln() / base.ln() * (mid - 1) as f32).ceil() + mid as f32;
    (log_pos * rel.signum() as f32) as isize
}

/// `(L, L)` row indices into the `2 · span` relative embeddings, for query `i` (row) and key `j`
/// (column): c2p reads `clamp(δ(i, j) + span)`, p2c `clamp(span − δ(j, i))`, with `δ`
/// [`relative_position`] and the clamp to `[0, 2·span − 1]`.
#[derive(Debug, Clone)]
pub(super) struct RelativeIndex {
    /// Row-major `(L, L)`.
    pub(super) index: Vec<u32>,
    /// The smallest and largest entry: the rows the term reads.
    pub(super) first: usize,
    pub(super) last: usize,
}

/// Which of the two disentangled terms an index serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RelativeTerm {
    /// Content to position: the query against the key's relative position.
    C2p,
    /// Position to content: the key against the query's relative position.
    P2c,
}

impl RelativeIndex {
    pub(super) fn new(
        term: RelativeTerm,
        seq_len: usize,
        span: usize,
        bucket_size: isize,
        max_position: isize,
    ) -> Self {
        let top = (2 * span).saturating_sub(1) as isize;
        let index: Vec<u32> = (0..seq_len)
            .flat_map(|i| {
                (0..seq_len).map(move |j| {
                    let row = match term {
                        RelativeTerm::C2p => {
                            relative_position(i, j, bucket_size, max_position) + span as isize
                        }
                        RelativeTerm::P2c => {
                            span as isize - relative_position(j, i, bucket_size, max_position)
                        }
                    };
                    row.clamp(0, top) as u32
                })
            })
            .collect();
        let first = index.iter().copied().min().unwrap_or(0) as usize;
        let last = index.iter().copied().max().unwrap_or(0) as usize;
        Self { index, first, last }
    }

    /// How many embedding rows the term reads.
    pub(super) fn rows(&self) -> usize {
        self.last + 1 - self.first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers 5.24 `make_log_bucket_position(torch.arange(-300, 301)[::25], 256, 512)`.
    #[test]
    fn log_buckets_match_transformers_at_deberta_v3_settings() {
        let want = [
            -207, -199, -190, -180, -169, -157, -143, -125, -100, -75, -50, -25, 0, 25, 50, 75,
            100, 125, 143, 157, 169, 180, 190, 199, 207,
        ];
        for (k, want) in want.iter().enumerate() {
            let d = -300 + 25 * k as isize;
            // relative_position(i, j) buckets i − j.
            let (i, j) = if d >= 0 {
                (d as usize, 0)
            } else {
                (0, (-d) as usize)
            };
            assert_eq!(relative_position(i, j, 256, 512), *want, "distance {d}");
        }
    }

    /// transformers 5.24 `make_log_bucket_position(torch.arange(-31, 32), 6, 20)`.
    #[test]
    fn log_buckets_match_transformers_at_a_small_bucket_count() {
        let want = [
            -6, -6, -6, -6, -6, -6, -6, -6, -6, -6, -6, -6, -5, -5, -5, -5, -5, -5, -5, -5, -5, -5,
            -5, -5, -4, -4, -4, -4, -3, -2, -1, 0, 1, 2, 3, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5,
            5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
        ];
        for (k, want) in want.iter().enumerate() {
            let d = k as isize - 31;
            let (i, j) = if d >= 0 {
                (d as usize, 0)
            } else {
                (0, (-d) as usize)
            };
            assert_eq!(relative_position(i, j, 6, 20), *want, "distance {d}");
        }
    }

    #[test]
    fn without_buckets_the_index_is_the_clamped_distance() {
        // span 2: rows 0..4; c2p row = clamp(i − j + 2), p2c row = clamp(2 − (j − i)).
        let c2p = RelativeIndex::new(RelativeTerm::C2p, 4, 2, -1, -1);
        assert_eq!(c2p.index, [2, 1, 0, 0, 3, 2, 1, 0, 3, 3, 2, 1, 3, 3, 3, 2]);
        assert_eq!((c2p.first, c2p.last, c2p.rows()), (0, 3, 4));
        let p2c = RelativeIndex::new(RelativeTerm::P2c, 4, 2, -1, -1);
        assert_eq!(p2c.index, c2p.index);
        let short = RelativeIndex::new(RelativeTerm::C2p, 2, 8, -1, -1);
        assert_eq!(short.index, [8, 7, 9, 8]);
        assert_eq!((short.first, short.rows()), (7, 3));
    }
}
