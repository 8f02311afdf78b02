//! `crossdistill convert`: move a dataset between the formats the losses take (class-labelled
//! pairs → triplets; triplet ↔ n-tuple ↔ labeled-list ↔ labeled-pair).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::Outcome;
use crate::data::DataSource;
use crate::error::Result;
use crate::mine::{convert, ConvertFormat};

/// A format on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConvertFormatArg {
    /// (sentence_A, sentence_B, class) rows; input only, converts to triplet.
    PairClass,
    /// (anchor, positive, negative) [+ scores].
    Triplet,
    /// (anchor, positive, negative_1, …, negative_N) [+ scores].
    NTuple,
    /// (anchor, document, label | score).
    LabeledPair,
    /// (anchor, [documents], labels | scores).
    LabeledList,
}

impl ConvertFormatArg {
    fn format(self) -> ConvertFormat {
        match self {
            ConvertFormatArg::PairClass => ConvertFormat::PairClass,
            ConvertFormatArg::Triplet => ConvertFormat::Triplet,
            ConvertFormatArg::NTuple => ConvertFormat::NTuple,
            ConvertFormatArg::LabeledPair => ConvertFormat::LabeledPair,
            ConvertFormatArg::LabeledList => ConvertFormat::LabeledList,
        }
    }
}

/// Arguments of `convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The dataset to convert: .jsonl, .csv, .tsv or .parquet.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the result: .jsonl or .parquet.
    #[arg(long)]
    pub output: PathBuf,
    /// The input's format.
    #[arg(long, value_enum)]
    pub from: ConvertFormatArg,
    /// The output's format.
    #[arg(long, value_enum)]
    pub to: ConvertFormatArg,
    /// The input columns, in order (default: every column but the label column).
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// The label column (default: the first of label, labels, score, scores); a column named
    /// score(s) holds scores, any other labels.
    #[arg(long)]
    pub label_column: Option<String>,
    /// Write scores instead of labels in labeled-pair/labeled-list output.
    #[arg(long)]
    pub output_scores: bool,
    /// Seed of the pair-class sampling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

pub(super) fn run(args: ConvertArgs) -> Result<Outcome> {
    let source = DataSource {
        columns: args.columns.clone(),
        label: args.label_column.clone(),
        ..DataSource::new(args.input.to_string_lossy(), ".")
    };
    let (table, notes) = convert(
        &source,
        args.from.format(),
        args.to.format(),
        args.output_scores,
        args.seed,
    )?;
    table.write(&args.output)?;
    for line in &notes.lines {
        eprintln!("note: {line}");
    }
    eprintln!(
        "wrote {} rows ({}) to {}",
        table.num_rows(),
        table.column_names().join(", "),
        args.output.display()
    );
    Ok(Outcome::Success)
}
