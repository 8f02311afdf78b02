//! `crossdistill eval`: run sentence-transformers' evaluators on a model and print the metrics.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use serde_json::{Map, Value};

use super::predict::DtypeArg;
use super::progress;
use super::Outcome;
use crate::error::{Error, Result};
use crate::eval::{
    write_csv, AgreementEvaluator, BeirFirstStage, BeirOptions, ClassificationEvaluator,
    CorrelationEvaluator, Evaluator, RerankingEvaluator, RerankingOptions, SampleOptions,
};
use crate::model::bi_encoder::{BiEncoder, BiEncoderOptions, EncodeOptions};
use crate::model::{parse_device, CrossEncoder, LoadOptions};
use crate::teacher::load_pair_scorer;

/// Arguments of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model directory or Hugging Face hub id.
    #[arg(long)]
    pub model: String,
    /// Reranking samples (JSONL: `query`, `positive`, and `documents` or `negative`).
    #[arg(long, value_name = "F.jsonl")]
    pub reranking: Option<PathBuf>,
    /// Cut-off of MRR and NDCG (reranking and BEIR).
    #[arg(long, default_value_t = 10)]
    pub at_k: usize,
    /// Labelled pairs for Pearson and Spearman (JSONL).
    #[arg(long, value_name = "F.jsonl")]
    pub correlation: Option<PathBuf>,
    /// Labelled pairs for accuracy/F1/AP or the F1 averages (JSONL).
    #[arg(long, value_name = "F.jsonl")]
    pub classification: Option<PathBuf>,
    /// Pairs with teacher scores, for student–teacher Spearman and Kendall's tau (JSONL).
    #[arg(long, value_name = "F.jsonl")]
    pub agreement: Option<PathBuf>,
    /// Correlate with the teacher over all agreement pairs at once, instead of per query.
    #[arg(long)]
    pub agreement_flat: bool,
    /// A BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) to rerank.
    #[arg(long, value_name = "DIR")]
    pub beir: Option<PathBuf>,
    /// The BEIR qrels split.
    #[arg(long, default_value = "test")]
    pub beir_split: String,
    /// A TREC run file as the BEIR first stage (default: BM25 over the corpus).
    #[arg(long, value_name = "FILE")]
    pub beir_run: Option<PathBuf>,
    /// Candidates per BEIR query taken from the first stage.
    #[arg(long, default_value_t = 100)]
    pub top_k: usize,
    /// The two text columns of the pair files, e.g. `--columns sentence1,sentence2`
    /// (default: detected).
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub columns: Option<Vec<String>>,
    /// The label column of the correlation and classification files (default: the first of
    /// label, labels, score, scores).
    #[arg(long)]
    pub label: Option<String>,
    /// The teacher-score column of the agreement file (default: the first of teacher_score,
    /// teacher_scores, score, scores, label, labels).
    #[arg(long)]
    pub teacher_column: Option<String>,
    /// Print one JSON object `{"reranking": {...}, ...}` instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also append each evaluator's results to `DIR/<evaluator>_results.csv`.
    #[arg(long, value_name = "DIR")]
    pub csv_dir: Option<PathBuf>,
    /// Pairs per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Truncation length in tokens (default: the model's).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Precision of the cross-encoder's forward pass (BERT, XLM-R, ELECTRA, ModernBERT); scores
    /// come out in f32.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
    /// Keep only these encoder layers (0-based), as a student's `layers` init does.
    #[arg(long, value_delimiter = ',', value_name = "I,J,..")]
    pub layers: Option<Vec<usize>>,
    /// Treat the model as an embedding model (sentence-transformers bi-encoder): a pair's score is
    /// the cosine similarity of the two texts' pooled embeddings. Correlation only; the zero-shot
    /// baseline of a student initialised from an embedding model.
    #[arg(long)]
    pub bi_encoder: bool,
    /// Bi-encoder mode: text put before every input (e5 models: "query: ").
    #[arg(long, requires = "bi_encoder")]
    pub prompt: Option<String>,
}

