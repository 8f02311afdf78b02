//! `trim-vocab` on the tiny fixtures: the trimmed tokenizer reproduces the corpus ids through the
//! id map, the trimmed model gives the logits of the original (and of torch, expected.jsonl) and
//! the same bi-encoder embeddings, texts outside the corpus still tokenise, and bad inputs exit 2.

use std::path::{Path, PathBuf};

use crossdistill::data::{DataSource, Field};
use crossdistill::model::bi_encoder::{BiEncoder, BiEncoderOptions, EncodeOptions};
use crossdistill::model::{
    trim_vocab, CorpusColumns, CrossEncoder, LoadOptions, ScoreActivation, TokenizerKind,
    TrimCorpus, TrimOptions,
};
use serde_json::Value;
use tokenizers::Tokenizer;

use crate::common::{crossdistill, expected_rows, fixture, max_abs_diff, stderr};

/// The (query, passage) pairs of a fixture's expected.jsonl, with torch's logit for each.
fn expected_pairs(name: &str) -> Vec<(String, String, f32)> {
    expected_rows(name)
        .iter()
        .map(|row| {
            (
                row["query"].as_str().unwrap().to_string(),
                row["passage"].as_str().unwrap().to_string(),
                row["logit"].as_f64().unwrap() as f32,
            )
        })
        .collect()
}

/// The texts of a fixture's tokenization_cases.jsonl (whitespace, CJK, emoji, empty, ...).
fn tokenization_cases(name: &str) -> Vec<String> {
    let path = fixture(name).join("tokenization_cases.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            row["text"].as_str().unwrap().to_string()
        })
        .collect()
}

/// expected.jsonl read through the data module (query and passage columns), plus the
/// tokenization cases as single texts.
fn fixture_corpus(name: &str) -> TrimCorpus {
    let columns = CorpusColumns {
        names: None,
        columns: Some(vec!["query".into(), "passage".into()]),
    };
    let mut corpus =
        TrimCorpus::read_files(&[fixture(name).join("expected.jsonl")], &columns).unwrap();
    for text in tokenization_cases(name) {
        corpus.add_text(text);
    }
    corpus
}

fn tokenizer(dir: &Path) -> Tokenizer {
    let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    tokenizer.with_padding(None);
    tokenizer.with_truncation(None).unwrap();
    tokenizer
}

/// The old id of every new id, through the token strings of the two tokenizers.
fn old_ids(original: &Tokenizer, trimmed: &Tokenizer, new_ids: &[u32]) -> Vec<u32> {
    new_ids
        .iter()
        .map(|&id| {
            let token = trimmed.id_to_token(id).expect("new id has a token");
            original
                .token_to_id(&token)
                .expect("token exists in the original")
        })
        .collect()
}

fn trim_fixture(name: &str, out: &Path) -> crossdistill::model::TrimReport {
    trim_vocab(
        fixture(name).to_str().unwrap(),
        &fixture_corpus(name),
        out,
        &TrimOptions::default(),
    )
    .expect("trimming the fixture works")
}

fn load(dir: &Path) -> CrossEncoder {
    CrossEncoder::load(dir.to_str().unwrap(), None, &LoadOptions::default()).unwrap()
}

fn check_trimmed(name: &str, kind: TokenizerKind) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("trimmed");
    let report = trim_fixture(name, &out);
    assert_eq!(report.tokenizer, kind);
    assert!(report.vocab_after < report.vocab_before / 10, "{report:?}");
    let hidden = load(&fixture(name)).config().hidden_size;
    assert_eq!(
        report.params_before - report.params_after,
        (report.vocab_before - report.vocab_after) * hidden,
        "only embedding rows are removed"
    );

    // Ids: every corpus text and pair maps back to the original ids.
    let original = tokenizer(&fixture(name));
    let trimmed = tokenizer(&out);
    assert_eq!(trimmed.get_vocab_size(true), report.vocab_after);
    let corpus = fixture_corpus(name);
    for text in corpus.texts() {
        let before = original.encode(text.as_str(), true).unwrap();
        let after = trimmed.encode(text.as_str(), true).unwrap();
        assert_eq!(
            old_ids(&original, &trimmed, after.get_ids()),
            before.get_ids(),
            "{text:?}"
        );
        assert_eq!(after.get_tokens(), before.get_tokens(), "{text:?}");
    }
    for (a, b) in corpus.pairs() {
        let before = original.encode((a.as_str(), b.as_str()), true).unwrap();
        let after = trimmed.encode((a.as_str(), b.as_str()), true).unwrap();
        assert_eq!(
            old_ids(&original, &trimmed, after.get_ids()),
            before.get_ids()
        );
        assert_eq!(after.get_type_ids(), before.get_type_ids());
    }

    // Config ids follow the map; pad keeps its value (XLM-R position ids depend on it).
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let old_config: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(name).join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["vocab_size"], report.vocab_after);
    assert_eq!(config["pad_token_id"], old_config["pad_token_id"]);

    // Logits: trimmed == untrimmed (<= 1e-6), and both match torch (1e-5, as model_parity).
    let pairs = expected_pairs(name);
    let inputs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(q, p, _)| (q.as_str(), p.as_str()))
        .collect();
    let full = load(&fixture(name));
    let small = load(&out);
    assert_eq!(small.config().vocab_size, report.vocab_after);
    let logits_full = full.predict(&inputs, 4, ScoreActivation::Identity).unwrap();
    let logits_small = small
        .predict(&inputs, 4, ScoreActivation::Identity)
        .unwrap();
    assert!(max_abs_diff(&logits_full, &logits_small) <= 1e-6);
    let torch: Vec<f32> = pairs.iter().map(|(_, _, logit)| *logit).collect();
    assert!(max_abs_diff(&logits_small, &torch) <= 1e-5);

    // Bi-encoder embeddings of the corpus texts are unchanged.
    let texts: Vec<&str> = corpus.texts().iter().map(String::as_str).collect();
    let options = EncodeOptions {
        batch_size: 8,
        prompt: None,
        normalize: false,
    };
    let embed = |dir: &Path| {
        let model =
            BiEncoder::load(dir.to_str().unwrap(), None, &BiEncoderOptions::default()).unwrap();
        model.encode(&texts, &options, &mut |_| {}).unwrap()
    };
    assert!(max_abs_diff(embed(&fixture(name)).values(), embed(&out).values()) <= 1e-6);

    // A text outside the corpus still tokenises, into kept ids only.
    let outside = small
        .tokenizer()
        .encode_texts(&["Quantenchromodynamik zebra xylophone 🦓"])
        .unwrap();
    assert!(outside[0].input_ids.len() > 2);
    assert!(outside[0]
        .input_ids
        .iter()
        .all(|&id| (id as usize) < report.vocab_after));
}

