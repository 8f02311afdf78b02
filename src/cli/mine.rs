//! `crossdistill mine`: sentence-transformers' `mine_hard_negatives` from the command line. The
//! flags carry the Python parameter names (`--num-negatives`, `--range-max`, ...).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::ProgressBar;

use super::predict::ActivationArg;
use super::progress;
use super::rank::read_documents;
use super::Outcome;
use crate::data::{DataSource, Field, Format};
use crate::error::{Error, Result};
use crate::mine::{
    mine_hard_negatives, MineOptions, MineProgress, OutputFormat, PairDataset, SamplingStrategy,
};
use crate::model::bi_encoder::{BiEncoder, BiEncoderOptions, TextRole};
use crate::model::{parse_device, LoadOptions};
use crate::teacher::{load_pair_scorer, CandleTeacher, Teacher};

/// `--sampling-strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SamplingArg {
    /// The best candidates.
    Top,
    /// A seeded uniform sample of the valid candidates.
    Random,
}

/// `--output-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// (anchor, positive, negative) rows.
    Triplet,
    /// (anchor, positive, negative_1, …, negative_N) rows.
    NTuple,
    /// (anchor, document, label) rows.
    LabeledPair,
    /// (anchor, [documents], labels) rows.
    LabeledList,
}

impl FormatArg {
    fn format(self) -> OutputFormat {
        match self {
            FormatArg::Triplet => OutputFormat::Triplet,
            FormatArg::NTuple => OutputFormat::NTuple,
            FormatArg::LabeledPair => OutputFormat::LabeledPair,
            FormatArg::LabeledList => OutputFormat::LabeledList,
        }
    }
}

/// Arguments of `mine`.
#[derive(Debug, Args)]
pub struct MineArgs {
    /// Embedding model: a sentence-transformers directory or hub id (e.g. all-MiniLM-L6-v2).
    #[arg(long)]
    pub model: String,
    /// (anchor, positive) pairs: .jsonl, .csv, .tsv or .parquet; columns in order (or named).
    #[arg(long)]
    pub input: PathBuf,
    /// More candidate documents: .jsonl (strings, or objects with `text`), a text file (one
    /// per line), or .csv/.tsv/.parquet (see --corpus-column). Default: the positives only.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// The corpus column to read from a .csv/.tsv/.parquet/.jsonl corpus (default: its first
    /// column for tables, `text` for JSONL objects).
    #[arg(long)]
    pub corpus_column: Option<String>,
    /// Where to write the mined rows: .jsonl or .parquet.
    #[arg(long)]
    pub output: PathBuf,
    /// The anchor column (default: the first input column).
    #[arg(long)]
    pub anchor_column_name: Option<String>,
    /// The positive column (default: the next input column).
    #[arg(long)]
    pub positive_column_name: Option<String>,
    /// Negatives per (anchor, positive).
    #[arg(long, default_value_t = 3)]
    pub num_negatives: usize,
    /// Skip this many of the best surviving candidates.
    #[arg(long, default_value_t = 0)]
    pub range_min: usize,
    /// Consider at most this many candidates (default: range_min + num_negatives +
    /// max_positives, ×10 on num_negatives with a margin or --max-score).
    #[arg(long)]
    pub range_max: Option<usize>,
    /// Keep a negative only if score + margin ≤ the query's lowest positive score.
    #[arg(long, allow_hyphen_values = true)]
    pub absolute_margin: Option<f32>,
    /// Keep a negative only if score ≤ p − |p|·margin (p = the query's lowest positive score).
    #[arg(long, allow_hyphen_values = true)]
    pub relative_margin: Option<f32>,
    /// Drop candidates scoring above this.
    #[arg(long, allow_hyphen_values = true)]
    pub max_score: Option<f32>,
    /// Drop candidates scoring below this.
    #[arg(long, allow_hyphen_values = true)]
    pub min_score: Option<f32>,
    /// How negatives are taken from the window.
    #[arg(long, value_enum, default_value = "top")]
    pub sampling_strategy: SamplingArg,
    /// Keep positives among the candidates (reranking eval sets); forces n-tuple.
    #[arg(long)]
    pub include_positives: bool,
    /// The output layout.
    #[arg(long, value_enum, default_value = "triplet")]
    pub output_format: FormatArg,
    /// Add the scores (a `scores` column, or scores instead of labels).
    #[arg(long)]
    pub output_scores: bool,
    /// A cross-encoder that rescores the candidates when a margin or --max-score is set.
    #[arg(long)]
    pub teacher: Option<String>,
    /// Activation of the teacher's scores (default: the model's own, sigmoid for one label).
    #[arg(long, value_enum, default_value = "default")]
    pub teacher_activation: ActivationArg,
    /// Seed of --sampling-strategy random.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Texts per embedding batch and pairs per teacher batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Queries scored against the corpus at once (default: about 16 M scores per chunk).
    #[arg(long)]
    pub query_chunk_size: Option<usize>,
    /// Keep query and corpus embeddings here (.npy, keyed by model, prompt and texts), so that
    /// mining again with other filters does not embed again. Default:
    /// $XDG_CACHE_HOME/crossdistill/embeddings (else ~/.cache/crossdistill/embeddings).
    #[arg(long)]
    pub cache_folder: Option<PathBuf>,
    /// Do not read or write cached embeddings.
    #[arg(long, conflicts_with = "cache_folder")]
    pub no_cache: bool,
    /// Text put before every query (e.g. "query: " for e5).
    #[arg(long)]
    pub query_prompt: Option<String>,
    /// A prompt of the model's config_sentence_transformers.json for the queries.
    #[arg(long)]
    pub query_prompt_name: Option<String>,
    /// Text put before every corpus document (e.g. "passage: " for e5).
    #[arg(long)]
    pub corpus_prompt: Option<String>,
    /// A prompt of the model's config for the corpus.
    #[arg(long)]
    pub corpus_prompt_name: Option<String>,
    /// Truncation length of the embedder (default: its sentence_bert_config.json).
    #[arg(long)]
    pub max_seq_length: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Progress bars on stderr, one per stage.
struct Bars {
    bar: Option<ProgressBar>,
}

impl MineProgress for Bars {
    fn start(&mut self, stage: &str, total: usize) {
        let unit = match stage {
            "searching" => "queries",
            "rescoring" => "pairs",
            _ => "texts",
        };
        let bar = progress::bar(total as u64, unit);
        bar.set_message(stage.to_string());
        self.bar = Some(bar);
    }

