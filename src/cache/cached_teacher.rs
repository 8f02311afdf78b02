//! A teacher behind the score cache: cached pairs are looked up, only the misses are scored, and
//! their scores are committed before they are handed out.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::key::PairKey;
use super::store::ScoreCache;
use crate::error::{Error, Result};
use crate::teacher::Teacher;

/// Running totals of a [`CachedTeacher`], readable from other threads (the trainer reads them
/// while the producer thread owns the teacher).
#[derive(Debug, Clone, Default)]
pub struct CacheCounters {
    counts: Arc<[AtomicU64; 2]>,
}

impl CacheCounters {
    /// Pairs answered from the cache (including repeats, within one call, of a pair the teacher
    /// scored in that call).
    pub fn hits(&self) -> u64 {
        self.counts[0].load(Ordering::Relaxed)
    }

    /// Pairs the teacher scored (distinct within each call).
    pub fn misses(&self) -> u64 {
        self.counts[1].load(Ordering::Relaxed)
    }

    /// The counts now.
    pub fn snapshot(&self) -> CacheCounts {
        CacheCounts {
            hits: self.hits(),
            misses: self.misses(),
        }
    }

    fn add(&self, hits: u64, misses: u64) {
        self.counts[0].fetch_add(hits, Ordering::Relaxed);
        self.counts[1].fetch_add(misses, Ordering::Relaxed);
    }
}

/// Hit and miss counts at one moment (see [`CacheCounters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheCounts {
    /// Pairs answered from the cache.
    pub hits: u64,
    /// Pairs the teacher scored.
    pub misses: u64,
}

impl CacheCounts {
    /// The metrics.jsonl fields: `cache/hits` and `cache/misses`.
    pub fn metrics(&self) -> [(&'static str, u64); 2] {
        [("cache/hits", self.hits), ("cache/misses", self.misses)]
    }
}

/// What [`attach`] returns: the teacher (cached or not) and, when cached, its counters.
type Attached = (Option<Box<dyn Teacher>>, Option<CacheCounters>);

/// Put `teacher` behind the cache in `dir` when both are given (what a recipe's `[teacher]` and
/// `[cache]` ask for); otherwise return `teacher` as it is. The counters come back with it.
pub fn attach(teacher: Option<Box<dyn Teacher>>, dir: Option<&Path>) -> Result<Attached> {
    match (teacher, dir) {
        (Some(teacher), Some(dir)) => {
            let cached = CachedTeacher::open(teacher, dir)?;
            let counters = cached.counters();
            Ok((Some(Box::new(cached)), Some(counters)))
        }
        (teacher, _) => Ok((teacher, None)),
    }
}

/// Which pairs of a call the teacher must score: a pure decision over the lookup result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misses {
    /// Index (into the call's pairs) of the first occurrence of each distinct missing pair, in
    /// input order: these go to the teacher.
    pub to_score: Vec<usize>,
    /// For each pair of the call: `None` when the cache had it, else the position in `to_score`
    /// of the teacher score it gets.
    pub slot: Vec<Option<usize>>,
}

impl Misses {
    /// Decide from `keys` (one per pair) and the cache's `found` scores (same order).
    pub fn plan(keys: &[PairKey], found: &[Option<f32>]) -> Self {
        let mut first: HashMap<PairKey, usize> = HashMap::new();
        let mut to_score = Vec::new();
        let slot = keys
            .iter()
            .zip(found)
            .enumerate()
            .map(|(index, (key, found))| match found {
                Some(_) => None,
                None => Some(*first.entry(*key).or_insert_with(|| {
                    to_score.push(index);
                    to_score.len() - 1
                })),
            })
            .collect();
        Misses { to_score, slot }
    }

    /// The scores of every pair: cached ones from `found`, the rest from `scored` (the teacher's
    /// scores of `to_score`, in that order).
    pub fn fill(&self, found: &[Option<f32>], scored: &[f32]) -> Vec<f32> {
        self.slot
            .iter()
            .zip(found)
            .map(|(slot, found)| match (slot, found) {
                (Some(position), _) => scored[*position],
                (None, Some(score)) => *score,
                // `plan` gives every pair without a cached score a slot.
                (None, None) => unreachable!("a pair without a cached score has a slot"),
            })
            .collect()
    }
}

/// A [`Teacher`] whose scores go through a [`ScoreCache`].
///
/// [`score`](Teacher::score) looks every pair up under the inner teacher's fingerprint, sends
/// the distinct misses to the inner teacher in one call, and commits their scores (one durable
/// transaction) before returning. The result equals what the inner teacher returns for pairs it
/// scores; cached pairs get the score it returned when they were first scored.
pub struct CachedTeacher {
    teacher: Box<dyn Teacher>,
    cache: ScoreCache,
    fingerprint: String,
    counters: CacheCounters,
}

impl CachedTeacher {
    /// Put `teacher` behind `cache`.
    pub fn new(teacher: Box<dyn Teacher>, cache: ScoreCache) -> Self {
        let fingerprint = teacher.fingerprint();
        Self {
            teacher,
            cache,
            fingerprint,
            counters: CacheCounters::default(),
        }
    }

    /// Put `teacher` behind the cache in `dir` (created when missing).
    pub fn open(teacher: Box<dyn Teacher>, dir: &Path) -> Result<Self> {
        Ok(Self::new(teacher, ScoreCache::open(dir)?))
    }

    /// A handle on the hit and miss counts (shared; stays valid after the teacher moves).
    pub fn counters(&self) -> CacheCounters {
        self.counters.clone()
    }

    /// The cache.
    pub fn cache(&self) -> &ScoreCache {
        &self.cache
    }

    /// Scores of `pairs`, whose keys are `keys`: cached ones looked up, the rest scored by the
    /// inner teacher and committed.
    fn score_keyed(&mut self, pairs: &[(&str, &str)], keys: &[PairKey]) -> Result<Vec<f32>> {
        let found = self.cache.lookup_keys(&self.fingerprint, keys)?;
        let misses = Misses::plan(keys, &found);
        let mut scored = Vec::new();
        if !misses.to_score.is_empty() {
            let wanted: Vec<(&str, &str)> = misses.to_score.iter().map(|&i| pairs[i]).collect();
            scored = self.teacher.score(&wanted)?;
            if scored.len() != wanted.len() {
                return Err(Error::invalid(format!(
                    "teacher {} returned {} scores for {} pairs",
                    self.teacher.describe(),
                    scored.len(),
                    wanted.len()
                )));
            }
            // A non-finite score is no label: it is handed back (the caller reports it, or skips
            // the batch) but never stored, so it is not served again as if it were one.
            let entries: Vec<(&str, &str, f32)> = wanted
                .iter()
                .zip(&scored)
                .filter(|(_, score)| score.is_finite())
                .map(|(&(query, passage), &score)| (query, passage, score))
                .collect();
            self.cache.insert(&self.fingerprint, &entries)?;
        }
        let misses_count = misses.to_score.len() as u64;
        self.counters
            .add(pairs.len() as u64 - misses_count, misses_count);
        Ok(misses.fill(&found, &scored))
    }
}

impl Teacher for CachedTeacher {
    fn score(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        let keys = PairKey::of_pairs(pairs);
        self.score_keyed(pairs, &keys)
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn describe(&self) -> String {
        self.teacher.describe()
    }
}