#[test]
fn wordpiece_trim_keeps_ids_and_logits() {
    check_trimmed("tiny-bert-ce", TokenizerKind::WordPiece);
}

#[test]
fn unigram_trim_keeps_ids_and_logits() {
    check_trimmed("tiny-xlmr-ce", TokenizerKind::Unigram);
}

#[test]
fn wordpiece_vocab_txt_matches_the_trimmed_tokenizer() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("trimmed");
    let report = trim_fixture("tiny-bert-ce", &out);
    let vocab = std::fs::read_to_string(out.join("vocab.txt")).unwrap();
    let trimmed = tokenizer(&out);
    let lines: Vec<&str> = vocab.lines().collect();
    assert_eq!(lines.len(), report.vocab_after);
    for (id, token) in lines.iter().enumerate() {
        assert_eq!(trimmed.token_to_id(token), Some(id as u32), "{token}");
    }
    assert!(report.dropped.iter().any(|d| d.starts_with("model.onnx")));
    assert!(!out.join("model.onnx").exists());
    assert!(out.join("README.md").exists());
}

/// A headerless STSb-style CSV through the CLI, with the JSON report.
#[test]
fn cli_trims_a_headerless_csv_and_reports_json() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("stsb-en-train.csv");
    let mut text = String::new();
    for (query, passage, _) in expected_pairs("tiny-xlmr-ce") {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        text.push_str(&format!("{},{},3.5\n", quote(&query), quote(&passage)));
    }
    std::fs::write(&csv, text).unwrap();
    let out = tmp.path().join("out");
    let output = crossdistill(&[
        "trim-vocab",
        "--model",
        fixture("tiny-xlmr-ce").to_str().unwrap(),
        "--corpus",
        csv.to_str().unwrap(),
        "--names",
        "sentence1,sentence2,score",
        "--output",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = expected_pairs("tiny-xlmr-ce").len();
    assert_eq!(report["pairs_checked"], rows);
    assert_eq!(report["tokenizer"], "unigram");
    assert_eq!(report["vocab_before"], 67943);
    assert!(report["vocab_after"].as_u64().unwrap() < 1000);
    assert!(out.join("model.safetensors").is_file());
}

fn run_error(args: &[&str]) -> String {
    let output = crossdistill(args);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    stderr(&output)
}

#[test]
fn bad_inputs_exit_2_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("tiny-bert-ce");
    let model = model.to_str().unwrap();
    let out = tmp.path().join("out");
    let out = out.to_str().unwrap();

    let missing = run_error(&[
        "trim-vocab",
        "--model",
        model,
        "--corpus",
        "/nonexistent/corpus.txt",
        "--output",
        out,
    ]);
    assert!(
        missing.contains("/nonexistent/corpus.txt: corpus file not found"),
        "{missing}"
    );

    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "\n\n").unwrap();
    let message = run_error(&[
        "trim-vocab",
        "--model",
        model,
        "--corpus",
        empty.to_str().unwrap(),
        "--output",
        out,
    ]);
    assert!(message.contains("the corpus has no texts"), "{message}");

    let corpus = tmp.path().join("corpus.txt");
    std::fs::write(&corpus, "python is a language\n").unwrap();
    let existing = tmp.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    let message = run_error(&[
        "trim-vocab",
        "--model",
        model,
        "--corpus",
        corpus.to_str().unwrap(),
        "--output",
        existing.to_str().unwrap(),
    ]);
    assert!(message.contains("already exists"), "{message}");
    assert!(message.contains("--force"), "{message}");

    let message = run_error(&[
        "trim-vocab",
        "--model",
        model,
        "--corpus",
        corpus.to_str().unwrap(),
        "--output",
        fixture("tiny-bert-ce").join("sub").to_str().unwrap(),
        "--force",
    ]);
    assert!(
        message.contains("is the model directory or inside it"),
        "{message}"
    );

    let bpe = bpe_model(tmp.path());
    let message = run_error(&[
        "trim-vocab",
        "--model",
        bpe.to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
        "--output",
        out,
    ]);
    assert!(
        message.contains(
            "the tokenizer model is BPE; vocabulary trimming supports only WordPiece and Unigram"
        ),
        "{message}"
    );
    assert!(!Path::new(out).exists(), "nothing is written on errors");
}