    fn advance(&mut self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(done as u64);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// `$XDG_CACHE_HOME/crossdistill/embeddings`, else `~/.cache/crossdistill/embeddings`; `None`
/// when neither variable is set.
fn default_cache_folder() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("crossdistill").join("embeddings"))
}

/// The candidate documents of `path`.
fn read_corpus(path: &Path, column: Option<&str>) -> Result<Vec<String>> {
    let format = Format::from_path(path).ok();
    let tabular = matches!(format, Some(Format::Csv | Format::Tsv | Format::Parquet));
    if !tabular && column.is_none() {
        return read_documents(path);
    }
    let mut source = DataSource::new(path.to_string_lossy(), ".");
    source.label = None;
    let column = match column {
        Some(name) => name.to_string(),
        None => source
            .open()?
            .input_columns()
            .first()
            .cloned()
            .ok_or_else(|| Error::input(path, None, "no columns; expected a text column"))?,
    };
    source.columns = Some(vec![column]);
    let mut documents = Vec::new();
    for row in source.open()? {
        let row = row?;
        match row.fields.into_iter().next() {
            Some(Field::Text(text)) => documents.push(text),
            _ => {
                return Err(Error::input(
                    path,
                    Some(row.line),
                    "expected one text per row in the corpus column",
                ))
            }
        }
    }
    Ok(documents)
}

pub(super) fn run(args: MineArgs) -> Result<Outcome> {
    let started = Instant::now();
    let device = parse_device(&args.device)?;
    let embedder = BiEncoder::load(
        &args.model,
        None,
        &BiEncoderOptions {
            device: device.clone(),
            max_seq_length: args.max_seq_length,
            pooling: None,
        },
    )?;
    let query_prompt = embedder.resolve_prompt(
        TextRole::Query,
        args.query_prompt.as_deref(),
        args.query_prompt_name.as_deref(),
    )?;
    let corpus_prompt = embedder.resolve_prompt(
        TextRole::Document,
        args.corpus_prompt.as_deref(),
        args.corpus_prompt_name.as_deref(),
    )?;
    let mut teacher = match &args.teacher {
        Some(spec) => {
            let model = load_pair_scorer(
                spec,
                None,
                &LoadOptions {
                    device,
                    ..LoadOptions::default()
                },
            )?;
            let activation = args.teacher_activation.resolve(model.default_activation());
            Some(CandleTeacher::from_boxed(
                model,
                args.batch_size,
                activation,
            )?)
        }
        None => None,
    };
    let source = DataSource::new(args.input.to_string_lossy(), ".");
    let dataset = PairDataset::read(
        &source,
        args.anchor_column_name.as_deref(),
        args.positive_column_name.as_deref(),
    )?;
    let corpus = match &args.corpus {
        Some(path) => Some(read_corpus(path, args.corpus_column.as_deref())?),
        None => None,
    };
    let options = MineOptions {
        range_min: args.range_min,
        range_max: args.range_max,
        max_score: args.max_score,
        min_score: args.min_score,
        absolute_margin: args.absolute_margin,
        relative_margin: args.relative_margin,
        num_negatives: args.num_negatives,
        sampling_strategy: match args.sampling_strategy {
            SamplingArg::Top => SamplingStrategy::Top,
            SamplingArg::Random => SamplingStrategy::Random,
        },
        query_prompt,
        corpus_prompt,
        include_positives: args.include_positives,
        output_format: args.output_format.format(),
        output_scores: args.output_scores,
        batch_size: args.batch_size,
        query_chunk_size: args.query_chunk_size,
        seed: args.seed,
        cache_folder: if args.no_cache {
            None
        } else {
            args.cache_folder.clone().or_else(default_cache_folder)
        },
    };
    let mined = mine_hard_negatives(
        &dataset,
        corpus.as_deref(),
        &embedder,
        teacher.as_mut().map(|t| t as &mut dyn Teacher),
        &options,
        &mut Bars { bar: None },
    )?;
    mined.table.write(&args.output)?;
    for note in &mined.report.notes {
        eprintln!("note: {note}");
    }
    print!("{}", mined.report);
    let stages: Vec<String> = mined
        .report
        .stage_seconds
        .iter()
        .map(|(stage, seconds)| format!("{stage} {seconds:.2}s"))
        .collect();
    eprintln!("stages: {}", stages.join(", "));
    eprintln!(
        "wrote {} rows ({}) to {} in {:.1}s ({} queries, {} pairs, {} documents)",
        mined.table.num_rows(),
        mined.table.column_names().join(", "),
        args.output.display(),
        started.elapsed().as_secs_f64(),
        mined.report.num_queries,
        mined.report.num_pairs,
        mined.report.corpus_size
    );
    Ok(Outcome::Success)
}
