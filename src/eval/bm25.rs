//! Okapi BM25, a first-stage retriever whose top-k the cross-encoder reranks.
//!
//! Formula (the "Lucene" variant of Kamphuis et al., ECIR 2020, and the default of the `bm25s`
//! Python package, which this module reproduces exactly with `method="lucene"`):
//!
//! ```text
//! score(q, d) = Σ_{t in q} idf(t) · tf(t, d) / (tf(t, d) + k1 · (1 − b + b · |d| / avgdl))
//! idf(t)      = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5))
//! ```
//!
//! Why this variant: its idf is always positive, so a term in most documents still counts a
//! little, and its ranking is that of Lucene/Elasticsearch, the BM25 that BEIR's baselines use.
//! `rank_bm25`'s `BM25Okapi` uses `ln((N − df + 0.5)/(df + 0.5))`, negative for terms in more
//! than half the documents, patched with `0.25 · mean idf`, which makes scores depend on the
//! whole vocabulary. The defaults `k1 = 1.5`, `b = 0.75` are those of `rank_bm25` and `bm25s`.
//! A query term counts once per occurrence in the query (as in `rank_bm25`).
//!
//! Text goes through [`tokenize`]: lower-cased runs of alphanumeric characters (Unicode), no
//! stemming, no stop words.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// Lower-cased maximal runs of alphanumeric characters: `"BM25's top-k!"` →
/// `["bm25", "s", "top", "k"]`.
pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|token| !token.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// BM25's two parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25Config {
    /// Term-frequency saturation (>= 0); 0 makes the score binary in tf.
    pub k1: f64,
    /// Length normalisation, in [0, 1]; 0 ignores document length.
    pub b: f64,
}

impl Default for Bm25Config {
    /// `k1 = 1.5`, `b = 0.75` (`rank_bm25` and `bm25s` defaults).
    fn default() -> Self {
        Bm25Config { k1: 1.5, b: 0.75 }
    }
}

impl Bm25Config {
    /// Checks the ranges; the error names the bad value.
    pub fn validate(&self) -> Result<()> {
        if !(self.k1.is_finite() && self.k1 >= 0.0) {
            return Err(Error::invalid(format!(
                "BM25 k1 is {}; it must be a finite number >= 0 (usually 0.9 to 2.0)",
                self.k1
            )));
        }
        if !(0.0..=1.0).contains(&self.b) {
            return Err(Error::invalid(format!(
                "BM25 b is {}; it must be between 0 and 1 (usually 0.75)",
                self.b
            )));
        }
        Ok(())
    }
}

/// An inverted index over a corpus, scoring queries with BM25.
///
/// Documents are identified by their 0-based position in the corpus given to [`Bm25Index::build`].
#[derive(Debug, Clone)]
pub struct Bm25Index {
    config: Bm25Config,
    /// term -> index into `postings`.
    vocabulary: HashMap<String, usize>,
    /// Per term: (document, term frequency), documents ascending.
    postings: Vec<Vec<(u32, u32)>>,
    /// Tokens per document.
    doc_lengths: Vec<u32>,
    average_length: f64,
}

