//! Keys of (query, passage) pairs: a stable 128-bit hash, and the shard partition built on it.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::fingerprint::stable_hash;

/// The cache key of a (query, passage) pair: XXH3-128 of `len(query) as u64 little-endian ‖
/// query ‖ passage` (UTF-8 bytes). The length prefix keeps ("ab", "c") and ("a", "bc") apart.
///
/// XXH3 is a published, frozen algorithm, so a key computed on one machine (or by Python's
/// `xxhash.xxh3_128`) is the same on every other: caches built on different machines merge, and
/// `--shard I/N` splits the pairs the same way everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairKey(pub u128);

impl PairKey {
    /// The key of `(query, passage)`.
    pub fn of(query: &str, passage: &str) -> Self {
        let mut bytes = Vec::with_capacity(8 + query.len() + passage.len());
        Self::of_with(&mut bytes, query, passage)
    }

    /// The key of `(query, passage)`, reusing `buffer` for the hashed bytes (no allocation once
    /// the buffer is large enough; for hot loops).
    pub fn of_with(buffer: &mut Vec<u8>, query: &str, passage: &str) -> Self {
        buffer.clear();
        buffer.extend_from_slice(&(query.len() as u64).to_le_bytes());
        buffer.extend_from_slice(query.as_bytes());
        buffer.extend_from_slice(passage.as_bytes());
        PairKey(stable_hash(buffer))
    }

    /// The keys of `pairs`, in order.
    pub fn of_pairs<A: AsRef<str>, B: AsRef<str>>(pairs: &[(A, B)]) -> Vec<Self> {
        let mut buffer = Vec::new();
        pairs
            .iter()
            .map(|(query, passage)| Self::of_with(&mut buffer, query.as_ref(), passage.as_ref()))
            .collect()
    }
}

/// One part of a deterministic N-way partition of the pairs: `--shard I/N` (0-based `I`).
///
/// A pair belongs to shard `key mod N`, where `key` is its [`PairKey`], so N machines that run
/// `crossdistill score --shard 0/N`, ..., `--shard N-1/N` score disjoint sets whose union is every
/// pair, whatever order the data is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: u64,
    /// Number of shards, at least 1.
    pub count: u64,
}

impl Shard {
    /// The whole set (`0/1`).
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`; errors when `count` is 0 or `index >= count`.
    pub fn new(index: u64, count: u64) -> Result<Self> {
        if count == 0 || index >= count {
            let hint = if count == 0 {
                "N counts the shards, at least 1: e.g. --shard 0/3, --shard 1/3, --shard 2/3"
                    .to_string()
            } else {
                format!(
                    "shards are numbered from 0: --shard 0/{count} ... --shard {}/{count}",
                    count - 1
                )
            };
            return Err(Error::invalid(format!(
                "shard {index}/{count}: expected I/N with N >= 1 and 0 <= I < N"
            ))
            .with_hint(hint));
        }
        Ok(Shard { index, count })
    }

    /// True when the pair with `key` belongs to this shard.
    pub fn contains(&self, key: PairKey) -> bool {
        (key.0 % self.count as u128) as u64 == self.index
    }
}

impl FromStr for Shard {
    type Err = Error;

    /// `I/N`, e.g. `0/3`.
    fn from_str(text: &str) -> Result<Self> {
        let parsed = text
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) => Shard::new(index, count),
            None => Err(Error::invalid(format!(
                "shard `{text}`: expected I/N with whole numbers, e.g. 0/3"
            ))
            .with_hint("shards are numbered from 0: --shard 0/3, --shard 1/3, --shard 2/3")),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}