/// The evaluators the arguments ask for, named by their flag, in a fixed order.
/// `--columns` as the two text columns.
fn pair_columns(args: &EvalArgs) -> Result<Option<[&str; 2]>> {
    match args.columns.as_deref() {
        None => Ok(None),
        Some([first, second]) => Ok(Some([first.as_str(), second.as_str()])),
        Some(other) => Err(Error::invalid(format!(
            "--columns needs two names, found {}",
            other.len()
        ))),
    }
}

fn build_evaluators(args: &EvalArgs, num_labels: usize) -> Result<Vec<Box<dyn Evaluator>>> {
    let columns = pair_columns(args)?;
    let label = args.label.as_deref();
    let reranking_options = RerankingOptions {
        at_k: args.at_k,
        batch_size: args.batch_size,
        ..RerankingOptions::default()
    };
    let mut evaluators: Vec<Box<dyn Evaluator>> = Vec::new();
    if let Some(path) = &args.reranking {
        evaluators.push(Box::new(RerankingEvaluator::from_jsonl(
            "reranking",
            path,
            reranking_options,
        )?));
    }
    if let Some(path) = &args.correlation {
        evaluators.push(Box::new(CorrelationEvaluator::from_jsonl(
            "correlation",
            path,
            columns,
            label,
            args.batch_size,
        )?));
    }
    if let Some(path) = &args.classification {
        evaluators.push(Box::new(ClassificationEvaluator::from_jsonl(
            "classification",
            path,
            columns,
            label,
            num_labels,
            args.batch_size,
        )?));
    }
    if let Some(path) = &args.agreement {
        evaluators.push(Box::new(AgreementEvaluator::from_jsonl(
            "agreement",
            path,
            columns,
            args.teacher_column.as_deref(),
            !args.agreement_flat,
            args.batch_size,
        )?));
    }
    if let Some(dir) = &args.beir {
        let beir = BeirOptions {
            split: args.beir_split.clone(),
            first_stage: match &args.beir_run {
                Some(run) => BeirFirstStage::Run(run.clone()),
                None => BeirOptions::default().first_stage,
            },
            samples: SampleOptions {
                top_k: args.top_k,
                ..SampleOptions::default()
            },
        };
        evaluators.push(Box::new(RerankingEvaluator::from_beir(
            "beir",
            dir,
            &beir,
            reranking_options,
        )?));
    }
    if evaluators.is_empty() {
        return Err(Error::invalid("nothing to evaluate").with_hint(
            "give at least one of --reranking, --correlation, --classification, --agreement, --beir",
        ));
    }
    Ok(evaluators)
}

/// The metrics as a JSON object (NaN, an undefined metric, becomes null).
fn metrics_json(metrics: &BTreeMap<String, f64>) -> Value {
    Value::Object(
        metrics
            .iter()
            .map(|(key, &value)| (key.clone(), Value::from(value)))
            .collect(),
    )
}

fn print_table(results: &[(&dyn Evaluator, BTreeMap<String, f64>)]) {
    let width = results
        .iter()
        .flat_map(|(_, metrics)| metrics.keys().map(String::len))
        .max()
        .unwrap_or(0);
    for (index, (evaluator, metrics)) in results.iter().enumerate() {
        if index > 0 {
            println!();
        }
        println!("{} ({})", evaluator.name(), evaluator.description());
        for (key, value) in metrics {
            let marker = if key == evaluator.primary_metric() {
                "  *"
            } else {
                ""
            };
            println!("  {key:<width$}  {value:.4}{marker}");
        }
    }
    println!("\n* primary metric");
}

