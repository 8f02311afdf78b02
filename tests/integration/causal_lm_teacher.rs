//! Causal-LM rerankers (Qwen3, Qwen2 in sentence-transformers 6's `LogitScore` layout) as
//! teachers: prompts and scores against sentence-transformers 6.3 (the fixtures'
//! `expected.jsonl`, written by tests/fixtures/make_llm_rerankers.py with
//! `CrossEncoder.predict(activation_fn=Identity)`, batch 5, left padding, 5 and 2 of 12 pairs
//! longer than max_length 88), through the library and `crossdistill predict`, and a distillation
//! run with the LLM teacher on the producer thread and the score cache on.

use std::path::Path;

use candle_core::Device;
use crossdistill::cache::ScoreCache;
use crossdistill::model::{LoadOptions, ModelFiles, ScoreActivation};
use crossdistill::teacher::{
    is_causal_lm_reranker, load_candle_teacher, load_pair_scorer, CandleTeacher, CausalLmReranker,
    Teacher,
};
use serde_json::Value;

use crate::common::{crossdistill, expected_rows, fixture, max_abs_diff, stderr};

const FIXTURES: [&str; 2] = ["tiny-qwen3-reranker", "tiny-qwen2-reranker"];

fn load(name: &str) -> CausalLmReranker {
    let files = ModelFiles::locate(fixture(name).to_str().unwrap(), None).unwrap();
    CausalLmReranker::load(files, None, &Device::Cpu).unwrap()
}

/// The reranker as a candle teacher, loaded the way `[teacher] kind = "candle"` loads it.
fn teacher(
    path: &Path,
    max_length: Option<usize>,
    batch_size: usize,
    activation: Option<ScoreActivation>,
) -> CandleTeacher {
    let options = LoadOptions {
        max_length,
        ..LoadOptions::default()
    };
    load_candle_teacher(
        path.to_str().unwrap(),
        None,
        &options,
        batch_size,
        activation,
    )
    .unwrap()
}

