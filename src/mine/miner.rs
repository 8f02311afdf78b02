//! [`mine_hard_negatives`]: the whole run, from pairs to a table and a report
//! (sentence-transformers `util/hard_negatives.py`, `mine_hard_negatives`).

use std::time::Instant;

use candle_core::Tensor;

use super::embedding_cache::{cache_path, model_fingerprint, read_npy, write_npy};
use super::options::{MineOptions, MinePlan, OutputFormat};
use super::output::{build, Shape};
use super::pairs::{Grouped, PairDataset};
use super::search::{exact_top_k, Candidates};
use super::select::{apply_filters, mask_positives, pick_negatives, ScoreFilters};
use super::stats::{MineReport, ScoreSummary};
use super::table::Table;
use crate::error::{Error, Result};
use crate::fsutil::create_dir_all;
use crate::model::bi_encoder::{BiEncoder, Embeddings, EncodeOptions};
use crate::teacher::Teacher;

/// Pairs sent to the teacher per call when rescoring (it batches and length-sorts inside).
const RESCORE_CHUNK_PAIRS: usize = 4096;

/// Progress of a mining run, shown by the caller (the CLI draws bars). Stages run one after
/// another: `start`, any number of `advance`, `finish`. Every method defaults to nothing.
pub trait MineProgress {
    /// A stage (`"embedding corpus"`, `"embedding queries"`, `"searching"`, `"rescoring"`)
    /// begins with `total` units of work (texts, queries or pairs).
    fn start(&mut self, _stage: &str, _total: usize) {}
    /// `done` more units of the current stage finished.
    fn advance(&mut self, _done: usize) {}
    /// The current stage finished.
    fn finish(&mut self) {}
}

/// Progress that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl MineProgress for Silent {}

/// The outcome of mining: the dataset to write and the statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Mined {
    /// The mined rows, with sentence-transformers' column names for the format.
    pub table: Table,
    /// The statistics and counts sentence-transformers prints.
    pub report: MineReport,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Embed `texts` (normalised), or load them from the cache folder when a file for this model,
/// prompt and texts exists; save fresh embeddings there.
#[allow(clippy::too_many_arguments)]
fn embed_cached(
    embedder: &BiEncoder,
    texts: &[String],
    kind: &str,
    prompt: Option<&str>,
    options: &MineOptions,
    fingerprint: Option<&str>,
    progress: &mut dyn MineProgress,
    notes: &mut Vec<String>,
    stage_seconds: &mut Vec<(String, f64)>,
) -> Result<Embeddings> {
    let path = match (&options.cache_folder, fingerprint) {
        (Some(folder), Some(fingerprint)) => {
            Some(cache_path(folder, kind, fingerprint, prompt, texts))
        }
        _ => None,
    };
    if let Some(path) = path.as_ref().filter(|p| p.is_file()) {
        match read_npy(path) {
            Ok(embeddings)
                if embeddings.len() == texts.len() && embeddings.dim() == embedder.dimension() =>
            {
                notes.push(format!(
                    "loaded {} {kind} embeddings from {}",
                    embeddings.len(),
                    path.display()
                ));
                return Ok(embeddings);
            }
            Ok(embeddings) => notes.push(format!(
                "ignored {}: it holds {} embeddings of dimension {}, expected {} of dimension {}",
                path.display(),
                embeddings.len(),
                embeddings.dim(),
                texts.len(),
                embedder.dimension()
            )),
            Err(error) => notes.push(format!("ignored an unreadable cache file: {error}")),
        }
    }
    let stage = if kind == "query" {
        "embedding queries".to_string()
    } else {
        format!("embedding {kind}")
    };
    let started = Instant::now();
    progress.start(&stage, texts.len());
    let embeddings = embedder.encode(
        texts,
        &EncodeOptions {
            batch_size: options.batch_size,
            prompt,
            normalize: true,
        },
        &mut |n| progress.advance(n),
    )?;
    progress.finish();
    stage_seconds.push((stage, started.elapsed().as_secs_f64()));
    if let Some(path) = path {
        if let Some(folder) = path.parent() {
            create_dir_all(folder)?;
        }
        write_npy(&path, &embeddings)?;
        notes.push(format!("saved {kind} embeddings to {}", path.display()));
    }
    Ok(embeddings)
}

