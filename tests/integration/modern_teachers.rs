//! ModernBERT, DeBERTa-v3 and ELECTRA cross-encoders as teachers, against sentence-transformers
//! (tests/fixtures/tiny-{modernbert-cls,modernbert-mean,deberta-v3,electra}-ce/expected.jsonl
//! `logit`: `CrossEncoder.predict(activation_fn=Identity(), batch_size=4)`, made by
//! tests/fixtures/make_modern_teachers.py): through the library, `crossdistill predict`, the ONNX
//! teacher on the exports, teacher ensembles that mix architectures, and a distillation run per
//! architecture with the score cache on.

use crossdistill::model::{LoadOptions, ScoreActivation};
use crossdistill::teacher::{
    load_candle_teacher, load_pair_scorer, Ensemble, OnnxTeacher, Teacher,
};
use crossdistill::tokenize::PairTokenizer;

use crate::common::{crossdistill, expected_rows, fixture, max_abs_diff, stderr};

/// (fixture, model_type)
const MODELS: [(&str, &str); 4] = [
    ("tiny-modernbert-cls-ce", "modernbert"),
    ("tiny-modernbert-mean-ce", "modernbert"),
    ("tiny-deberta-v3-ce", "deberta-v2"),
    ("tiny-electra-ce", "electra"),
];

/// DeBERTa settings the v3 fixture does not have (see make_modern_teachers.py):
/// tiny-deberta-v2-ce: exact relative positions clamped at 12, `pos_att_type` "c2p|p2c",
/// separate position projections, absolute positions, token types, `embed_proj`;
/// tiny-deberta-c2p-ce: c2p only with a separate `pos_key_proj`, log buckets, ReLU.
const DEBERTA_VARIANTS: [&str; 2] = ["tiny-deberta-v2-ce", "tiny-deberta-c2p-ce"];