/// Bi-encoder mode: the correlation of cosine similarities with the gold scores.
fn evaluate_bi_encoder(
    args: &EvalArgs,
    options: &LoadOptions,
) -> Result<Vec<(CorrelationEvaluator, BTreeMap<String, f64>)>> {
    let (Some(path), None, None, None, None) = (
        &args.correlation,
        &args.reranking,
        &args.classification,
        &args.agreement,
        &args.beir,
    ) else {
        return Err(Error::invalid(
            "--bi-encoder scores pairs by embedding similarity, which only the correlation evaluator uses",
        )
        .with_hint("give --correlation F.jsonl alone, or drop --bi-encoder"));
    };
    let loaded = BiEncoder::load(
        &args.model,
        None,
        &BiEncoderOptions {
            device: options.device.clone(),
            max_seq_length: args.max_length,
            pooling: None,
        },
    )?;
    let model = match &args.layers {
        None => loaded,
        Some(_) => {
            let pruned = CrossEncoder::load(&args.model, None, options)?;
            BiEncoder::from_cross_encoder(
                pruned,
                loaded.pooling().to_vec(),
                loaded.prompts().clone(),
            )?
        }
    };
    let columns = pair_columns(args)?;
    let evaluator = CorrelationEvaluator::from_jsonl(
        "correlation",
        path,
        columns,
        args.label.as_deref(),
        args.batch_size,
    )?;
    let pairs = evaluator.pairs();
    let encode = EncodeOptions {
        batch_size: args.batch_size,
        prompt: args.prompt.as_deref(),
        normalize: true,
    };
    let bar = progress::bar(2 * pairs.len() as u64, "texts");
    let mut tick = |n: usize| bar.inc(n as u64);
    let left: Vec<&str> = pairs.iter().map(|(a, _)| *a).collect();
    let right: Vec<&str> = pairs.iter().map(|(_, b)| *b).collect();
    let left = model.encode(&left, &encode, &mut tick)?;
    let right = model.encode(&right, &encode, &mut tick)?;
    bar.finish_and_clear();
    let cosines: Vec<f64> = (0..pairs.len())
        .map(|i| {
            left.row(i)
                .iter()
                .zip(right.row(i))
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum()
        })
        .collect();
    let metrics = evaluator.metrics_from_scores(&cosines)?;
    Ok(vec![(evaluator, metrics)])
}

pub(super) fn run(args: EvalArgs) -> Result<Outcome> {
    let device = parse_device(&args.device)?;
    args.dtype.precision().check_device(&device, "--dtype")?;
    let options = LoadOptions {
        device,
        max_length: args.max_length,
        layers: args.layers.clone(),
        dtype: args.dtype.precision(),
        ..LoadOptions::default()
    };
    if args.batch_size == 0 {
        return Err(Error::invalid("--batch-size is 0; it must be at least 1"));
    }
    if args.bi_encoder {
        if args.dtype != DtypeArg::F32 {
            return Err(Error::invalid(format!(
                "--bi-encoder embeds in f32 only, found --dtype {}",
                args.dtype.precision()
            ))
            .with_hint("drop --dtype with --bi-encoder"));
        }
        let results = evaluate_bi_encoder(&args, &options)?;
        let results: Vec<(&dyn Evaluator, BTreeMap<String, f64>)> = results
            .iter()
            .map(|(evaluator, metrics)| (evaluator as &dyn Evaluator, metrics.clone()))
            .collect();
        return report(&args, &results);
    }
    let model = load_pair_scorer(&args.model, None, &options)?;
    let evaluators = build_evaluators(&args, model.num_labels())?;
    let mut results = Vec::new();
    for evaluator in &evaluators {
        tracing::info!("evaluating {}", evaluator.name());
        let bar = progress::bar(evaluator.pair_count() as u64, "pairs");
        bar.set_message(evaluator.name().to_string());
        let metrics =
            evaluator.evaluate_with_progress(model.as_ref(), &mut |n| bar.inc(n as u64))?;
        bar.finish_and_clear();
        if let Some(dir) = &args.csv_dir {
            write_csv(dir, evaluator.name(), 0, &metrics)?;
        }
        results.push((evaluator.as_ref(), metrics));
    }
    report(&args, &results)
}

/// Write the CSVs (bi-encoder mode) and print the results as JSON or a table.
fn report(args: &EvalArgs, results: &[(&dyn Evaluator, BTreeMap<String, f64>)]) -> Result<Outcome> {
    if args.bi_encoder {
        if let Some(dir) = &args.csv_dir {
            for (evaluator, metrics) in results {
                write_csv(dir, evaluator.name(), 0, metrics)?;
            }
        }
    }
    if args.json {
        let object: Map<String, Value> = results
            .iter()
            .map(|(evaluator, metrics)| (evaluator.name().to_string(), metrics_json(metrics)))
            .collect();
        println!("{}", Value::Object(object));
    } else {
        print_table(results);
    }
    Ok(Outcome::Success)
}