/// Replace every candidate's score and every positive score by the teacher's score of
/// (query, document), as `mine_hard_negatives` rescores with its `cross_encoder`
/// (`util/hard_negatives.py`). Padding slots stay −∞.
fn rescore(
    teacher: &mut dyn Teacher,
    grouped: &Grouped,
    candidates: &mut Candidates,
    progress: &mut dyn MineProgress,
) -> Result<Vec<f32>> {
    let valid: usize = (0..candidates.num_queries())
        .map(|q| candidates.indices(q).iter().flatten().count())
        .sum();
    progress.start("rescoring", valid + grouped.num_pairs());
    let mut call = |pairs: &[(&str, &str)]| -> Result<Vec<f32>> {
        let scores = teacher.score(pairs)?;
        if scores.len() != pairs.len() {
            return Err(Error::invalid(format!(
                "teacher {} returned {} scores for {} pairs",
                teacher.describe(),
                scores.len(),
                pairs.len()
            )));
        }
        Ok(scores)
    };
    let mut q = 0;
    while q < candidates.num_queries() {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        let mut slots: Vec<(usize, usize)> = Vec::new();
        while q < candidates.num_queries() && pairs.len() < RESCORE_CHUNK_PAIRS {
            for (slot, index) in candidates.indices(q).iter().enumerate() {
                if let Some(index) = index {
                    pairs.push((grouped.queries[q].as_str(), grouped.corpus[*index].as_str()));
                    slots.push((q, slot));
                }
            }
            q += 1;
        }
        let scores = call(&pairs)?;
        for ((query, slot), score) in slots.into_iter().zip(scores) {
            candidates.scores_mut(query)[slot] = score;
        }
        progress.advance(pairs.len());
    }
    let positive_pairs: Vec<(&str, &str)> = grouped
        .positives
        .iter()
        .enumerate()
        .flat_map(|(q, positives)| {
            positives
                .iter()
                .map(move |&p| (grouped.queries[q].as_str(), grouped.corpus[p].as_str()))
        })
        .collect();
    let mut positive_scores = Vec::with_capacity(positive_pairs.len());
    for chunk in positive_pairs.chunks(RESCORE_CHUNK_PAIRS) {
        positive_scores.extend(call(chunk)?);
        progress.advance(chunk.len());
    }
    progress.finish();
    Ok(positive_scores)
}

