//! Pair tokenisation, exactly as sentence-transformers' `CrossEncoder` does it.
//!
//! The tokenizer's own pair template adds the special tokens; truncation is `longest_first` to
//! `max_length` (special tokens included); padding is to the longest pair of the batch. Any
//! padding or truncation baked into `tokenizer.json` (all-MiniLM-L6-v2's pads to 128) is replaced
//! by these settings, so it cannot change results.
//!
//! The `tokenizers` crate encodes each text whole; the truncation is done here, by
//! [`longest_first_lengths`] on the texts' full lengths, before the crate's post-processor adds
//! the special tokens. The crate's own pair truncation (0.23.2) compares the texts after cutting
//! each to `max_length`: two texts longer than that look equally long, and an odd budget gave
//! the extra token to the second text where transformers (the Python `tokenizers` 0.23.3) gives
//! it to the longer one.

use std::path::Path;

use tokenizers::parallelism::MaybeParallelIterator;
use tokenizers::{Encoding, PaddingParams, PostProcessor, Tokenizer, TruncationDirection};

use crate::error::{Error, Result};

/// One tokenised pair, unpadded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPair {
    /// Token ids with special tokens.
    pub input_ids: Vec<u32>,
    /// Segment ids (0 for the first text, 1 for the second where the template says so).
    pub type_ids: Vec<u32>,
}

impl EncodedPair {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// True when there are no tokens (never the case with a pair template).
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

/// A padded batch of pairs, row-major `(batch, seq_len)`.
#[derive(Debug, Clone, PartialEq)]
pub struct PaddedBatch {
    /// Number of rows.
    pub batch_size: usize,
    /// Longest pair in the batch.
    pub seq_len: usize,
    /// Token ids, padded with the pad id.
    pub input_ids: Vec<u32>,
    /// Segment ids, padded with 0.
    pub type_ids: Vec<u32>,
    /// 1.0 on real tokens, 0.0 on padding.
    pub attention_mask: Vec<f32>,
}

/// Tokenises (query, passage) pairs for one model.
#[derive(Clone)]
pub struct PairTokenizer {
    tokenizer: Tokenizer,
    max_length: usize,
    pad_id: u32,
}

impl std::fmt::Debug for PairTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairTokenizer")
            .field("max_length", &self.max_length)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

/// `model_max_length` from a `tokenizer_config.json`, when present and sane.
pub fn model_max_length(dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let max = value.get("model_max_length")?.as_f64()?;
    // transformers writes 1e30 for "no limit".
    (1.0..1e9).contains(&max).then_some(max as usize)
}

impl PairTokenizer {
    /// Load `tokenizer.json` from `path`, truncating pairs to `max_length` tokens.
    pub fn from_file(path: &Path, max_length: usize, pad_id: u32) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path).map_err(|e| {
            Error::input(path, None, format!("cannot load the tokenizer: {e}")).with_hint(
                "the model directory needs a tokenizer.json written by Hugging Face tokenizers",
            )
        })?;
        Self::new(tokenizer, max_length, pad_id)
    }

    /// Wrap a loaded tokenizer, replacing its padding and truncation settings (this type
    /// truncates and pads itself).
    pub fn new(mut tokenizer: Tokenizer, max_length: usize, pad_id: u32) -> Result<Self> {
        if max_length < 4 {
            return Err(Error::invalid(format!(
                "max_length must leave room for a pair with its special tokens (at least 4), found {max_length}"
            )));
        }
        tokenizer.with_padding(None::<PaddingParams>);
        tokenizer.with_truncation(None).map_err(Error::Tokenizer)?;
        Ok(Self {
            tokenizer,
            max_length,
            pad_id,
        })
    }

    /// The truncation length, special tokens included.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The id used for padding.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The wrapped Hugging Face tokenizer (no padding, no truncation: [`Self::encode_pairs`] and
    /// [`Self::encode_texts`] truncate).
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Tokenise pairs (in parallel), unpadded, in input order.
    ///
    /// Each text is encoded whole without special tokens, the two are cut to the lengths
    /// [`longest_first_lengths`] gives for the budget `max_length` minus the pair template's
    /// special tokens, and the tokenizer's post-processor adds the special tokens and segment
    /// ids: what `tokenizer(a, b, truncation=True, max_length=...)` gives in transformers.
    pub fn encode_pairs<A: AsRef<str> + Sync, B: AsRef<str> + Sync>(
        &self,
        pairs: &[(A, B)],
    ) -> Result<Vec<EncodedPair>> {
        let budget = self.max_length.saturating_sub(self.special_tokens(true));
        pairs
            .iter()
            .collect::<Vec<_>>()
            .into_maybe_par_iter()
            .map(|(first, second)| {
                let mut first = self.tokenizer.encode(first.as_ref(), false)?;
                let mut second = self.tokenizer.encode(second.as_ref(), false)?;
                let (first_len, second_len) =
                    longest_first_lengths(first.len(), second.len(), budget);
                truncate(&mut first, first_len);
                truncate(&mut second, second_len);
                // The second text of a pair has segment id 1, as the crate's pair encoding gives it.
                second.set_type_ids(vec![1; second.len()]);
                let encoding = self.tokenizer.post_process(first, Some(second), true)?;
                Ok(EncodedPair {
                    input_ids: encoding.get_ids().to_vec(),
                    type_ids: encoding.get_type_ids().to_vec(),
                })
            })
            .collect()
    }

    /// Tokenise single texts (used by bi-encoders and by the tokenizer checks), each cut to
    /// `max_length` with its special tokens.
    pub fn encode_texts<A: AsRef<str> + Sync>(&self, texts: &[A]) -> Result<Vec<EncodedPair>> {
        let budget = self.max_length.saturating_sub(self.special_tokens(false));
        texts
            .iter()
            .collect::<Vec<_>>()
            .into_maybe_par_iter()
            .map(|text| {
                let mut encoding = self.tokenizer.encode(text.as_ref(), false)?;
                truncate(&mut encoding, budget);
                let encoding = self.tokenizer.post_process(encoding, None, true)?;
                Ok(EncodedPair {
                    input_ids: encoding.get_ids().to_vec(),
                    type_ids: encoding.get_type_ids().to_vec(),
                })
            })
            .collect()
    }

    /// Special tokens the post-processor adds to a pair (`pair`) or a single text.
    fn special_tokens(&self, pair: bool) -> usize {
        self.tokenizer
            .get_post_processor()
            .map_or(0, |processor| processor.added_tokens(pair))
    }

    /// Pad encoded pairs to the longest of them.
    pub fn pad(&self, encoded: &[&EncodedPair]) -> PaddedBatch {
        pad_batch(encoded, self.pad_id)
    }
}

