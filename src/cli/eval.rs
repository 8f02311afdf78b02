//! `crossdistill eval`: run sentence-transformers' evaluators on a model and print the metrics.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use serde_json::{Map, Value};

use super::Outcome;
use crate::error::{Error, Result};
use crate::eval::{
    write_csv, AgreementEvaluator, BeirFirstStage, BeirOptions, ClassificationEvaluator,
    CorrelationEvaluator, Evaluator, RerankingEvaluator, RerankingOptions, SampleOptions,
};
use crate::model::{parse_device, CrossEncoder, LoadOptions};

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
}

/// The evaluators the arguments ask for, named by their flag, in a fixed order.
fn build_evaluators(args: &EvalArgs, num_labels: usize) -> Result<Vec<Box<dyn Evaluator>>> {
    let columns: Option<[&str; 2]> = match args.columns.as_deref() {
        None => None,
        Some([first, second]) => Some([first.as_str(), second.as_str()]),
        Some(other) => {
            return Err(Error::invalid(format!(
                "--columns needs two names, found {}",
                other.len()
            )))
        }
    };
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

pub(super) fn run(args: EvalArgs) -> Result<Outcome> {
    let options = LoadOptions {
        device: parse_device(&args.device)?,
        max_length: args.max_length,
        ..LoadOptions::default()
    };
    if args.batch_size == 0 {
        return Err(Error::invalid("--batch-size is 0; it must be at least 1"));
    }
    let model = CrossEncoder::load(&args.model, None, &options)?;
    let evaluators = build_evaluators(&args, model.num_labels())?;
    let mut results = Vec::new();
    for evaluator in &evaluators {
        tracing::info!("evaluating {}", evaluator.name());
        let metrics = evaluator.evaluate(&model)?;
        if let Some(dir) = &args.csv_dir {
            write_csv(dir, evaluator.name(), 0, &metrics)?;
        }
        results.push((evaluator.as_ref(), metrics));
    }
    if args.json {
        let object: Map<String, Value> = results
            .iter()
            .map(|(evaluator, metrics)| (evaluator.name().to_string(), metrics_json(metrics)))
            .collect();
        println!("{}", Value::Object(object));
    } else {
        print_table(&results);
    }
    Ok(Outcome::Success)
}
