//! `crossdistill score RECIPE [--set KEY=VALUE ...] [--shard I/N] [--json]`: precompute the
//! teacher scores a recipe's training needs into its `[cache]`.

use std::path::PathBuf;

use clap::Args;
use indicatif::ProgressBar;

use super::progress;
use super::shard_env::shard_from_env;
use super::Outcome;
use crate::cache::{count_missing, precompute, CachedTeacher, PrecomputeProgress, Shard};
use crate::data::DataSource;
use crate::error::{Error, Result};
use crate::model::parse_device;
use crate::pipeline::{row_teacher_pairs, ColumnRoles};
use crate::recipe::Recipe;
use crate::teacher::Teacher;
use crate::train::plan::{build_teacher, training_sources};

/// Teacher batches per cache commit: a killed run redoes at most this many batches.
const BATCHES_PER_COMMIT: usize = 16;

/// Arguments of `score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The recipe (TOML); needs a [teacher] and a [cache].
    pub recipe: PathBuf,
    /// Override a recipe key, e.g. --set cache.dir=DIR.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Score only shard I of N (0-based; a pair's shard is its key mod N). Run 0/N ... N-1/N on
    /// N machines, each into its own cache dir, and join them with `crossdistill cache merge`.
    /// Default: the task's index in a Slurm job array (SLURM_ARRAY_TASK_ID/_COUNT) or a
    /// Kubernetes Indexed Job (JOB_COMPLETION_INDEX with CROSSDISTILL_SHARD_COUNT), else 0/1.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Print one JSON line: {"pairs":N,"cache_hits":H,"teacher_scored":T}.
    #[arg(long)]
    pub json: bool,
}

struct Bar(ProgressBar);

impl PrecomputeProgress for Bar {
    fn chunk_done(&mut self, _pairs: usize, teacher_scored: usize) {
        self.0.inc(teacher_scored as u64);
    }
}

/// Data sources with the rows to take from each.
type Sources = Vec<(DataSource, Option<usize>)>;

/// The data a recipe's training reads pairs from: the training rows (up to `max_rows`) and the
/// held-out rows the trainer scores for student–teacher agreement, with the parallel-data
/// column roles.
fn sources(recipe: &Recipe) -> Result<(Sources, Option<ColumnRoles>)> {
    let (train, eval, columns) = training_sources(recipe)?;
    let mut sources = vec![(train, recipe.data.train.max_rows)];
    let eval_rows = recipe.data.eval.as_ref().and_then(|eval| eval.max_rows);
    sources.extend(eval.map(|eval| (eval, eval_rows)));
    Ok((sources, columns))
}

/// Every distinct pair per row of `sources` the teacher scores, in file order: the pairs the
/// producer and the held-out scoring ask the teacher for.
fn pair_stream(
    sources: &[(DataSource, Option<usize>)],
    columns: Option<ColumnRoles>,
) -> Result<impl Iterator<Item = Result<(String, String)>>> {
    let mut readers = Vec::new();
    for (source, max_rows) in sources {
        readers.push(source.open()?.take(max_rows.unwrap_or(usize::MAX)));
    }
    Ok(readers
        .into_iter()
        .flatten()
        .flat_map(move |row| -> Vec<Result<(String, String)>> {
            match row.and_then(|row| row_teacher_pairs(&row, columns.as_ref())) {
                Ok(pairs) => pairs.into_iter().map(Ok).collect(),
                Err(error) => vec![Err(error)],
            }
        }))
}

pub(super) fn run(args: ScoreArgs) -> Result<Outcome> {
    let shard: Shard = match &args.shard {
        Some(text) => text.parse()?,
        None => match shard_from_env(|name| std::env::var(name).ok())? {
            Some((shard, scheduler)) => {
                tracing::info!("shard {shard} from the {scheduler}'s environment");
                shard
            }
            None => Shard::ALL,
        },
    };
    let recipe = crate::recipe::load(&args.recipe, &args.overrides)?;
    let Some(cache) = &recipe.cache else {
        return Err(Error::input(
            &recipe.source.path,
            None,
            "no [cache]: `score` writes teacher scores into the cache that training reads",
        )
        .with_hint(
            "add `[cache]` with `dir = \"cache\"` to the recipe, or pass --set cache.dir=DIR",
        ));
    };
    let device = parse_device(&recipe.run.device)?;
    let Some(teacher) = build_teacher(&recipe, &device)? else {
        return Err(Error::input(
            &recipe.source.path,
            None,
            "no [teacher]: there is nothing to score",
        )
        .with_hint("add a [teacher] section with the model whose scores the student learns"));
    };
    let batch_size = recipe.teachers.first().map_or(64, |t| t.batch_size);
    let mut teacher = CachedTeacher::open(teacher, &cache.dir)?;
    let fingerprint = teacher.fingerprint();
    let (sources, columns) = sources(&recipe)?;
    let (pairs, missing) = count_missing(
        teacher.cache(),
        &fingerprint,
        pair_stream(&sources, columns.clone())?,
        shard,
    )?;
    tracing::info!(
        "teacher {}: {pairs} pairs in shard {shard}, {} cached, {missing} to score into {}",
        teacher.describe(),
        pairs - missing,
        cache.dir.display()
    );
    let bar = progress::bar(missing, "pairs");
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut watcher = Bar(bar);
    let summary = precompute(
        &mut teacher,
        pair_stream(&sources, columns.clone())?,
        shard,
        batch_size * BATCHES_PER_COMMIT,
        &mut watcher,
    )?;
    watcher.0.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "{} pairs: {} from the cache, {} scored by the teacher; cache {}",
            summary.pairs,
            summary.cache_hits,
            summary.teacher_scored,
            cache.dir.display()
        );
    }
    Ok(Outcome::Success)
}
