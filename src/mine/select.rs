//! From candidates to negatives (`mine_hard_negatives` in sentence-transformers
//! `util/hard_negatives.py`, from the positive mask to the sampling): mask the positives, drop
//! candidates by margin and score, cut the `[range_min, range_max)` window, then take the top or
//! a seeded random sample. Pure functions over [`Candidates`]; a dropped candidate's score
//! becomes −∞.

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::options::SamplingStrategy;
use super::search::Candidates;

/// The score filters of a mining run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScoreFilters {
    /// Drop `s + absolute_margin > p`.
    pub absolute_margin: Option<f32>,
    /// Drop `s > p − |p|·relative_margin`.
    pub relative_margin: Option<f32>,
    /// Drop `s > max_score`.
    pub max_score: Option<f32>,
    /// Drop `s < min_score`.
    pub min_score: Option<f32>,
}

/// How many candidates one filter dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// The parameter: `absolute_margin`, `relative_margin`, `max_score` or `min_score`.
    pub filter: &'static str,
    /// Its value.
    pub value: f32,
    /// Candidates it dropped (only ones still valid when it ran).
    pub count: usize,
    /// `count` over the candidates still valid when it ran.
    pub ratio: f64,
}

/// Set every candidate that is a positive of its query to −∞ (step 9).
pub fn mask_positives(candidates: &mut Candidates, positives: &[Vec<usize>]) {
    for (q, query_positives) in positives.iter().enumerate() {
        let indices: Vec<Option<usize>> = candidates.indices(q).to_vec();
        let scores = candidates.scores_mut(q);
        for (slot, index) in indices.iter().enumerate() {
            if matches!(index, Some(i) if query_positives.contains(i)) {
                scores[slot] = f32::NEG_INFINITY;
            }
        }
    }
}