/// Pairs of a fixture's expected.jsonl and sentence-transformers' logits for them.
fn reference(name: &str) -> (Vec<(String, String)>, Vec<f32>) {
    let rows = expected_rows(name);
    let pairs = rows
        .iter()
        .map(|r| {
            (
                r["query"].as_str().unwrap().to_string(),
                r["passage"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let logits = rows
        .iter()
        .map(|r| r["logit"].as_f64().unwrap() as f32)
        .collect();
    (pairs, logits)
}

fn as_refs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect()
}

#[test]
fn candle_teachers_match_sentence_transformers() {
    for (name, model_type) in MODELS {
        let (pairs, want) = reference(name);
        let pairs = as_refs(&pairs);
        let model = load_pair_scorer(
            fixture(name).to_str().unwrap(),
            None,
            &LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.model_type(), model_type);
        assert_eq!(
            model.max_length(),
            32,
            "{name}: tokenizer_config model_max_length"
        );
        assert_eq!(model.num_labels(), 1);
        assert_eq!(model.default_activation(), ScoreActivation::Sigmoid);
        // One pair at a time, the reference's batches of 4, and one padded batch of all.
        for batch_size in [1, 4, pairs.len()] {
            let logits: Vec<f32> = model
                .predict_logits(&pairs, batch_size, &mut |_| {})
                .unwrap()
                .into_iter()
                .map(|row| row[0])
                .collect();
            let diff = max_abs_diff(&logits, &want);
            eprintln!(
                "{name} batch {batch_size}: max |Δlogit| vs sentence-transformers {diff:.2e}"
            );
            assert!(diff <= 1e-4, "{name} batch {batch_size}: |Δ| = {diff}");
        }
    }
}

#[test]
fn deberta_variants_match_sentence_transformers() {
    for name in DEBERTA_VARIANTS {
        let (pairs, want) = reference(name);
        let pairs = as_refs(&pairs);
        let model = load_pair_scorer(
            fixture(name).to_str().unwrap(),
            None,
            &LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.model_type(), "deberta-v2");
        for batch_size in [1, 4, pairs.len()] {
            let logits: Vec<f32> = model
                .predict_logits(&pairs, batch_size, &mut |_| {})
                .unwrap()
                .into_iter()
                .map(|row| row[0])
                .collect();
            let diff = max_abs_diff(&logits, &want);
            eprintln!(
                "{name} batch {batch_size}: max |Δlogit| vs sentence-transformers {diff:.2e}"
            );
            assert!(diff <= 1e-4, "{name} batch {batch_size}: |Δ| = {diff}");
        }
    }
}

#[test]
fn pair_tokenisation_matches_sentence_transformers_ids() {
    for (name, _) in MODELS {
        let rows = expected_rows(name);
        let tokenizer =
            PairTokenizer::from_file(&fixture(name).join("tokenizer.json"), 32, 0).unwrap();
        let pairs: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r["query"].as_str().unwrap(), r["passage"].as_str().unwrap()))
            .collect();
        let encoded = tokenizer.encode_pairs(&pairs).unwrap();
        let mut truncated = 0;
        for (pair, row) in encoded.iter().zip(&rows) {
            let want: Vec<u32> = row["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(pair.input_ids, want, "{name}: {:?}", row["query"]);
            truncated += usize::from(pair.input_ids.len() == 32);
        }
        assert!(truncated >= 2, "{name}: the fixture truncates pairs");
    }
}

#[test]
fn the_sliding_window_and_the_rope_thetas_change_modernbert_scores() {
    // What 1e-4 catches: the same weights with every layer global (a window as long as the
    // inputs), or with the two rope thetas swapped, give other logits.
    let (pairs, want) = reference("tiny-modernbert-cls-ce");
    let pairs = as_refs(&pairs);
    let edits: [ConfigEdit; 2] = [
        ("window 64", |c| c["local_attention"] = 64.into()),
        ("thetas swapped", |c| {
            c["rope_parameters"]["full_attention"]["rope_theta"] = 10000.0.into();
            c["rope_parameters"]["sliding_attention"]["rope_theta"] = 160000.0.into();
        }),
    ];
    for (what, edit) in edits {
        let logits = logits_with_edited_config("tiny-modernbert-cls-ce", edit, &pairs);
        let diff = max_abs_diff(&logits, &want);
        assert!(diff > 1e-3, "{what}: |Δ| = {diff} should be far above 1e-4");
    }
}

type ConfigEdit = (&'static str, fn(&mut serde_json::Value));

/// Logits of a copy of fixture `name` whose config.json went through `edit`.
fn logits_with_edited_config(
    name: &str,
    edit: fn(&mut serde_json::Value),
    pairs: &[(&str, &str)],
) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let config_path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let model =
        load_pair_scorer(dir.path().to_str().unwrap(), None, &LoadOptions::default()).unwrap();
    model
        .predict_logits(pairs, 4, &mut |_| {})
        .unwrap()
        .into_iter()
        .map(|row| row[0])
        .collect()
}

#[test]
fn deberta_relative_attention_settings_change_the_scores() {
    // What 1e-4 catches: the same weights without the p2c term, without relative attention, or
    // with other log buckets (max_relative_positions 10 instead of max_position_embeddings 64)
    // give other logits.
    let (pairs, want) = reference("tiny-deberta-v3-ce");
    let pairs = as_refs(&pairs);
    let edits: [ConfigEdit; 3] = [
        ("c2p only", |c| {
            c["pos_att_type"] = serde_json::json!(["c2p"])
        }),
        ("no relative attention", |c| {
            c["relative_attention"] = false.into()
        }),
        ("max_relative_positions 10", |c| {
            c["max_relative_positions"] = 10.into()
        }),
    ];
    for (what, edit) in edits {
        let logits = logits_with_edited_config("tiny-deberta-v3-ce", edit, &pairs);
        let diff = max_abs_diff(&logits, &want);
        assert!(diff > 1e-3, "{what}: |Δ| = {diff} should be far above 1e-4");
    }
}

#[test]
fn predict_cli_matches_sentence_transformers() {
    for (name, _) in MODELS {
        let (pairs, want) = reference(name);
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input.jsonl");
        let lines: Vec<String> = pairs
            .iter()
            .enumerate()
            .map(|(i, (q, p))| serde_json::json!({"id": i, "query": q, "passage": p}).to_string())
            .collect();
        std::fs::write(&input, lines.join("\n") + "\n").unwrap();
        let output = dir.path().join("scored.jsonl");
        let run = crossdistill(&[
            "predict",
            "--model",
            fixture(name).to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--activation",
            "identity",
            "--batch-size",
            "3",
        ]);
        assert!(run.status.success(), "{name}: {}", stderr(&run));
        let rows: Vec<serde_json::Value> = std::fs::read_to_string(&output)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), want.len());
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row["id"], i, "{name}: input order kept");
        }
        let ours: Vec<f32> = rows
            .iter()
            .map(|r| r["score"].as_f64().unwrap() as f32)
            .collect();
        let diff = max_abs_diff(&ours, &want);
        assert!(diff <= 1e-4, "{name}: predict |Δ| = {diff}");
    }
}

