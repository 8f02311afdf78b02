//! Throughput of the candle teachers of every architecture on the same pairs and batches; run by
//! bench/modern_teachers.sh, which also times sentence-transformers' `CrossEncoder.predict`.
//!
//! ```text
//! cargo run --release --example modern_teacher_bench -- PAIRS.jsonl REPS BATCH MODEL_DIR...
//! ```
//!
//! Each model (loaded through `teacher::load_pair_scorer`, as `predict` and `[teacher]` load it)
//! scores every pair (raw logits) REPS times after a warm-up on 32 pairs, the models taking turns
//! so that a busy machine slows them alike. Prints JSON: pairs/s (median and best pass) per model
//! directory.

use std::time::Instant;

use crossdistill::error::{Error, Result};
use crossdistill::model::LoadOptions;
use crossdistill::teacher::load_pair_scorer;
use serde_json::{json, Value};

fn read_pairs(path: &str) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let row: Value = serde_json::from_str(line)?;
            match (row["query"].as_str(), row["passage"].as_str()) {
                (Some(q), Some(p)) => Ok((q.to_string(), p.to_string())),
                _ => Err(Error::input(
                    path,
                    Some(i + 1),
                    "expected query and passage",
                )),
            }
        })
        .collect()
}

fn main() -> Result<()> {
    // The binary's process settings (allocator, candle threads), so that the figures are what
    // `crossdistill predict` and a `[teacher]` get.
    crossdistill::process::tune();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        return Err(Error::invalid(
            "usage: modern_teacher_bench PAIRS.jsonl REPS BATCH MODEL_DIR...",
        ));
    }
    let pairs = read_pairs(&args[0])?;
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let reps: usize = args[1]
        .parse()
        .map_err(|_| Error::invalid("REPS must be a number"))?;
    let batch: usize = args[2]
        .parse()
        .map_err(|_| Error::invalid("BATCH must be a number"))?;
    let mut models = Vec::new();
    for dir in &args[3..] {
        let model = load_pair_scorer(dir, None, &LoadOptions::default())?;
        model.predict_logits(&pairs[..pairs.len().min(32)], batch, &mut |_| {})?;
        models.push((dir.clone(), model, Vec::new()));
    }
    for _ in 0..reps {
        for (_, model, rates) in &mut models {
            let start = Instant::now();
            model.predict_logits(&pairs, batch, &mut |_| {})?;
            rates.push(pairs.len() as f64 / start.elapsed().as_secs_f64());
        }
    }
    let mut out = serde_json::Map::new();
    for (dir, model, mut rates) in models {
        rates.sort_by(f64::total_cmp);
        out.insert(
            dir,
            json!({
                "model_type": model.model_type(),
                "pairs_per_s_median": rates[rates.len() / 2],
                "pairs_per_s_best": rates[rates.len() - 1],
            }),
        );
    }
    println!("{}", Value::Object(out));
    Ok(())
}
