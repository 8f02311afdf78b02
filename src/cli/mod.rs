//! The `crossdistill` command line: argument parsing and the commands. `main.rs` only calls
//! [`run`] and maps the outcome to an exit code.

mod cache;
mod convert;
mod eval;
mod mine;
mod predict;
mod progress;
mod rank;
mod score;
mod shard_env;
mod train;
mod trim_vocab;

use clap::{Parser, Subcommand};

use crate::error::Result;

/// What a command reports back to `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything worked (exit 0).
    Success,
    /// A check ran and found problems (exit 1).
    CheckFailed,
}

/// crossdistill: distill cross-encoder rerankers.
#[derive(Debug, Parser)]
#[command(name = "crossdistill", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Score (query, passage) pairs from a JSONL file with a cross-encoder.
    Predict(predict::PredictArgs),
    /// Rank documents for one query.
    Rank(rank::RankArgs),
    /// Train a student from a recipe (the main job).
    Train(train::TrainArgs),
    /// Precompute a recipe's teacher scores into its [cache] (resumable, shardable).
    Score(score::ScoreArgs),
    /// Teacher-score cache tools.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Mine hard negatives for (anchor, positive) pairs with an embedding model.
    Mine(Box<mine::MineArgs>),
    /// Convert a dataset between the loss input formats.
    Convert(convert::ConvertArgs),
    /// Recipe tools.
    #[command(subcommand)]
    Recipe(train::RecipeCommand),
    /// Evaluate a model: reranking, correlation, classification, teacher agreement, BEIR.
    Eval(Box<eval::EvalArgs>),
    /// Keep only the vocabulary a corpus uses (WordPiece, Unigram), checked token by token.
    TrimVocab(trim_vocab::TrimVocabArgs),
}

/// Parse `std::env::args` and run the command.
pub fn run() -> Result<Outcome> {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Predict(args) => predict::run(args),
        Command::Rank(args) => rank::run(args),
        Command::Train(args) => train::run(args),
        Command::Recipe(command) => train::run_recipe(command),
        Command::Eval(args) => eval::run(*args),
        Command::Score(args) => score::run(args),
        Command::Cache(command) => cache::run(command),
        Command::Mine(args) => mine::run(*args),
        Command::Convert(args) => convert::run(args),
        Command::TrimVocab(args) => trim_vocab::run(args),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CROSSDISTILL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(log_colours(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_target(false)
        .try_init();
}

/// Whether log lines carry colour codes: only on a terminal, and never when `NO_COLOR` is set
/// to a non-empty value (<https://no-color.org>). A log redirected to a file stays plain text.
fn log_colours(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::log_colours;
    use std::ffi::OsStr;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(log_colours(true, None));
        assert!(log_colours(true, Some(OsStr::new(""))));
        assert!(!log_colours(true, Some(OsStr::new("1"))));
        assert!(!log_colours(false, None));
        assert!(!log_colours(false, Some(OsStr::new(""))));
    }
}
