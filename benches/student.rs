//! Student benchmarks on a real encoder (all-MiniLM-L6-v2 with a fresh head), against the peer
//! numbers measured in the same run by `bench/student.sh`.
//!
//!   cargo bench --bench student -- predict MODEL_DIR PAIRS.jsonl   # pairs/s of predict (batch 32, max_length 128, length-sorted)
//!   cargo bench --bench student -- train MODEL_DIR PAIRS.jsonl     # pairs/s of forward+backward+AdamW (batch 16, fixed length 128)
//!
//! Prints one JSON line with the figures.

use std::time::Instant;

use candle_core::{Device, Tensor};
use crossdistill::model::{CrossEncoder, Dropout, LoadOptions, ScoreActivation};
use crossdistill::tokenize::{EncodedPair, PairTokenizer};
use crossdistill::train::{AdamW, AdamWConfig, Gradients};

fn read_pairs(path: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .expect("pairs file")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            (
                v["query"].as_str().unwrap().to_string(),
                v["passage"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn main() {
    // The binary's process settings, so this measures what `crossdistill train` runs.
    crossdistill::process::tune();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (mode, model_dir, pairs_path) = match args.as_slice() {
        [mode, model, pairs, ..] => (mode.as_str(), model.as_str(), pairs.as_str()),
        _ => {
            eprintln!("usage: student (predict|train) MODEL_DIR PAIRS.jsonl");
            std::process::exit(2);
        }
    };
    let options = LoadOptions {
        max_length: Some(128),
        num_labels: Some(1),
        seed: 0,
        ..LoadOptions::default()
    };
    let model = CrossEncoder::load(model_dir, None, &options).expect("model loads");
    let pairs = read_pairs(pairs_path);
    match mode {
        "predict" => {
            let warm: Vec<_> = pairs.iter().take(64).cloned().collect();
            model.predict(&warm, 32, ScoreActivation::Sigmoid).unwrap();
            let started = Instant::now();
            model.predict(&pairs, 32, ScoreActivation::Sigmoid).unwrap();
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({"mode": "predict", "pairs": pairs.len(), "seconds": seconds, "pairs_per_s": pairs.len() as f64 / seconds})
            );
        }
        "train" => {
            let (batch_size, steps) = (16usize, 6usize);
            let vars = model.vars().to_vec();
            let mut optimizer = AdamW::new(model.params(), AdamWConfig::default());
            // The trainer's step: persistent gradient buffers, zeroed and filled each step,
            // one norm (also the non-finite check), clip, AdamW.
            let mut grads = Gradients::zeros(&vars);
            let tokenizer: &PairTokenizer = model.tokenizer();
            let mut forward_s = 0.0;
            let mut backward_s = 0.0;
            let mut optim_s = 0.0;
            let mut step = |index: usize,
                            timed: bool,
                            forward_s: &mut f64,
                            backward_s: &mut f64,
                            optim_s: &mut f64| {
                let batch = &pairs[index * batch_size..(index + 1) * batch_size];
                // Fixed length 128 (padding="max_length"), as the PyTorch peer does.
                let mut encoded: Vec<EncodedPair> = tokenizer.encode_pairs(batch).unwrap();
                for e in &mut encoded {
                    while e.input_ids.len() < 128 {
                        e.input_ids.push(tokenizer.pad_id());
                        e.type_ids.push(0);
                    }
                }
                let refs: Vec<&EncodedPair> = encoded.iter().collect();
                let t0 = Instant::now();
                let mut dropout = Dropout::new(index as u64);
                let logits = model
                    .forward_encoded(&refs, Some(&mut dropout))
                    .unwrap()
                    .squeeze(1)
                    .unwrap();
                let labels = Tensor::from_vec(
                    (0..batch_size).map(|i| (i % 2) as f32).collect::<Vec<_>>(),
                    batch_size,
                    &Device::Cpu,
                )
                .unwrap();
                let loss =
                    crossdistill::loss::binary_cross_entropy(&logits, &labels, &Default::default())
                        .unwrap();
                let t1 = Instant::now();
                let store = loss.backward().unwrap();
                grads.zero();
                grads.add(&vars, &store, 1.0).unwrap();
                drop(store);
                let t2 = Instant::now();
                let norm = grads.norm();
                assert!(norm.is_finite(), "non-finite gradient norm {norm}");
                grads.clip_to(norm, 1.0);
                optimizer.step(&vars, &grads, 2e-5).unwrap();
                let t3 = Instant::now();
                if timed {
                    *forward_s += (t1 - t0).as_secs_f64();
                    *backward_s += (t2 - t1).as_secs_f64();
                    *optim_s += (t3 - t2).as_secs_f64();
                }
            };
            step(0, false, &mut forward_s, &mut backward_s, &mut optim_s);
            let started = Instant::now();
            for s in 0..steps {
                step(s, true, &mut forward_s, &mut backward_s, &mut optim_s);
            }
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({
                    "mode": "train", "steps": steps, "batch_size": batch_size, "seconds": seconds,
                    "pairs_per_s": (steps * batch_size) as f64 / seconds,
                    "forward_s_per_step": forward_s / steps as f64, "backward_s_per_step": backward_s / steps as f64,
                    "optimizer_s_per_step": optim_s / steps as f64,
                })
            );
        }
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    }
}