fn pairs(rows: &[Value]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["query"].as_str().unwrap().to_string(),
                r["passage"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn expected_scores(rows: &[Value]) -> Vec<f32> {
    rows.iter()
        .map(|r| r["score"].as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn prompts_match_sentence_transformers_token_for_token() {
    for name in FIXTURES {
        assert!(is_causal_lm_reranker(&fixture(name).join("config.json")));
        let teacher = load(name);
        let rows = expected_rows(name);
        let mut truncated = 0;
        for row in &rows {
            let ids = teacher
                .encode(
                    row["query"].as_str().unwrap(),
                    row["passage"].as_str().unwrap(),
                )
                .unwrap();
            let expected: Vec<u32> = row["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(ids, expected, "{name}: {}", row["query"]);
            if row["truncated"].as_bool().unwrap() {
                truncated += 1;
                // The template's closing suffix survives truncation.
                let suffix = teacher.prompter().suffix();
                assert!(!suffix.is_empty() && ids.ends_with(suffix), "{name}");
                assert_eq!(ids.len(), 88);
            }
        }
        assert!(truncated >= 2, "{name}: the fixture truncates some pairs");
    }
    // A sequence-classification cross-encoder is not a causal LM.
    assert!(!is_causal_lm_reranker(
        &fixture("tiny-bert-ce").join("config.json")
    ));
}

#[test]
fn scores_match_sentence_transformers_batched_and_alone() {
    for name in FIXTURES {
        let rows = expected_rows(name);
        let pairs = pairs(&rows);
        let expected = expected_scores(&rows);
        let spread = expected.iter().cloned().fold(f32::MIN, f32::max)
            - expected.iter().cloned().fold(f32::MAX, f32::min);
        assert!(
            spread > 0.5,
            "{name}: the reference scores differ enough to check"
        );
        let borrowed: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(q, p)| (q.as_str(), p.as_str()))
            .collect();
        let reranker = load(name);
        for batch_size in [1, 5, 12] {
            let scores = reranker
                .predict_scores(&borrowed, batch_size, &mut |_| {})
                .unwrap();
            let gap = max_abs_diff(&scores, &expected);
            assert!(gap < 1e-4, "{name}, batch {batch_size}: max |diff| {gap}");
        }
        // As a PairScorer, chosen by load_pair_scorer from config.json like every architecture.
        let scorer = load_pair_scorer(
            fixture(name).to_str().unwrap(),
            None,
            &LoadOptions::default(),
        )
        .unwrap();
        assert_eq!(scorer.num_labels(), 1);
        assert_eq!(scorer.max_length(), 88);
        let logits: Vec<f32> = scorer
            .predict_logits(&borrowed, 5, &mut |_| {})
            .unwrap()
            .into_iter()
            .map(|row| row[0])
            .collect();
        assert!(max_abs_diff(&logits, &expected) < 1e-4, "{name}");
        // Through the Teacher trait, with the model's default activation (sigmoid).
        let mut teacher = teacher(&fixture(name), None, 5, None);
        let scored = teacher.score(&borrowed).unwrap();
        let sigmoid: Vec<f32> = expected.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect();
        assert!(max_abs_diff(&scored, &sigmoid) < 1e-5, "{name}");
    }
}

#[test]
fn fingerprint_covers_template_and_tokens() {
    let qwen3 = teacher(&fixture("tiny-qwen3-reranker"), None, 4, None);
    let qwen2 = teacher(&fixture("tiny-qwen2-reranker"), None, 4, None);
    for fingerprint in [qwen3.fingerprint(), qwen2.fingerprint()] {
        for part in [
            "arch=",
            "config=",
            "weights=",
            "tokenizer=",
            "template=",
            "tokens=",
            "max_length=88",
        ] {
            assert!(fingerprint.contains(part), "{fingerprint}");
        }
    }
    assert!(qwen3.fingerprint().contains("arch=qwen3|"));
    assert!(qwen2.fingerprint().contains("arch=qwen2|"));
    assert!(qwen2.fingerprint().contains("tokens=") && qwen2.fingerprint().contains("/None"));
    // Another template is another teacher, even with the same weights and tokenizer.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("model");
    copy_dir(&fixture("tiny-qwen3-reranker"), &copy);
    let template = copy.join("chat_template.jinja");
    let text = std::fs::read_to_string(&template).unwrap();
    std::fs::write(&template, text.replace("Judge whether", "Decide whether")).unwrap();
    let changed = teacher(&copy, None, 4, None);
    assert_ne!(changed.fingerprint(), qwen3.fingerprint());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn predict_cli_scores_causal_lm_rerankers_like_sentence_transformers() {
    for name in FIXTURES {
        let rows = expected_rows(name);
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input.jsonl");
        let lines: Vec<String> = pairs(&rows)
            .iter()
            .map(|(q, p)| serde_json::json!({ "query": q, "passage": p }).to_string())
            .collect();
        std::fs::write(&input, lines.join("\n") + "\n").unwrap();
        let output = dir.path().join("scored.jsonl");
        let model = fixture(name);
        let result = crossdistill(&[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--activation",
            "identity",
            "--batch-size",
            "5",
        ]);
        assert!(result.status.success(), "{name}: {}", stderr(&result));
        let scored: Vec<f32> = std::fs::read_to_string(&output)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["score"]
                    .as_f64()
                    .unwrap() as f32
            })
            .collect();
        let gap = max_abs_diff(&scored, &expected_scores(&rows));
        assert!(gap < 1e-4, "{name}: max |diff| {gap}");
    }
}

#[test]
fn distills_a_causal_lm_teacher_into_a_bert_student_with_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::write_scored_pairs(dir.path(), 24, 8);
    let recipe = format!(
        r#"version = 1
[run]
output_dir = "run"
seed = 7
[teacher]
kind = "candle"
model = "{teacher}"
batch_size = 8
max_length = 80
[cache]
dir = "cache"
[student]
model = "{student}"
max_length = 32
[data.train]
path = "train.jsonl"
columns = ["query", "passage"]
[[loss]]
kind = "mse"
labels = "teacher"
[train]
batch_size = 8
max_steps = 3
learning_rate = 5e-3
log_every = 1
save_every = 100
"#,
        teacher = fixture("tiny-qwen3-reranker").display(),
        student = fixture("tiny-bert-ce").display(),
    );
    let path = dir.path().join("recipe.toml");
    std::fs::write(&path, recipe).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_crossdistill"))
        .args(["train", path.to_str().unwrap()])
        .current_dir(dir.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dir.path().join("run/final/model.safetensors").is_file());
    let metrics = std::fs::read_to_string(dir.path().join("run/metrics.jsonl")).unwrap();
    let losses: Vec<f64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|row| row.get("loss").and_then(Value::as_f64))
        .collect();
    assert_eq!(losses.len(), 3, "{metrics}");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");

    // The cache holds the LLM teacher's scores (the recipe's identity activation) under its
    // fingerprint, and they are what the library computes for the same pairs.
    let teacher = teacher(
        &fixture("tiny-qwen3-reranker"),
        Some(80),
        8,
        Some(ScoreActivation::Identity),
    );
    let cache = ScoreCache::open_existing(&dir.path().join("cache")).unwrap();
    let mut cached = Vec::new();
    cache
        .for_each(None, |e| {
            cached.push((
                e.teacher.to_string(),
                e.query.to_string(),
                e.passage.to_string(),
                e.score,
            ));
            Ok(())
        })
        .unwrap();
    assert_eq!(cached.len(), 24, "one score per training pair");
    let pairs: Vec<(&str, &str)> = cached
        .iter()
        .map(|c| (c.1.as_str(), c.2.as_str()))
        .collect();
    let direct = teacher
        .model()
        .predict(&pairs, 8, ScoreActivation::Identity)
        .unwrap();
    for (entry, score) in cached.iter().zip(direct) {
        assert_eq!(entry.0, teacher.fingerprint());
        assert!((entry.3 - score).abs() < 1e-4, "{} vs {score}", entry.3);
    }
}

#[test]
fn rank_eval_and_mine_take_a_causal_lm_reranker() {
    let name = "tiny-qwen3-reranker";
    let model = fixture(name);
    let model = model.to_str().unwrap();
    let rows = expected_rows(name);
    let pairs = pairs(&rows);
    let expected = expected_scores(&rows);
    let dir = tempfile::tempdir().unwrap();

    // rank: every fixture passage against the first query; the fixture's own passage gets the
    // score sentence-transformers gave it (sigmoid, the model's default), the rest what the
    // library gives, best first.
    let documents = dir.path().join("documents.txt");
    // One document per line (an empty line is no document: the fixture's empty passage is left out).
    let passages: Vec<String> = pairs
        .iter()
        .map(|(_, p)| p.replace('\n', " "))
        .filter(|p| !p.trim().is_empty())
        .collect();
    assert_eq!(passages.len(), pairs.len() - 1);
    std::fs::write(&documents, passages.join("\n") + "\n").unwrap();
    let run = crossdistill(&[
        "rank",
        "--model",
        model,
        "--query",
        &pairs[0].0,
        "--documents",
        documents.to_str().unwrap(),
        "--batch-size",
        "5",
        "--json",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let ranked: Vec<Value> = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(ranked.len(), passages.len());
    let scores: Vec<f64> = ranked
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let first = ranked.iter().find(|r| r["corpus_id"] == 0).unwrap();
    let sigmoid = 1.0 / (1.0 + (-expected[0] as f64).exp());
    assert!((first["score"].as_f64().unwrap() - sigmoid).abs() < 1e-5);
    let reranker = load(name);
    let borrowed: Vec<(&str, &str)> = passages
        .iter()
        .map(|p| (pairs[0].0.as_str(), p.as_str()))
        .collect();
    let library = reranker.predict_scores(&borrowed, 5, &mut |_| {}).unwrap();
    for row in &ranked {
        let id = row["corpus_id"].as_u64().unwrap() as usize;
        let want = 1.0 / (1.0 + (-library[id] as f64).exp());
        assert!(
            (row["score"].as_f64().unwrap() - want).abs() < 1e-5,
            "{row}"
        );
    }

    // eval: gold labels equal to sentence-transformers' scores correlate perfectly with what
    // the reranker scores (Spearman 1 needs every pair in the right order).
    let sts = dir.path().join("sts.jsonl");
    let lines: Vec<String> = pairs
        .iter()
        .zip(&expected)
        .map(|((q, p), s)| {
            serde_json::json!({"sentence1": q, "sentence2": p, "score": s}).to_string()
        })
        .collect();
    std::fs::write(&sts, lines.join("\n") + "\n").unwrap();
    let run = crossdistill(&[
        "eval",
        "--model",
        model,
        "--correlation",
        sts.to_str().unwrap(),
        "--json",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let output: Value = serde_json::from_slice(&run.stdout).unwrap();
    let spearman = output["correlation"]["spearman"].as_f64().unwrap();
    assert!((spearman - 1.0).abs() < 1e-12, "{output}");

    // mine --teacher: the LLM rescores the mined candidates (BERT fixture as the embedder).
    let input = dir.path().join("pairs.jsonl");
    let corpus = dir.path().join("corpus.jsonl");
    let pair_lines: Vec<String> = pairs
        .iter()
        .take(4)
        .map(|(q, p)| serde_json::json!({"query": q, "answer": p}).to_string())
        .collect();
    std::fs::write(&input, pair_lines.join("\n") + "\n").unwrap();
    let corpus_lines: Vec<String> = pairs
        .iter()
        .enumerate()
        .skip(4)
        .map(|(i, (_, p))| serde_json::json!({"_id": i.to_string(), "text": p}).to_string())
        .collect();
    std::fs::write(&corpus, corpus_lines.join("\n") + "\n").unwrap();
    let mined = dir.path().join("mined.jsonl");
    let embedder = fixture("tiny-bert-ce");
    let run = crossdistill(&[
        "mine",
        "--model",
        embedder.to_str().unwrap(),
        "--teacher",
        model,
        "--max-score",
        "1.0",
        "--input",
        input.to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
        "--output",
        mined.to_str().unwrap(),
        "--output-format",
        "n-tuple",
        "--num-negatives",
        "2",
        "--output-scores",
        "--no-cache",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stderr(&run).contains("rescoring"), "{}", stderr(&run));
    let mined: Vec<Value> = std::fs::read_to_string(&mined)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(mined.len(), 4);
    for (row, ((query, _), logit)) in mined.iter().zip(pairs.iter().zip(&expected)) {
        assert_eq!(row["query"].as_str().unwrap(), query);
        let scores: Vec<f64> = row["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect();
        assert_eq!(scores.len(), 3, "{row}");
        // The positive's score is sentence-transformers' (sigmoid) score of the fixture pair.
        let sigmoid = 1.0 / (1.0 + (-*logit as f64).exp());
        assert!(
            (scores[0] - sigmoid).abs() < 1e-5,
            "{scores:?} vs {sigmoid}"
        );
        assert!(scores[1] >= scores[2], "{scores:?}");
    }
}