/// Keep the first `len` tokens of `encoding`; what is cut is dropped, not kept as overflow for
/// the post-processor to expand.
fn truncate(encoding: &mut Encoding, len: usize) {
    if encoding.len() > len {
        encoding.truncate(len, 0, TruncationDirection::Right);
    }
    encoding.take_overflowing();
}

/// The lengths `longest_first` truncation leaves of a pair of texts of `first` and `second`
/// tokens (their full lengths) within `budget` tokens (special tokens excluded), as the fast
/// tokenizers of transformers compute them: a text of at most half the budget is kept whole and
/// the other cut to the rest; when both are longer, each gets half, and an odd budget's extra
/// token goes to the longer text, the second on a tie (budget 125, first text longer: 63 + 62).
pub fn longest_first_lengths(first: usize, second: usize, budget: usize) -> (usize, usize) {
    if first + second <= budget {
        return (first, second);
    }
    let (half_down, half_up) = (budget / 2, budget.div_ceil(2));
    if first > second {
        if second <= half_down {
            (budget - second, second)
        } else {
            (half_up, half_down)
        }
    } else if first <= half_down {
        (first, budget - first)
    } else {
        (half_down, half_up)
    }
}

/// Pad `encoded` to its longest member with `pad_id` (mask 0, type id 0 on padding).
pub fn pad_batch(encoded: &[&EncodedPair], pad_id: u32) -> PaddedBatch {
    let batch_size = encoded.len();
    let seq_len = encoded.iter().map(|e| e.len()).max().unwrap_or(0);
    let mut input_ids = vec![pad_id; batch_size * seq_len];
    let mut type_ids = vec![0u32; batch_size * seq_len];
    let mut attention_mask = vec![0f32; batch_size * seq_len];
    for (row, pair) in encoded.iter().enumerate() {
        let start = row * seq_len;
        let len = pair.len();
        input_ids[start..start + len].copy_from_slice(&pair.input_ids);
        type_ids[start..start + len].copy_from_slice(&pair.type_ids);
        attention_mask[start..start + len].fill(1.0);
    }
    PaddedBatch {
        batch_size,
        seq_len,
        input_ids,
        type_ids,
        attention_mask,
    }
}