/// The BERT fixture with a (tiny, valid) byte-level BPE tokenizer.
fn bpe_model(dir: &Path) -> PathBuf {
    let model = dir.join("bpe-model");
    std::fs::create_dir(&model).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("tiny-bert-ce").join(file), model.join(file)).unwrap();
    }
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
        "model": {"type": "BPE", "dropout": null, "unk_token": "[UNK]",
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "vocab": {"[UNK]": 0, "a": 1, "b": 2, "ab": 3},
            "merges": [["a", "b"]]}
    });
    std::fs::write(model.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    model
}

/// Rows read through the data module, to check what the corpus reader takes from a file.
#[test]
fn corpus_takes_every_text_column_but_the_label() {
    let source = DataSource {
        columns: Some(vec!["query".into(), "passage".into()]),
        ..DataSource::new(
            fixture("tiny-bert-ce")
                .join("expected.jsonl")
                .to_string_lossy(),
            ".",
        )
    };
    let rows: Vec<_> = source.open().unwrap().map(Result::unwrap).collect();
    let corpus = fixture_corpus("tiny-bert-ce");
    for row in rows {
        let [Field::Text(query), Field::Text(passage)] = &row.fields[..] else {
            panic!("two text fields");
        };
        assert!(corpus.texts().contains(query));
        assert!(corpus.pairs().contains(&(query.clone(), passage.clone())));
    }
}

/// A copy of a fixture model directory (its regular files).
fn copy_model(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Every file under `dir` with its bytes, sorted.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.push((path, bytes));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn force_replaces_only_a_previous_trim_vocab_output() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let model = work.join("m");
    copy_model("tiny-bert-ce", &model);
    let corpus = work.join("c.txt");
    std::fs::write(&corpus, "python is a language\nlyon is in france\n").unwrap();
    std::fs::write(work.join("unrelated.txt"), "keep me").unwrap();
    let before = snapshot(&work);
    let trim = |output: &Path, model: &Path, corpus: &Path| {
        crossdistill(&[
            "trim-vocab",
            "--model",
            model.to_str().unwrap(),
            "--corpus",
            corpus.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--force",
        ])
    };

    // The case: the output holds the model, the corpus and an unrelated file.
    let output = trim(&work, &model, &corpus);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.starts_with("error: refusing to replace the output"),
        "{message}"
    );
    assert!(message.contains("contains the source model"), "{message}");
    assert_eq!(snapshot(&work), before, "nothing may be deleted");

    // A directory with only the corpus and a user's file (the model elsewhere).
    let elsewhere = tmp.path().join("models").join("m");
    copy_model("tiny-bert-ce", &elsewhere);
    let message = stderr(&trim(&work, &elsewhere, &corpus));
    assert!(message.contains("contains the corpus file"), "{message}");
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("notes.txt"), "mine").unwrap();
    let message = stderr(&trim(&data, &elsewhere, &corpus));
    assert!(
        message.contains("not written by trim-vocab (no valid trim_vocab.json"),
        "{message}"
    );
    assert_eq!(std::fs::read(data.join("notes.txt")).unwrap(), b"mine");

    // A trim-vocab output is replaced; once a user adds a file to it, it is not.
    let out = tmp.path().join("trimmed");
    let first = trim(&out, &elsewhere, &corpus);
    assert!(first.status.success(), "{}", stderr(&first));
    let marker: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("trim_vocab.json")).unwrap())
            .unwrap();
    assert_eq!(marker["written_by"], "crossdistill trim-vocab");
    assert!(marker["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|name| name == "model.safetensors"));
    let again = trim(&out, &elsewhere, &corpus);
    assert!(again.status.success(), "{}", stderr(&again));
    std::fs::write(out.join("my-notes.md"), "mine").unwrap();
    let output = trim(&out, &elsewhere, &corpus);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("holds files trim-vocab did not write: my-notes.md"),
        "{}",
        stderr(&output)
    );
    assert!(out.join("my-notes.md").is_file());
}
