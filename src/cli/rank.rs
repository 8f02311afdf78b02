//! `crossdistill rank`: rank documents for one query, best first.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;

use super::predict::{ActivationArg, DtypeArg};
use super::Outcome;
use crate::error::{Error, Result};
use crate::model::{parse_device, LoadOptions};
use crate::teacher::load_pair_scorer;

/// Arguments of `rank`.
#[derive(Debug, Args)]
pub struct RankArgs {
    /// Model directory or Hugging Face hub id.
    #[arg(long)]
    pub model: String,
    /// The query.
    #[arg(long)]
    pub query: String,
    /// Documents: a text file with one document per line, or JSONL whose lines are strings or
    /// objects with a `text` (or `document`, `passage`) field.
    #[arg(long)]
    pub documents: PathBuf,
    /// Show only the best K.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Activation applied to the logits.
    #[arg(long, value_enum, default_value = "default")]
    pub activation: ActivationArg,
    /// Pairs per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Print JSON (`[{"corpus_id": i, "score": s, "text": t}, ...]`) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Precision of the forward pass (BERT, XLM-R, ELECTRA, ModernBERT); scores come out in f32.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
}

/// Read documents from a text or JSONL file.
pub fn read_documents(path: &Path) -> Result<Vec<String>> {
    let jsonl = path.extension().is_some_and(|e| e == "jsonl");
    let mut docs = Vec::new();
    for line in crate::data::numbered_lines(path)? {
        let (line_number, line) = line?;
        if line.trim().is_empty() {
            continue;
        }
        if !jsonl {
            docs.push(line);
            continue;
        }
        let value: Value = serde_json::from_str(&line)
            .map_err(|e| Error::input(path, Some(line_number), format!("invalid JSON: {e}")))?;
        let text = match &value {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => ["text", "document", "passage"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str).map(str::to_string)),
            _ => None,
        };
        docs.push(text.ok_or_else(|| {
            Error::input(
                path,
                Some(line_number),
                "expected a string or an object with a `text` field",
            )
        })?);
    }
    if docs.is_empty() {
        return Err(Error::input(path, None, "no documents found"));
    }
    Ok(docs)
}

pub(super) fn run(args: RankArgs) -> Result<Outcome> {
    let device = parse_device(&args.device)?;
    args.dtype.precision().check_device(&device, "--dtype")?;
    let options = LoadOptions {
        device,
        dtype: args.dtype.precision(),
        ..LoadOptions::default()
    };
    let model = load_pair_scorer(&args.model, None, &options)?;
    let docs = read_documents(&args.documents)?;
    let pairs: Vec<(&str, &str)> = docs
        .iter()
        .map(|d| (args.query.as_str(), d.as_str()))
        .collect();
    let activation = args.activation.resolve(model.default_activation());
    let scores = model.predict(&pairs, args.batch_size, activation)?;
    let bad: Vec<usize> = (0..scores.len())
        .filter(|&i| !scores[i].is_finite())
        .collect();
    if let Some(&first) = bad.first() {
        return Err(Error::input(
            &args.documents,
            None,
            format!(
                "the model scores the document with corpus_id {first} ({:?}) as {}: not a finite number ({} of {} documents: {:?})",
                docs[first],
                scores[first],
                bad.len(),
                docs.len(),
                &bad[..bad.len().min(20)],
            ),
        )
        .with_hint("the model's weights hold non-finite values (NaN/inf): check or retrain it"));
    }
    let mut ranked: Vec<usize> = (0..docs.len()).collect();
    ranked.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    ranked.truncate(args.top_k.unwrap_or(docs.len()));
    if args.json {
        let out: Vec<Value> = ranked
            .iter()
            .map(|&i| serde_json::json!({"corpus_id": i, "score": scores[i], "text": docs[i]}))
            .collect();
        println!("{}", Value::from(out));
    } else {
        for (rank, &i) in ranked.iter().enumerate() {
            println!("{:>3}  {:>9.5}  [{}] {}", rank + 1, scores[i], i, docs[i]);
        }
    }
    Ok(Outcome::Success)
}