/// Apply the filters in sentence-transformers' order (absolute margin, relative margin,
/// max_score, min_score) against `reference[q]`, the **minimum** positive score of query `q`
/// (step 10). Returns what each filter that dropped something dropped.
///
/// Counts include only candidates that were still valid; sentence-transformers also counts
/// already-dropped ones under `min_score` (−∞ < min_score).
pub fn apply_filters(
    candidates: &mut Candidates,
    reference: &[f32],
    filters: &ScoreFilters,
) -> Vec<Skipped> {
    type Rule = Box<dyn Fn(f32, f32) -> bool>;
    let mut rules: Vec<(&'static str, f32, Rule)> = Vec::new();
    if let Some(margin) = filters.absolute_margin {
        rules.push((
            "absolute_margin",
            margin,
            Box::new(move |s, p| s + margin > p),
        ));
    }
    if let Some(margin) = filters.relative_margin {
        rules.push((
            "relative_margin",
            margin,
            Box::new(move |s, p| s > p - p.abs() * margin),
        ));
    }
    if let Some(max) = filters.max_score {
        rules.push(("max_score", max, Box::new(move |s, _| s > max)));
    }
    if let Some(min) = filters.min_score {
        rules.push(("min_score", min, Box::new(move |s, _| s < min)));
    }
    let mut remaining = candidates
        .all_scores()
        .iter()
        .filter(|s| s.is_finite())
        .count();
    let mut skipped = Vec::new();
    for (filter, value, rule) in rules {
        let mut count = 0;
        for (q, &positive) in reference.iter().enumerate() {
            for score in candidates.scores_mut(q) {
                if score.is_finite() && rule(*score, positive) {
                    *score = f32::NEG_INFINITY;
                    count += 1;
                }
            }
        }
        if count > 0 {
            skipped.push(Skipped {
                filter,
                value,
                count,
                ratio: count as f64 / remaining.max(1) as f64,
            });
        }
        remaining -= count;
    }
    skipped
}

/// One negative slot: a corpus index and its score, or `None` when no valid candidate was left.
pub type Slot = Option<(usize, f32)>;

/// The negatives of every query: sort its candidates (best first, ties by slot), keep
/// `[range_min, range_max)`, then take the first `num_negatives` (`Top`) or a seeded sample of
/// `num_negatives` among the valid ones, re-sorted best first (`Random`; steps 11 and 12). Each
/// query gets exactly `num_negatives` slots; missing ones are `None` and sort last.
pub fn pick_negatives(
    candidates: &Candidates,
    range_min: usize,
    range_max: usize,
    num_negatives: usize,
    strategy: SamplingStrategy,
    seed: u64,
) -> Vec<Vec<Slot>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..candidates.num_queries())
        .map(|q| {
            let scores = candidates.scores(q);
            let indices = candidates.indices(q);
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            // The search keeps at most as many slots per query as the corpus has documents;
            // the window is `range_max - range_min` slots long however many of them are filled
            // (sentence-transformers pads the rest with -inf), which is what random sampling
            // draws from.
            let window_len = range_max.saturating_sub(range_min);
            let window: Vec<Slot> = order
                .into_iter()
                .take(range_max)
                .skip(range_min)
                .map(|slot| match indices[slot] {
                    Some(index) if scores[slot].is_finite() => Some((index, scores[slot])),
                    _ => None,
                })
                .collect();
            let mut picked: Vec<Slot> = match strategy {
                SamplingStrategy::Top => window.iter().take(num_negatives).copied().collect(),
                SamplingStrategy::Random => {
                    // sentence-transformers samples num_negatives of range(max(valid, n)):
                    // all valid ones when there are too few, else a uniform subset of them.
                    let valid = window.iter().filter(|slot| slot.is_some()).count();
                    let options = valid.max(num_negatives).min(window_len);
                    let mut drawn: Vec<Slot> =
                        sample(&mut rng, options, num_negatives.min(options))
                            .into_iter()
                            .map(|position| window.get(position).copied().flatten())
                            .collect();
                    drawn.sort_by(|a, b| match (a, b) {
                        (Some(a), Some(b)) => b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)),
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        (None, None) => std::cmp::Ordering::Equal,
                    });
                    drawn
                }
            };
            picked.resize(num_negatives, None);
            picked
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two queries with 6 hand-made candidates each (corpus indices 10.. and 20..).
    fn candidates() -> Candidates {
        let indices = (10..16).chain(20..26).map(Some).collect();
        let scores = vec![
            0.9, 0.8, 0.7, 0.6, 0.5, 0.4, //
            -0.1, -0.2, -0.3, -0.4, -0.5, -0.6,
        ];
        Candidates::new(6, indices, scores).unwrap()
    }

    fn finite(candidates: &Candidates, q: usize) -> Vec<f32> {
        candidates
            .scores(q)
            .iter()
            .copied()
            .filter(|s| s.is_finite())
            .collect()
    }

    #[test]
    fn positives_are_masked_per_query() {
        let mut found = candidates();
        mask_positives(&mut found, &[vec![11, 99], vec![20]]);
        assert_eq!(found.scores(0)[1], f32::NEG_INFINITY);
        assert_eq!(found.scores(1)[0], f32::NEG_INFINITY);
        assert_eq!(finite(&found, 0).len(), 5);
    }

    #[test]
    fn absolute_margin_keeps_negatives_at_least_margin_below_the_positive() {
        // Spec: drop if s + margin > p. p = 0.75: with margin 0.1 only s ≤ 0.65 survive.
        let mut found = candidates();
        let filters = ScoreFilters {
            absolute_margin: Some(0.1),
            ..ScoreFilters::default()
        };
        let skipped = apply_filters(&mut found, &[0.75, 1.0], &filters);
        assert_eq!(finite(&found, 0), vec![0.6, 0.5, 0.4]);
        assert_eq!(finite(&found, 1).len(), 6);
        assert_eq!(skipped.len(), 1);
        assert_eq!(
            (skipped[0].filter, skipped[0].count),
            ("absolute_margin", 3)
        );
        assert!((skipped[0].ratio - 3.0 / 12.0).abs() < 1e-12);
        // absolute_margin = 0: a negative may tie the positive but not beat it.
        let mut found = candidates();
        let zero = ScoreFilters {
            absolute_margin: Some(0.0),
            ..ScoreFilters::default()
        };
        apply_filters(&mut found, &[0.8, 1.0], &zero);
        assert_eq!(finite(&found, 0), vec![0.8, 0.7, 0.6, 0.5, 0.4]);
    }

    #[test]
    fn relative_margin_is_sign_safe() {
        // p = 0.8, margin 0.25: threshold 0.8 - 0.2 = 0.6 (A's p·(1-m) agrees for p > 0).
        let mut found = candidates();
        let filters = ScoreFilters {
            relative_margin: Some(0.25),
            ..ScoreFilters::default()
        };
        // p = -0.2 for query 1: B's threshold -0.2 - 0.05 = -0.25 (A's p·(1-m) = -0.15 would
        // keep -0.2, a negative scoring as high as the positive: issue #3819).
        apply_filters(&mut found, &[0.8, -0.2], &filters);
        assert_eq!(finite(&found, 0), vec![0.6, 0.5, 0.4]);
        assert_eq!(finite(&found, 1), vec![-0.3, -0.4, -0.5, -0.6]);
    }

    #[test]
    fn max_and_min_score_bound_the_candidates_and_count_only_valid_ones() {
        let mut found = candidates();
        mask_positives(&mut found, &[vec![15], vec![]]); // 0.4 is a positive
        let filters = ScoreFilters {
            max_score: Some(0.75),
            min_score: Some(0.45),
            ..ScoreFilters::default()
        };
        let skipped = apply_filters(&mut found, &[1.0, 1.0], &filters);
        assert_eq!(finite(&found, 0), vec![0.7, 0.6, 0.5]);
        assert!(finite(&found, 1).is_empty());
        let counts: Vec<(&str, usize)> = skipped.iter().map(|s| (s.filter, s.count)).collect();
        // max_score drops 0.9, 0.8; min_score drops query 1's six (the masked 0.4 is not counted).
        assert_eq!(counts, vec![("max_score", 2), ("min_score", 6)]);
        assert!((skipped[1].ratio - 6.0 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn window_skips_the_best_survivors_and_missing_slots_are_none() {
        let mut found = candidates();
        mask_positives(&mut found, &[vec![10, 13, 14], vec![]]);
        let picked = pick_negatives(&found, 1, 4, 3, SamplingStrategy::Top, 0);
        // Query 0: survivors 0.8 0.7 0.4 (then three −∞); range_min=1 skips 0.8; the window
        // [1, 4) holds 0.7, 0.4 and one −∞ slot.
        assert_eq!(picked[0], vec![Some((12, 0.7)), Some((15, 0.4)), None]);
        assert_eq!(
            picked[1],
            vec![Some((21, -0.2)), Some((22, -0.3)), Some((23, -0.4))]
        );
    }

    #[test]
    fn random_sampling_is_seeded_sorted_and_stays_in_the_window() {
        let found = candidates();
        let first = pick_negatives(&found, 0, 6, 3, SamplingStrategy::Random, 7);
        let again = pick_negatives(&found, 0, 6, 3, SamplingStrategy::Random, 7);
        assert_eq!(first, again);
        let draws: Vec<Vec<Vec<Slot>>> = (0..20)
            .map(|seed| pick_negatives(&found, 0, 6, 3, SamplingStrategy::Random, seed))
            .collect();
        assert!(draws.iter().any(|draw| draw != &first), "seeds must matter");
        for draw in &draws {
            for slots in draw {
                let scores: Vec<f32> = slots.iter().map(|slot| slot.unwrap().1).collect();
                assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
            }
        }
        // Every candidate gets drawn by some seed: the sample covers the whole window.
        let seen: std::collections::BTreeSet<usize> = draws
            .iter()
            .flat_map(|draw| draw[0].iter().map(|slot| slot.unwrap().0))
            .collect();
        assert_eq!(seen, (10..16).collect());
        // Too few valid candidates: all of them, then None.
        let mut sparse = candidates();
        mask_positives(&mut sparse, &[vec![10, 11, 12, 13], vec![]]);
        let picked = pick_negatives(&sparse, 0, 6, 3, SamplingStrategy::Random, 3);
        assert_eq!(picked[0], vec![Some((14, 0.5)), Some((15, 0.4)), None]);
    }
}