#[test]
fn rank_cli_orders_documents_with_each_new_architecture() {
    for (name, _) in MODELS {
        let (pairs, _) = reference(name);
        let model = load_pair_scorer(
            fixture(name).to_str().unwrap(),
            None,
            &LoadOptions::default(),
        )
        .unwrap();
        let query = pairs[1].0.as_str();
        let docs: Vec<&str> = pairs.iter().map(|(_, d)| d.as_str()).collect();
        let doc_pairs: Vec<(&str, &str)> = docs.iter().map(|d| (query, *d)).collect();
        let scores = model
            .predict(&doc_pairs, 8, ScoreActivation::Sigmoid)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let documents = dir.path().join("docs.jsonl");
        let lines: Vec<String> = docs
            .iter()
            .map(|d| serde_json::json!(d).to_string())
            .collect();
        std::fs::write(&documents, lines.join("\n") + "\n").unwrap();
        let run = crossdistill(&[
            "rank",
            "--model",
            fixture(name).to_str().unwrap(),
            "--query",
            query,
            "--documents",
            documents.to_str().unwrap(),
            "--json",
        ]);
        assert!(run.status.success(), "{name}: {}", stderr(&run));
        let ranked: Vec<serde_json::Value> = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(ranked.len(), docs.len());
        let best = scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap();
        assert_eq!(ranked[0]["corpus_id"], best, "{name}");
        let top = ranked[0]["score"].as_f64().unwrap() as f32;
        assert!(
            (top - scores[best]).abs() <= 1e-5,
            "{name}: {top} vs {}",
            scores[best]
        );
    }
}

#[test]
fn eval_cli_scores_with_each_new_architecture() {
    // One query, its positive and three negatives: MRR@10 is 1 / the positive's rank under the
    // library's scores.
    for (name, _) in MODELS {
        let (pairs, _) = reference(name);
        let query = pairs[5].0.as_str();
        let docs: Vec<&str> = [5, 0, 9, 3].iter().map(|&i| pairs[i].1.as_str()).collect();
        let model = load_pair_scorer(
            fixture(name).to_str().unwrap(),
            None,
            &LoadOptions::default(),
        )
        .unwrap();
        let doc_pairs: Vec<(&str, &str)> = docs.iter().map(|d| (query, *d)).collect();
        let scores = model
            .predict(&doc_pairs, 4, ScoreActivation::Sigmoid)
            .unwrap();
        let rank = 1 + scores[1..].iter().filter(|s| **s > scores[0]).count();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dev.jsonl");
        let row =
            serde_json::json!({"query": query, "positive": [docs[0]], "negative": &docs[1..]});
        std::fs::write(&file, row.to_string() + "\n").unwrap();
        let run = crossdistill(&[
            "eval",
            "--model",
            fixture(name).to_str().unwrap(),
            "--reranking",
            file.to_str().unwrap(),
            "--json",
        ]);
        assert!(run.status.success(), "{name}: {}", stderr(&run));
        let metrics: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        let mrr = metrics["reranking"]["mrr@10"].as_f64().unwrap();
        assert!((mrr - 1.0 / rank as f64).abs() < 1e-9, "{name}: {metrics}");
    }
}