impl Bm25Index {
    /// Tokenise and index `documents`.
    ///
    /// Errors when the configuration is out of range, the corpus is empty, or it has more than
    /// `u32::MAX` documents or tokens per document.
    pub fn build<S: AsRef<str>>(documents: &[S], config: Bm25Config) -> Result<Self> {
        config.validate()?;
        if documents.is_empty() {
            return Err(Error::invalid(
                "BM25: the corpus is empty; need at least one document to index",
            ));
        }
        let too_large =
            || Error::invalid("BM25: more than 4294967295 documents or tokens in one document");
        let mut vocabulary: HashMap<String, usize> = HashMap::new();
        let mut postings: Vec<Vec<(u32, u32)>> = Vec::new();
        let mut doc_lengths = Vec::with_capacity(documents.len());
        let mut term_frequencies: HashMap<String, u32> = HashMap::new();
        for (doc, text) in documents.iter().enumerate() {
            let doc = u32::try_from(doc).map_err(|_| too_large())?;
            let tokens = tokenize(text.as_ref());
            doc_lengths.push(u32::try_from(tokens.len()).map_err(|_| too_large())?);
            term_frequencies.clear();
            for token in tokens {
                *term_frequencies.entry(token).or_default() += 1;
            }
            for (term, frequency) in term_frequencies.drain() {
                let next_id = postings.len();
                let id = *vocabulary.entry(term).or_insert(next_id);
                if id == next_id {
                    postings.push(Vec::new());
                }
                postings[id].push((doc, frequency));
            }
        }
        let average_length =
            doc_lengths.iter().map(|&l| f64::from(l)).sum::<f64>() / doc_lengths.len() as f64;
        Ok(Bm25Index {
            config,
            vocabulary,
            postings,
            doc_lengths,
            average_length,
        })
    }

    /// The number of indexed documents.
    pub fn num_docs(&self) -> usize {
        self.doc_lengths.len()
    }

    /// The configuration the index scores with.
    pub fn config(&self) -> Bm25Config {
        self.config
    }

    /// `idf(term)` for a (lower-case) term of the corpus; `None` for an unknown term.
    pub fn idf(&self, term: &str) -> Option<f64> {
        let id = *self.vocabulary.get(term)?;
        Some(self.idf_of(id))
    }

