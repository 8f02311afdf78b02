//! Throughput of the ONNX teacher (f32 and int8 exports) and the candle teacher on the same
//! pairs, model and batches; run by bench/onnx_teacher.sh, which also measures the Python peers.
//!
//! ```text
//! cargo run --release --example onnx_teacher_bench -- MODEL_DIR PAIRS.jsonl [REPS] [BATCH] [MAX_LENGTH]
//! ```
//!
//! MODEL_DIR holds config.json, tokenizer.json, model.safetensors, model.onnx and
//! model.int8.onnx. Each teacher scores every pair (raw logits) REPS times, the teachers taking
//! turns so that a busy machine slows them alike, after a warm-up on 64 pairs. Prints JSON:
//! pairs/s (median and best pass) per teacher, the largest |Δlogit| between the teachers, and the
//! Spearman correlation of the int8 teacher's scores with the f32 teacher's.

use std::time::Instant;

use crossdistill::error::{Error, Result};
use crossdistill::eval::spearman;
use crossdistill::model::{CrossEncoder, LoadOptions, ScoreActivation};
use crossdistill::teacher::{CandleTeacher, OnnxTeacher, Teacher};
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

fn arg<T: std::str::FromStr>(args: &[String], index: usize, default: T) -> T {
    args.get(index)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(0.0, f64::max)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err(Error::invalid(
            "usage: onnx_teacher_bench MODEL_DIR PAIRS.jsonl [REPS] [BATCH] [MAX_LENGTH]",
        ));
    }
    let (model_dir, pairs_path) = (&args[1], &args[2]);
    let reps: usize = arg(&args, 3, 3);
    let batch_size: usize = arg(&args, 4, 32);
    let max_length: usize = arg(&args, 5, 128);
    let owned = read_pairs(pairs_path)?;
    let pairs: Vec<(&str, &str)> = owned
        .iter()
        .map(|(q, p)| (q.as_str(), p.as_str()))
        .collect();
    let identity = Some(ScoreActivation::Identity);
    let ort_f32 = OnnxTeacher::new(
        model_dir,
        "model.onnx",
        Some(max_length),
        batch_size,
        identity,
        None,
    )?;
    let library = ort_f32.runtime_library().to_path_buf();

    let mut teachers: Vec<(&str, Box<dyn Teacher>)> = vec![
        ("ort_teacher_f32", Box::new(ort_f32)),
        (
            "ort_teacher_int8",
            Box::new(OnnxTeacher::new(
                model_dir,
                "model.int8.onnx",
                Some(max_length),
                batch_size,
                identity,
                None,
            )?),
        ),
        (
            "candle_teacher",
            Box::new(CandleTeacher::new(
                CrossEncoder::load(
                    model_dir,
                    None,
                    &LoadOptions {
                        max_length: Some(max_length),
                        ..LoadOptions::default()
                    },
                )?,
                batch_size,
                ScoreActivation::Identity,
            )?),
        ),
    ];
    for (_, teacher) in &mut teachers {
        teacher.score(&pairs[..pairs.len().min(64)])?;
    }
    let mut seconds = vec![Vec::new(); teachers.len()];
    let mut scores = vec![Vec::new(); teachers.len()];
    for _ in 0..reps {
        for (i, (_, teacher)) in teachers.iter_mut().enumerate() {
            let start = Instant::now();
            scores[i] = teacher.score(&pairs)?;
            seconds[i].push(start.elapsed().as_secs_f64());
        }
    }
    let n = pairs.len() as f64;
    let mut report = json!({
        "n_pairs": pairs.len(),
        "batch_size": batch_size,
        "max_length": max_length,
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "onnxruntime_library": library.display().to_string(),
    });
    for (i, (name, _)) in teachers.iter().enumerate() {
        let mut sorted = seconds[i].clone();
        sorted.sort_by(f64::total_cmp);
        report[*name] = json!({
            "median_pairs_per_s": n / sorted[sorted.len() / 2],
            "best_pairs_per_s": n / sorted[0],
        });
    }
    let as_f64 = |s: &[f32]| s.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    report["ort_f32_vs_candle_max_abs_logit_diff"] = json!(max_abs_diff(&scores[0], &scores[2]));
    report["int8_vs_f32_max_abs_logit_diff"] = json!(max_abs_diff(&scores[1], &scores[0]));
    report["int8_vs_f32_spearman"] = json!(spearman(&as_f64(&scores[1]), &as_f64(&scores[0]))?);
    report["logits"] = json!({
        "ort_teacher_f32": scores[0],
        "ort_teacher_int8": scores[1],
        "candle_teacher": scores[2],
    });
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