#[test]
fn onnx_teacher_matches_sentence_transformers_on_the_exports() {
    let names = MODELS.iter().map(|(name, _)| *name).chain(DEBERTA_VARIANTS);
    for name in names {
        let (pairs, want) = reference(name);
        let pairs = as_refs(&pairs);
        let mut teacher = OnnxTeacher::new(
            fixture(name).to_str().unwrap(),
            "model.onnx",
            None,
            4,
            Some(ScoreActivation::Identity),
            Some(1),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let signature = teacher.signature();
        assert_eq!(
            signature.token_type_ids,
            name == "tiny-electra-ce" || name == "tiny-deberta-v2-ce",
            "{name}"
        );
        assert_eq!(
            signature.position_ids,
            name == "tiny-modernbert-mean-ce",
            "{name}"
        );
        let scores = teacher.score(&pairs).unwrap();
        let diff = max_abs_diff(&scores, &want);
        eprintln!("{name}: ONNX teacher max |Δlogit| vs sentence-transformers {diff:.2e}");
        assert!(diff <= 1e-4, "{name}: onnx |Δ| = {diff}");
    }
}

#[test]
fn ensembles_mix_architectures_and_fingerprints_name_them() {
    let (pairs, _) = reference("tiny-deberta-v3-ce");
    let pairs = as_refs(&pairs);
    let load = |name: &str| {
        load_candle_teacher(
            fixture(name).to_str().unwrap(),
            None,
            &LoadOptions::default(),
            4,
            Some(ScoreActivation::Identity),
        )
        .unwrap()
    };
    let mut members: Vec<Box<dyn Teacher>> = Vec::new();
    let mut sum = vec![0f64; pairs.len()];
    for (name, model_type) in MODELS {
        let mut teacher = load(name);
        assert!(
            teacher
                .fingerprint()
                .starts_with(&format!("candle|arch={model_type}|config=")),
            "{}",
            teacher.fingerprint()
        );
        for (s, v) in sum.iter_mut().zip(teacher.score(&pairs).unwrap()) {
            *s += f64::from(v);
        }
        members.push(Box::new(teacher));
    }
    // Same weights file layout, other config (pooling): other fingerprint.
    assert_ne!(
        load("tiny-modernbert-cls-ce").fingerprint(),
        load("tiny-modernbert-mean-ce").fingerprint()
    );
    let mut ensemble = Ensemble::new(members).unwrap();
    let fingerprint = ensemble.fingerprint();
    for arch in ["arch=modernbert", "arch=deberta-v2", "arch=electra"] {
        assert!(fingerprint.contains(arch), "{fingerprint}");
    }
    let mean: Vec<f32> = sum
        .iter()
        .map(|s| (s / MODELS.len() as f64) as f32)
        .collect();
    let scores = ensemble.score(&pairs).unwrap();
    assert!(max_abs_diff(&scores, &mean) <= 1e-6);
}

#[test]
fn distillation_runs_with_each_new_teacher_architecture() {
    for (name, model_type) in [MODELS[0], MODELS[2], MODELS[3]] {
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
batch_size = 16
activation = "identity"
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
            teacher = fixture(name).display(),
            student = fixture("tiny-bert-ce").display(),
        );
        std::fs::write(dir.path().join("recipe.toml"), recipe).unwrap();
        let run = crossdistill(&["train", dir.path().join("recipe.toml").to_str().unwrap()]);
        assert!(run.status.success(), "{name}: {}", stderr(&run));
        let metrics = std::fs::read_to_string(dir.path().join("run/metrics.jsonl")).unwrap();
        let steps: Vec<serde_json::Value> = metrics
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|r: &serde_json::Value| r.get("loss").is_some())
            .collect();
        assert_eq!(steps.len(), 3, "{name}: {metrics}");
        assert!(steps
            .iter()
            .all(|r| r["loss"].as_f64().unwrap().is_finite()));
        assert!(dir.path().join("run/final/model.safetensors").is_file());
        // The cache holds the teacher's scores of the 24 pairs seen in 3 steps of 8.
        let stats = crossdistill(&[
            "cache",
            "stats",
            dir.path().join("cache").to_str().unwrap(),
            "--json",
        ]);
        assert!(stats.status.success(), "{name}: {}", stderr(&stats));
        let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
        let teachers = stats["teachers"].as_array().unwrap();
        assert_eq!(teachers.len(), 1, "{name}: {stats}");
        let fingerprint = teachers[0]["teacher"].as_str().unwrap();
        assert!(
            fingerprint.contains(&format!("arch={model_type}")),
            "{fingerprint}"
        );
        assert_eq!(teachers[0]["entries"], 24, "{name}: {stats}");
    }
}
