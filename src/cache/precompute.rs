//! Precomputing teacher scores into the cache (`crossdistill score`): resumable, shardable.

use super::cached_teacher::CachedTeacher;
use super::key::{PairKey, Shard};
use super::store::ScoreCache;
use crate::error::{Error, Result};
use crate::teacher::Teacher;

/// Pairs looked up per cache read while counting.
const LOOKUP_CHUNK: usize = 4096;

/// What a precompute run did (`crossdistill score --json` prints it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PrecomputeSummary {
    /// Pairs of the data in this shard (a pair that occurs twice counts twice).
    pub pairs: u64,
    /// Of those, pairs the teacher did not have to score: cached before, or repeats of a pair
    /// scored earlier in the run.
    pub cache_hits: u64,
    /// Pairs the teacher scored in this run (`pairs - cache_hits`).
    pub teacher_scored: u64,
}

/// What [`precompute`] tells whoever watches it (the CLI draws a progress bar).
pub trait PrecomputeProgress {
    /// One chunk of `pairs` pairs is done and committed; the teacher scored `teacher_scored` of
    /// them.
    fn chunk_done(&mut self, _pairs: usize, _teacher_scored: usize) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl PrecomputeProgress for NoProgress {}

/// Count the pairs of `shard` in `pairs` and how many of them `cache` lacks for `teacher`
/// (a missing pair that occurs twice counts twice). Returns `(pairs, missing)`.
pub fn count_missing(
    cache: &ScoreCache,
    teacher: &str,
    pairs: impl Iterator<Item = Result<(String, String)>>,
    shard: Shard,
) -> Result<(u64, u64)> {
    let mut total = 0u64;
    let mut missing = 0u64;
    let mut keys = Vec::with_capacity(LOOKUP_CHUNK);
    let mut buffer = Vec::new();
    let mut count = |keys: &mut Vec<PairKey>| -> Result<()> {
        let found = cache.lookup_keys(teacher, keys)?;
        total += keys.len() as u64;
        missing += found.iter().filter(|f| f.is_none()).count() as u64;
        keys.clear();
        Ok(())
    };
    for pair in pairs {
        let (query, passage) = pair?;
        let key = PairKey::of_with(&mut buffer, &query, &passage);
        if shard.contains(key) {
            keys.push(key);
            if keys.len() == LOOKUP_CHUNK {
                count(&mut keys)?;
            }
        }
    }
    count(&mut keys)?;
    Ok((total, missing))
}

/// A teacher score that is NaN or infinite is no label: name the pairs that got one. The cache
/// keeps none of them (see [`CachedTeacher`]), so a run after the teacher is fixed scores them.
fn non_finite_error(pairs: &[(&str, &str)], scores: &[f32]) -> Result<()> {
    let bad: Vec<String> = pairs
        .iter()
        .zip(scores)
        .filter(|(_, score)| !score.is_finite())
        .map(|((query, passage), score)| format!("{score} for ({query:?}, {passage:?})"))
        .collect();
    let Some(first) = bad.first() else {
        return Ok(());
    };
    let more = match bad.len() {
        1 => String::new(),
        n => format!(
            " and {} more of its {} pairs in this chunk",
            n - 1,
            pairs.len()
        ),
    };
    Err(Error::invalid(format!(
        "the teacher scored {first}{more}; those scores were not stored"
    ))
    .with_hint("check the teacher model: its weights or its export give non-finite scores (the finite scores of the chunk are stored, so a rerun scores only what is missing)"))
}

/// Score every pair of `shard` in `pairs` that the cache lacks, `chunk_pairs` pairs of the
/// stream at a time: each chunk is looked up, its distinct misses go to the teacher in one call
/// and their scores are committed before the next chunk starts. A killed run loses at most the
/// chunk in flight; running it again scores only what is missing, in the same chunks, so the
/// cache ends up exactly as after an uninterrupted run.
pub fn precompute(
    teacher: &mut CachedTeacher,
    pairs: impl Iterator<Item = Result<(String, String)>>,
    shard: Shard,
    chunk_pairs: usize,
    progress: &mut dyn PrecomputeProgress,
) -> Result<PrecomputeSummary> {
    let chunk_pairs = chunk_pairs.max(1);
    let counters = teacher.counters();
    let (hits_before, misses_before) = (counters.hits(), counters.misses());
    // Grows as pairs arrive: `chunk_pairs` comes from the recipe and is not an allocation size.
    let mut chunk: Vec<(String, String)> = Vec::with_capacity(chunk_pairs.min(1 << 12));
    let mut buffer = Vec::new();
    let mut run_chunk = |chunk: &mut Vec<(String, String)>| -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let scored_before = counters.misses();
        let refs: Vec<(&str, &str)> = chunk
            .iter()
            .map(|(q, p)| (q.as_str(), p.as_str()))
            .collect();
        let scores = teacher.score(&refs)?;
        non_finite_error(&refs, &scores)?;
        progress.chunk_done(chunk.len(), (counters.misses() - scored_before) as usize);
        chunk.clear();
        Ok(())
    };
    for pair in pairs {
        let (query, passage) = pair?;
        if shard.contains(PairKey::of_with(&mut buffer, &query, &passage)) {
            chunk.push((query, passage));
            if chunk.len() == chunk_pairs {
                run_chunk(&mut chunk)?;
            }
        }
    }
    run_chunk(&mut chunk)?;
    let cache_hits = counters.hits() - hits_before;
    let teacher_scored = counters.misses() - misses_before;
    Ok(PrecomputeSummary {
        pairs: cache_hits + teacher_scored,
        cache_hits,
        teacher_scored,
    })
}