/// Indices of `lengths` sorted longest first (stable), the order in which batches are run so
/// that each batch pads as little as possible. Scores are written back by index.
pub fn length_sorted_order(lengths: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order
}

/// Run `encoded` through `run_batch` in batches of `batch_size` taken in
/// [`length_sorted_order`], and return its rows in input order (row `i` belongs to
/// `encoded[i]`). `run_batch` returns one row per pair of its batch, in batch order; `on_batch`
/// is told how many pairs each finished batch held. `batch_size` must be at least 1.
pub fn in_length_sorted_batches<T: Default>(
    encoded: &[EncodedPair],
    batch_size: usize,
    on_batch: &mut dyn FnMut(usize),
    mut run_batch: impl FnMut(&[&EncodedPair]) -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    let lengths: Vec<usize> = encoded.iter().map(EncodedPair::len).collect();
    let order = length_sorted_order(&lengths);
    let mut out: Vec<T> = encoded.iter().map(|_| T::default()).collect();
    for chunk in order.chunks(batch_size) {
        let batch: Vec<&EncodedPair> = chunk.iter().map(|&i| &encoded[i]).collect();
        for (&i, row) in chunk.iter().zip(run_batch(&batch)?) {
            out[i] = row;
        }
        on_batch(chunk.len());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_batch_pads_to_longest_with_mask() {
        let a = EncodedPair {
            input_ids: vec![1, 2, 3],
            type_ids: vec![0, 0, 1],
        };
        let b = EncodedPair {
            input_ids: vec![4],
            type_ids: vec![0],
        };
        let padded = pad_batch(&[&a, &b], 9);
        assert_eq!(padded.seq_len, 3);
        assert_eq!(padded.input_ids, vec![1, 2, 3, 4, 9, 9]);
        assert_eq!(padded.type_ids, vec![0, 0, 1, 0, 0, 0]);
        assert_eq!(padded.attention_mask, vec![1., 1., 1., 1., 0., 0.]);
    }

    #[test]
    fn longest_first_lengths_follow_the_longer_text() {
        assert_eq!(longest_first_lengths(3, 4, 21), (3, 4));
        assert_eq!(longest_first_lengths(3, 70, 21), (3, 18));
        assert_eq!(longest_first_lengths(68, 4, 21), (17, 4));
        // Both long, odd budget: the longer keeps the extra token, the second on a tie.
        assert_eq!(longest_first_lengths(82, 38, 21), (11, 10));
        assert_eq!(longest_first_lengths(34, 82, 21), (10, 11));
        assert_eq!(longest_first_lengths(48, 48, 21), (10, 11));
        assert_eq!(longest_first_lengths(300, 200, 125), (63, 62));
        // Even budget: halves.
        assert_eq!(longest_first_lengths(82, 38, 22), (11, 11));
        // Every result fills the budget exactly and never grows a text.
        for budget in 0..30 {
            for first in 0..40 {
                for second in 0..40 {
                    let (a, b) = longest_first_lengths(first, second, budget);
                    assert!(a <= first && b <= second);
                    assert_eq!(a + b, (first + second).min(budget));
                }
            }
        }
    }

    #[test]
    fn length_order_is_longest_first_and_stable() {
        assert_eq!(length_sorted_order(&[3, 5, 3, 1, 5]), vec![1, 4, 0, 2, 3]);
    }

    #[test]
    fn batches_run_longest_first_and_rows_come_back_in_input_order() {
        let pair = |len: usize| EncodedPair {
            input_ids: vec![7; len],
            type_ids: vec![0; len],
        };
        let encoded = [pair(2), pair(5), pair(1), pair(5), pair(3)];
        let mut batches: Vec<Vec<usize>> = Vec::new();
        let mut sizes = Vec::new();
        let rows = in_length_sorted_batches(&encoded, 2, &mut |n| sizes.push(n), |batch| {
            let lengths: Vec<usize> = batch.iter().map(|pair| pair.len()).collect();
            batches.push(lengths.clone());
            Ok(lengths)
        })
        .unwrap();
        assert_eq!(batches, vec![vec![5, 5], vec![3, 2], vec![1]]);
        assert_eq!(sizes, vec![2, 2, 1]);
        assert_eq!(rows, vec![2, 5, 1, 5, 3]);
    }
}
