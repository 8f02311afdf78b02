//! Is reduced precision worth it on this CPU? candle's f32, bf16 and f16 matrix products and
//! element-wise ops at MiniLM-L6 shapes, and optionally `predict` of a model directory in each
//! precision, in one run. The figures behind the CPU refusal of `--dtype`, `[teacher] dtype`
//! and `[train] precision` (README, Precision and devices).
//!
//!   cargo run --release --example precision_cpu_bench [MODEL_DIR PAIRS.jsonl]
//!
//! PAIRS.jsonl: rows with `query` and `passage`, scored in batches of 64.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use crossdistill::model::{CrossEncoder, LoadOptions, Precision};

fn seconds(reps: usize, mut run: impl FnMut()) -> f64 {
    run();
    let start = Instant::now();
    for _ in 0..reps {
        run();
    }
    start.elapsed().as_secs_f64() / reps as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::Cpu;
    let dtypes = [DType::F32, DType::BF16, DType::F16];
    // tokens × hidden · hidden × out: the FFN, a projection, a short batch's projection.
    for (m, k, n) in [
        (8192usize, 384usize, 1536usize),
        (8192, 384, 384),
        (1024, 384, 384),
    ] {
        let a = Tensor::randn(0f32, 1.0, (m, k), &device)?;
        let b = Tensor::randn(0f32, 1.0, (n, k), &device)?;
        for dtype in dtypes {
            let (a, b) = (a.to_dtype(dtype)?, b.to_dtype(dtype)?.t()?);
            let s = seconds(5, || {
                a.matmul(&b).expect("matmul");
            });
            let gflops = 2.0 * (m * k * n) as f64 / s / 1e9;
            println!(
                "matmul {m}x{k}·{k}x{n} {dtype:?}: {:.2} ms, {gflops:.1} GFLOP/s",
                s * 1e3
            );
        }
    }
    let xs = Tensor::randn(0f32, 1.0, (8192, 1536), &device)?;
    for dtype in dtypes {
        let xs = xs.to_dtype(dtype)?;
        let s = seconds(5, || {
            xs.gelu_erf().and_then(|g| g.add(&xs)).expect("gelu");
        });
        println!("gelu+add 8192x1536 {dtype:?}: {:.1} ms", s * 1e3);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [model, pairs] = args.as_slice() {
        let rows: Vec<(String, String)> = std::fs::read_to_string(pairs)?
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let row: serde_json::Value = serde_json::from_str(line).expect("a JSON row");
                let text = |key: &str| row[key].as_str().expect("a string").to_string();
                (text("query"), text("passage"))
            })
            .collect();
        let pairs: Vec<(&str, &str)> = rows.iter().map(|(q, p)| (q.as_str(), p.as_str())).collect();
        for precision in [Precision::F32, Precision::Bf16, Precision::F16] {
            let options = LoadOptions {
                dtype: precision,
                ..LoadOptions::default()
            };
            let model = CrossEncoder::load(model, None, &options)?;
            let start = Instant::now();
            model.predict_logits(&pairs, 64, &mut |_| {})?;
            println!(
                "predict {} pairs {precision}: {:.2} s",
                pairs.len(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