    fn idf_of(&self, id: usize) -> f64 {
        let n = self.num_docs() as f64;
        let df = self.postings[id].len() as f64;
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// The term-frequency part `tf / (tf + k1·(1 − b + b·|d|/avgdl))`.
    fn tf_part(&self, frequency: u32, doc: usize) -> f64 {
        let Bm25Config { k1, b } = self.config;
        let tf = f64::from(frequency);
        // avgdl is 0 only when every document is empty, and then no term has a posting.
        let length_ratio = f64::from(self.doc_lengths[doc]) / self.average_length;
        tf / (tf + k1 * (1.0 - b + b * length_ratio))
    }

    /// The BM25 score of every document for `query`; 0 for documents sharing no term with it.
    pub fn scores(&self, query: &str) -> Vec<f64> {
        let mut scores = vec![0.0; self.num_docs()];
        for token in tokenize(query) {
            let Some(&id) = self.vocabulary.get(&token) else {
                continue;
            };
            let idf = self.idf_of(id);
            for &(doc, frequency) in &self.postings[id] {
                let doc = doc as usize;
                scores[doc] += idf * self.tf_part(frequency, doc);
            }
        }
        scores
    }

    /// The `k` best documents for `query` as `(document index, score)`, best first; ties by
    /// ascending document index. Only documents that share a term with the query are returned,
    /// so there may be fewer than `k` (none for a query without a known term).
    pub fn top_k(&self, query: &str, k: usize) -> Vec<(usize, f64)> {
        let scores = self.scores(query);
        let mut hits: Vec<(usize, f64)> = scores
            .into_iter()
            .enumerate()
            .filter(|&(_, score)| score > 0.0)
            .collect();
        let by_score = |a: &(usize, f64), b: &(usize, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if hits.len() > k {
            if k == 0 {
                return Vec::new();
            }
            hits.select_nth_unstable_by(k - 1, by_score);
            hits.truncate(k);
        }
        hits.sort_by(by_score);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<&'static str> {
        vec![
            "The cat sat on the mat.",
            "Dogs chase cats; the dog barks at the cat!",
            "Rust programs compile to machine code.",
            "A mat for the dog.",
        ]
    }

    fn assert_close(actual: f64, expected: f64, what: &str) {
        assert!(
            (actual - expected).abs() < 1e-9,
            "{what}: got {actual}, expected {expected}"
        );
    }

    #[test]
    fn tokenizer_lowercases_alphanumeric_runs() {
        assert_eq!(
            tokenize("BM25's top-k! Ünïcode ok"),
            ["bm25", "s", "top", "k", "ünïcode", "ok"]
        );
        assert!(tokenize(" ,;- ").is_empty());
    }

    #[test]
    fn score_matches_hand_computation_and_bm25s() {
        // Lengths 6, 9, 6, 5 tokens: avgdl = 26/4 = 6.5, N = 4.
        // "cat": df 2 (docs 0, 1; "cats" is another term) -> idf = ln(1 + 2.5/2.5) = ln 2;
        // "mat": df 2, idf ln 2. Doc 0 for "cat mat": tf 1 each,
        // norm = 1.5 · (0.25 + 0.75 · 6/6.5) -> 2 · ln 2 / (1 + norm).
        let index = Bm25Index::build(&corpus(), Bm25Config::default()).unwrap();
        assert_close(index.idf("cat").unwrap(), 2f64.ln(), "idf");
        let norm = 1.5 * (0.25 + 0.75 * 6.0 / 6.5);
        let by_hand = 2.0 * 2f64.ln() / (1.0 + norm);
        let scores = index.scores("cat mat");
        assert_close(scores[0], by_hand, "doc 0 by hand");
        // bm25s 0.3.16, BM25(k1=1.5, b=0.75, method="lucene", dtype="float64") indexed on the
        // same token lists, get_scores(["cat", "mat"]).
        assert_close(scores[0], 0.5744008508225842, "doc 0 bm25s");
        assert_close(scores[1], 0.23635182550240755, "doc 1 bm25s");
        assert_close(scores[2], 0.0, "doc 2 bm25s");
        assert_close(scores[3], 0.309387582739203, "doc 3 bm25s");
    }

    #[test]
    fn top_k_ranks_the_relevant_document_first() {
        let index = Bm25Index::build(&corpus(), Bm25Config::default()).unwrap();
        let hits = index.top_k("how does rust compile code", 3);
        assert_eq!(hits.len(), 1, "only one document shares a term: {hits:?}");
        assert_eq!(hits[0].0, 2);
        let hits = index.top_k("dog", 10);
        // Both contain "dog" once; the shorter document 3 scores higher.
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [3, 1]);
        // Repeated query terms count per occurrence; order best first, cut at k.
        let hits = index.top_k("the the dog", 2);
        assert_eq!(hits.len(), 2);
        assert!(hits[0].1 >= hits[1].1);
        assert!(index.top_k("zebra", 5).is_empty());
        assert!(index.top_k("cat", 0).is_empty());
    }

    #[test]
    fn ties_break_by_document_index() {
        let index = Bm25Index::build(&["a b", "b a", "c"], Bm25Config::default()).unwrap();
        let hits = index.top_k("a", 1);
        assert_eq!(hits[0].0, 0);
        assert_eq!(
            index.top_k("a", 5).iter().map(|h| h.0).collect::<Vec<_>>(),
            [0, 1]
        );
    }

    #[test]
    fn config_and_corpus_are_checked() {
        let err = Bm25Index::build(&["x"], Bm25Config { k1: -1.0, b: 0.75 })
            .unwrap_err()
            .to_string();
        assert!(err.contains("k1 is -1"), "{err}");
        let err = Bm25Index::build(&["x"], Bm25Config { k1: 1.2, b: 1.5 })
            .unwrap_err()
            .to_string();
        assert!(err.contains("b is 1.5"), "{err}");
        let empty: [&str; 0] = [];
        let err = Bm25Index::build(&empty, Bm25Config::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("corpus is empty"), "{err}");
        // All-empty documents index fine and match nothing.
        let index = Bm25Index::build(&["", "!!"], Bm25Config::default()).unwrap();
        assert!(index.top_k("anything", 3).is_empty());
    }
}
