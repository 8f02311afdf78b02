//! The `crossdistill` command line: argument parsing and the commands. `main.rs` only calls
//! [`run`] and maps the outcome to an exit code.

mod convert;
mod mine;
mod predict;
mod progress;
mod rank;
mod train;

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
    /// Mine hard negatives for (anchor, positive) pairs with an embedding model.
    Mine(Box<mine::MineArgs>),
    /// Convert a dataset between the loss input formats.
    Convert(convert::ConvertArgs),
    /// Recipe tools.
    #[command(subcommand)]
    Recipe(train::RecipeCommand),
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
        Command::Mine(args) => mine::run(*args),
        Command::Convert(args) => convert::run(args),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CROSSDISTILL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
