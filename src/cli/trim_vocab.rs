//! `crossdistill trim-vocab`: keep only the tokens a corpus uses (WordPiece and Unigram
//! tokenizers), with the corpus tokenisation checked to be unchanged.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::Outcome;
use crate::error::Result;
use crate::model::{trim_vocab, CorpusColumns, TrimCorpus, TrimOptions, TrimReport};

/// Arguments of `trim-vocab`.
#[derive(Debug, Args)]
pub struct TrimVocabArgs {
    /// Model directory or Hugging Face hub id (BERT or XLM-RoBERTa, base encoder or
    /// *ForSequenceClassification).
    #[arg(long)]
    pub model: String,
    /// Corpus files: .txt (one text per line), .csv, .tsv, .jsonl or .parquet (every text
    /// column; the label column is skipped).
    #[arg(long, num_args = 1.., required = true)]
    pub corpus: Vec<PathBuf>,
    /// Where to write the trimmed model (a new directory).
    #[arg(long)]
    pub output: PathBuf,
    /// Column names of headerless CSV/TSV files, e.g. `sentence1,sentence2,score` for STSb.
    #[arg(long, value_delimiter = ',')]
    pub names: Option<Vec<String>>,
    /// The text columns of table files (default: every column but the label column).
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Replace --output when it is a previous trim-vocab output (it holds trim_vocab.json and
    /// only the files listed there); anything else is refused.
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run(args: TrimVocabArgs) -> Result<Outcome> {
    let started = Instant::now();
    let columns = CorpusColumns {
        names: args.names,
        columns: args.columns,
    };
    let corpus = TrimCorpus::read_files(&args.corpus, &columns)?;
    let options = TrimOptions { force: args.force };
    let report = trim_vocab(&args.model, &corpus, &args.output, &options)?;
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("output".into(), args.output.display().to_string().into());
            object.insert("seconds".into(), seconds.into());
        }
        println!("{value}");
    } else {
        print_report(&report, &args.output, seconds);
    }
    Ok(Outcome::Success)
}

fn percent(after: f64, before: f64) -> f64 {
    if before > 0.0 {
        100.0 * (1.0 - after / before)
    } else {
        0.0
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_report(report: &TrimReport, output: &std::path::Path, seconds: f64) {
    println!(
        "trimmed the {} vocabulary into {}",
        report.tokenizer,
        output.display()
    );
    println!(
        "  vocabulary  {:>12} -> {:>12}  (-{:.1}%)",
        report.vocab_before,
        report.vocab_after,
        percent(report.vocab_after as f64, report.vocab_before as f64)
    );
    println!(
        "  parameters  {:>12} -> {:>12}  (-{:.1}%)",
        report.params_before,
        report.params_after,
        percent(report.params_after as f64, report.params_before as f64)
    );
    println!(
        "  weights     {:>9.1} MiB -> {:>9.1} MiB  (-{:.1}%)",
        mib(report.weights_bytes_before),
        mib(report.weights_bytes_after),
        percent(
            report.weights_bytes_after as f64,
            report.weights_bytes_before as f64
        )
    );
    println!(
        "  tokenizer   {:>9.1} MiB -> {:>9.1} MiB",
        mib(report.tokenizer_bytes_before),
        mib(report.tokenizer_bytes_after)
    );
    println!(
        "  checked     {} texts and {} pairs ({} tokens): tokenisation identical",
        report.texts_checked, report.pairs_checked, report.tokens_checked
    );
    for dropped in &report.dropped {
        println!("  not copied: {dropped}");
    }
    println!("  took {seconds:.1} s");
}
