//! Producer memory while streaming a large dataset: RSS stays flat however many rows pass
//! through the bounded channel.
//!
//!   cargo bench --bench pipeline -- [ROWS]      # default 2,000,000 generated rows
//!
//! Prints one JSON line: rows, batches, seconds, RSS at start / after 10% / max / end (MiB).

use std::io::Write;
use std::time::Instant;

use crossdistill::data::DataSource;
use crossdistill::error::Result;
use crossdistill::pipeline::{DataPosition, Producer, ProducerConfig};
use crossdistill::teacher::Teacher;

/// A teacher that costs nothing, so the benchmark measures the pipeline.
struct LengthTeacher;

impl Teacher for LengthTeacher {
    fn score(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        Ok(pairs
            .iter()
            .map(|(q, p)| (q.len() + p.len()) as f32)
            .collect())
    }
    fn fingerprint(&self) -> String {
        "length".into()
    }
    fn describe(&self) -> String {
        "length teacher".into()
    }
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let rows: usize = std::env::args()
        .skip(1)
        .find(|a| a != "--bench")
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.jsonl");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        for i in 0..rows {
            writeln!(file, "{{\"query\": \"query number {i} about something\", \"passage\": \"passage {i}: a document with some words in it, long enough to look real\"}}").expect("write");
        }
    }
    let config = ProducerConfig {
        source: DataSource::new("big.jsonl", dir.path()),
        max_rows: None,
        epochs: 1,
        start: DataPosition::default(),
        batch_size: 32,
        shuffle: true,
        shuffle_buffer: 10_000,
        seed: 1,
        no_duplicates: false,
        teacher_pairs: 64,
        capacity: 4,
        columns: None,
        held_out: Vec::new(),
        teacher_labels: true,
    };
    let start_rss = rss_mib();
    let started = Instant::now();
    let mut producer = Producer::spawn(config, Some(Box::new(LengthTeacher))).expect("spawn");
    let (mut batches, mut max_rss, mut early_rss) = (0usize, start_rss, 0.0);
    let total_batches = rows.div_ceil(32);
    while let Some(batch) = producer.next_batch() {
        batch.expect("batch");
        batches += 1;
        if batches % 2000 == 0 {
            max_rss = max_rss.max(rss_mib());
        }
        if batches == total_batches / 10 {
            early_rss = rss_mib();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"rows": rows, "batches": batches, "seconds": seconds, "rows_per_s": rows as f64 / seconds,
            "rss_start_mib": start_rss, "rss_after_10pct_mib": early_rss, "rss_max_mib": max_rss, "rss_end_mib": rss_mib()})
    );
}