/// Mine hard negatives for `dataset`, as sentence-transformers' `mine_hard_negatives` (v6 with
/// its fixes; `util/hard_negatives.py`):
///
/// 1. repeated anchors are one query with several positives; the corpus is
///    `dedup(corpus + positives)` (the positives alone when `corpus` is `None`);
/// 2. queries and corpus are embedded (normalised, with the options' prompts; cached when
///    `cache_folder` is set) and each query's `range_max + max_positives` best documents are
///    found by exact search, one chunk of queries at a time;
/// 3. with a `teacher` and a margin or `max_score`, every candidate and positive is rescored by
///    the teacher (its activation applies: margins are in its units);
/// 4. positives are masked (unless `include_positives`), the filters run against each query's
///    minimum positive score, the `[range_min, range_max)` window is cut and `num_negatives`
///    taken (top or seeded random);
/// 5. the rows are laid out in the output format, and the statistics are computed.
///
/// Errors: invalid options (with the values), embedding or teacher failures, cache I/O.
pub fn mine_hard_negatives(
    dataset: &PairDataset,
    corpus: Option<&[String]>,
    embedder: &BiEncoder,
    teacher: Option<&mut dyn Teacher>,
    options: &MineOptions,
    progress: &mut dyn MineProgress,
) -> Result<Mined> {
    let grouped = Grouped::new(dataset, corpus);
    let plan = options.plan(grouped.max_positives)?;
    let mut notes = plan.notes.clone();
    let num_negatives = negatives_per_query(options, &plan, grouped.corpus.len(), &mut notes)?;
    let mut stage_seconds = Vec::new();
    if plan.range_max_derived {
        notes.push(format!(
            "range_max set to {} based on the provided parameters",
            plan.range_max
        ));
    }
    let fingerprint = match &options.cache_folder {
        Some(_) => Some(model_fingerprint(embedder)?),
        None => None,
    };
    let corpus_embeddings = embed_cached(
        embedder,
        &grouped.corpus,
        "corpus",
        options.corpus_prompt.as_deref(),
        options,
        fingerprint.as_deref(),
        progress,
        &mut notes,
        &mut stage_seconds,
    )?;
    let query_embeddings = embed_cached(
        embedder,
        &grouped.queries,
        "query",
        options.query_prompt.as_deref(),
        options,
        fingerprint.as_deref(),
        progress,
        &mut notes,
        &mut stage_seconds,
    )?;

    let mut positive_scores: Vec<f32> = grouped
        .positives
        .iter()
        .enumerate()
        .flat_map(|(q, positives)| {
            let query = query_embeddings.row(q);
            positives
                .iter()
                .map(|&p| dot(query, corpus_embeddings.row(p)))
                .collect::<Vec<_>>()
        })
        .collect();

    let corpus_len = corpus_embeddings.len();
    let dim = corpus_embeddings.dim();
    let corpus_tensor = Tensor::from_vec(
        corpus_embeddings.into_values(),
        (corpus_len, dim),
        embedder.model().device(),
    )?;
    let started = Instant::now();
    progress.start("searching", grouped.queries.len());
    let mut candidates = exact_top_k(
        &query_embeddings,
        &corpus_tensor,
        // No query has more candidates than the corpus has documents: the slots past it
        // would only be padding, so a huge range_max costs nothing.
        plan.candidates_per_query.min(corpus_len).max(1),
        options.query_chunk(corpus_len),
        &mut |n| progress.advance(n),
    )?;
    progress.finish();
    stage_seconds.push(("searching".into(), started.elapsed().as_secs_f64()));
    drop(corpus_tensor);
    drop(query_embeddings);

    let rescored = match teacher {
        Some(teacher) if plan.wants_rescoring => {
            let started = Instant::now();
            positive_scores = rescore(teacher, &grouped, &mut candidates, progress)?;
            stage_seconds.push(("rescoring".into(), started.elapsed().as_secs_f64()));
            true
        }
        Some(teacher) => {
            notes.push(format!(
                "the teacher {} was not used: it rescores only when absolute_margin, relative_margin or max_score is set",
                teacher.describe()
            ));
            false
        }
        None => false,
    };

    let started = Instant::now();
    if !options.include_positives {
        mask_positives(&mut candidates, &grouped.positives);
    }
    let mut reference = Vec::with_capacity(grouped.queries.len());
    let mut pair = 0;
    for positives in &grouped.positives {
        let scores = &positive_scores[pair..pair + positives.len()];
        reference.push(scores.iter().copied().fold(f32::INFINITY, f32::min));
        pair += positives.len();
    }
    let filters = ScoreFilters {
        absolute_margin: options.absolute_margin,
        relative_margin: options.relative_margin,
        max_score: options.max_score,
        min_score: options.min_score,
    };
    let skipped = apply_filters(&mut candidates, &reference, &filters);
    let negatives = pick_negatives(
        &candidates,
        options.range_min,
        plan.range_max,
        num_negatives,
        options.sampling_strategy,
        options.seed,
    );
    let built = build(
        &grouped,
        &positive_scores,
        &negatives,
        &Shape {
            format: plan.output_format,
            output_scores: options.output_scores,
            num_negatives,
            anchor_column: &dataset.anchor_column,
            positive_column: &dataset.positive_column,
        },
    )?;

    stage_seconds.push(("selecting".into(), started.elapsed().as_secs_f64()));
    let mut adjustable = vec!["range_max"];
    if options.range_min > 0 {
        adjustable.push("range_min");
    }
    for (name, set) in [
        ("absolute_margin", options.absolute_margin.is_some()),
        ("relative_margin", options.relative_margin.is_some()),
        ("max_score", options.max_score.is_some()),
    ] {
        if set {
            adjustable.push(name);
        }
    }
    let report = MineReport {
        num_rows: dataset.len(),
        num_queries: grouped.queries.len(),
        num_pairs: grouped.num_pairs(),
        corpus_size: grouped.corpus.len(),
        range_max: plan.range_max,
        rescored,
        positive: ScoreSummary::of(&positive_scores),
        negative: ScoreSummary::of(&built.negative_scores),
        difference: ScoreSummary::of(&built.difference_scores),
        skipped,
        maximum_possible_samples: built.maximum_possible_samples,
        rows_written: built.table.num_rows(),
        adjustable,
        notes,
        stage_seconds,
    };
    Ok(Mined {
        table: built.table,
        report,
    })
}

/// The negatives to mine per query: `num_negatives`, or the corpus size when that is smaller
/// (no query can have more), with a note. An n-tuple row needs all of them, so there a
/// `num_negatives` above the corpus size is an error (every row would be dropped).
fn negatives_per_query(
    options: &MineOptions,
    plan: &MinePlan,
    corpus_len: usize,
    notes: &mut Vec<String>,
) -> Result<usize> {
    let wanted = options.num_negatives;
    if wanted <= corpus_len {
        return Ok(wanted);
    }
    if plan.output_format == OutputFormat::NTuple {
        return Err(Error::invalid(format!(
            "cannot mine {wanted} negatives per query from a corpus of {corpus_len} documents: every n-tuple row needs all {wanted}"
        ))
        .with_hint(format!(
            "use num_negatives below {corpus_len}, or give a larger corpus"
        )));
    }
    notes.push(format!(
        "num_negatives={wanted} is more than the corpus has documents; mining at most {corpus_len} per query"
    ));
    Ok(corpus_len)
}
