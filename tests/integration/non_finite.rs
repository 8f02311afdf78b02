//! NaN is never reported as success: a model whose classifier bias is NaN scores every pair NaN.
//! As a teacher, `score` stores nothing and names the pairs, `train` stops naming the pair (or,
//! with `train.on_nan = "skip"`, skips every step and fails); as a model, `predict` and `rank`
//! fail instead of writing `null` or printing NaN. `cache export` refuses a cache that holds a
//! NaN (as older versions could write), so it never writes a file `cache import` rejects.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::common::{crossdistill, fixture, stderr, write_scored_pairs};

/// A copy of the tiny BERT whose classifier bias is NaN.
fn nan_model(dir: &Path) -> PathBuf {
    let model = dir.join("nan-model");
    std::fs::create_dir(&model).unwrap();
    let source = fixture("tiny-bert-ce");
    for name in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ] {
        std::fs::copy(source.join(name), model.join(name)).unwrap();
    }
    let mut tensors =
        candle_core::safetensors::load(source.join("model.safetensors"), &Device::Cpu).unwrap();
    let bias = tensors.get("classifier.bias").expect("a classifier bias");
    let nan = Tensor::full(f32::NAN, bias.shape(), &Device::Cpu).unwrap();
    tensors.insert("classifier.bias".into(), nan);
    candle_core::safetensors::save(&tensors, model.join("model.safetensors")).unwrap();
    model
}

/// The NaN model teaches the tiny BERT with MSE on 12 pairs (6 steps of 2), a cache in `cache`.
fn write_recipe(dir: &Path, teacher: &Path) -> PathBuf {
    write_scored_pairs(dir, 12, 4);
    let text = format!(
        r#"version = 1
[run]
output_dir = "run"
[teacher]
kind = "candle"
model = "{teacher}"
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
batch_size = 2
"#,
        teacher = teacher.display(),
        student = fixture("tiny-bert-ce").display()
    );
    let path = dir.join("recipe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn error_line(output: &std::process::Output) -> String {
    assert_eq!(output.status.code(), Some(2), "{}", stderr(output));
    let text = stderr(output);
    assert!(!text.contains("panicked"), "{text}");
    let last = text.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("error: "), "{text}");
    last
}

#[test]
fn a_nan_teacher_is_an_error_naming_the_pair_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = nan_model(dir.path());
    let recipe = write_recipe(dir.path(), &teacher);
    let recipe = recipe.to_str().unwrap();

    let message = error_line(&crossdistill(&["score", recipe]));
    assert!(
        message.contains("the teacher scored NaN for (\"what is item number 0\", \"item 0 is a thing with 0 parts\")"),
        "{message}"
    );
    assert!(
        message.contains("those scores were not stored"),
        "{message}"
    );
    let cache = dir.path().join("cache");
    let export = dir.path().join("scores.jsonl");
    let output = crossdistill(&[
        "cache",
        "export",
        cache.to_str().unwrap(),
        "--output",
        export.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        std::fs::read_to_string(&export).unwrap(),
        "",
        "no NaN stored"
    );

    let message = error_line(&crossdistill(&["train", recipe]));
    assert!(
        message.contains("step 1: the teacher scored NaN for (\"what is item number")
            && message.contains("of the row at line")
            && message.contains("train.jsonl, and 1 more non-finite scores in the batch"),
        "{message}"
    );

    let output = crossdistill(&["train", recipe, "--set", "train.on_nan=skip"]);
    let message = error_line(&output);
    assert!(
        message.contains("6 of 6 steps were skipped (train.on_nan = \"skip\")")
            && message.contains("the student was not trained"),
        "{message}"
    );
    assert!(
        stderr(&output).contains("step 1: the teacher scored NaN for"),
        "{}",
        stderr(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("trained"), "{stdout}");
    assert!(!dir.path().join("run/final").exists());
}

#[test]
fn predict_and_rank_refuse_nan_scores() {
    let dir = tempfile::tempdir().unwrap();
    let model = nan_model(dir.path());
    let input = dir.path().join("input.jsonl");
    std::fs::write(
        &input,
        "{\"query\": \"a\", \"passage\": \"b\"}\n{\"query\": \"c\", \"passage\": \"d\"}\n",
    )
    .unwrap();
    let output_file = dir.path().join("scored.jsonl");
    let message = error_line(&crossdistill(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output_file.to_str().unwrap(),
    ]));
    assert!(
        message.contains("input.jsonl:1: the model scores the pair (\"a\", \"b\") as [NaN]: not a finite number (2 of 2 rows, at lines [1, 2])"),
        "{message}"
    );
    assert!(!output_file.exists(), "nothing written");

    let documents = dir.path().join("docs.txt");
    std::fs::write(&documents, "first document\nsecond document\n").unwrap();
    let message = error_line(&crossdistill(&[
        "rank",
        "--model",
        model.to_str().unwrap(),
        "--query",
        "a query",
        "--documents",
        documents.to_str().unwrap(),
    ]));
    assert!(
        message.contains("the model scores the document with corpus_id 0 (\"first document\") as NaN: not a finite number (2 of 2 documents"),
        "{message}"
    );
}

#[test]
fn cache_export_refuses_a_stored_nan_instead_of_writing_null() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    {
        let mut cache = crossdistill::cache::ScoreCache::open(&cache_dir).unwrap();
        cache
            .insert(
                "teacher-x",
                &[("q", "fine", 0.5), ("q", "broken", f32::NAN)],
            )
            .unwrap();
    }
    for file in ["scores.jsonl", "scores.parquet"] {
        let export = dir.path().join(file);
        let message = error_line(&crossdistill(&[
            "cache",
            "export",
            cache_dir.to_str().unwrap(),
            "--output",
            export.to_str().unwrap(),
        ]));
        assert!(
            message.contains(
                "the cache holds the non-finite score NaN of teacher teacher-x for the pair (\"q\", \"broken\")"
            ),
            "{message}"
        );
        assert!(!export.exists(), "{file}: nothing written");
    }
}
