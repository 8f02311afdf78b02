//! End-to-end training: run directory contract, metrics rows, exact resume, the losses' glue
//! against hand-computed values, and loss input errors.

use std::path::{Path, PathBuf};

use crossdistill::data::{Field, Label, Row};
use crossdistill::loss::{LossInput, LossRegistry, LossValue};
use crossdistill::model::{CrossEncoder, Dropout, LoadOptions, ScoreActivation};
use crossdistill::train::{train, Plan, Silent};

use crate::common::{crossdistill, fixture, model_weights, stderr, write_distill_recipe};

fn write_recipe(dir: &Path, extra: &str) -> PathBuf {
    write_distill_recipe(dir, 48, 8, extra)
}

#[test]
fn train_writes_the_run_directory_contract() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(dir.path(), "epochs = 2");
    let run = crossdistill(&["train", recipe.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("student-teacher Spearman on 8 held-out pairs"),
        "{stdout}"
    );
    // stderr is a pipe here: the log carries no colour codes.
    assert!(!stderr(&run).contains('\u{1b}'), "{}", stderr(&run));
    let out = dir.path().join("run");
    // The model card names the data and models without this machine's paths.
    let card = std::fs::read_to_string(out.join("final/README.md")).unwrap();
    for local in [
        dir.path().display().to_string(),
        env!("CARGO_MANIFEST_DIR").to_string(),
        "../".to_string(),
    ] {
        assert!(!card.contains(&local), "the card mentions {local}:\n{card}");
    }
    for name in ["train.jsonl", "eval.jsonl", "tiny-bert-ce", "tiny-xlmr-ce"] {
        assert!(
            card.contains(name),
            "the card does not name {name}:\n{card}"
        );
    }
    // A local directory is not linked as if it were a hub id.
    assert!(!card.contains("huggingface.co/tiny-bert-ce"), "{card}");
    for file in [
        "final/config.json",
        "final/model.safetensors",
        "final/tokenizer.json",
        "recipe.resolved.toml",
        "metrics.jsonl",
        "checkpoint-6/trainer_state.json",
        "checkpoint-12/optimizer.safetensors",
    ] {
        assert!(out.join(file).exists(), "missing {file}");
    }
    // save_total_limit defaults to 3: checkpoints 6, 9 and 12 are kept, 3 is gone.
    assert!(
        !out.join("checkpoint-3").exists(),
        "the default keeps the newest 3"
    );
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let train_rows: Vec<_> = rows.iter().filter(|r| r.get("loss").is_some()).collect();
    assert_eq!(train_rows.len(), 6, "12 steps logged every 2");
    for (i, row) in train_rows.iter().enumerate() {
        assert_eq!(row["step"], (i + 1) * 2);
        for key in [
            "epoch",
            "loss",
            "loss/mse",
            "learning_rate",
            "grad_norm",
            "pairs_per_s",
        ] {
            assert!(
                row.get(key).is_some_and(|v| v.is_number()),
                "{key} missing in {row}"
            );
        }
        assert_eq!(row["loss"], row["loss/mse"], "one loss: total equals it");
    }
    assert_eq!(train_rows[5]["epoch"], 2.0);
    let eval_row = rows
        .iter()
        .find(|r| r.get("eval/agreement/spearman").is_some())
        .expect("agreement row");
    assert!(eval_row["eval/agreement/spearman"]
        .as_f64()
        .unwrap()
        .is_finite());
    // The resolved recipe loads again.
    crossdistill::recipe::load(&out.join("recipe.resolved.toml"), &[]).unwrap();
    // A second run into the same directory without --resume is refused, data intact.
    let again = crossdistill(&["train", recipe.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already holds checkpoints") && stderr(&again).contains("--resume"),
        "{}",
        stderr(&again)
    );
    assert!(out.join("final/model.safetensors").exists());
}

#[test]
fn resume_from_a_checkpoint_equals_the_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(dir.path(), "epochs = 2\ngradient_accumulation = 2");
    let full = crossdistill(&["train", recipe.to_str().unwrap()]);
    assert!(full.status.success(), "{}", stderr(&full));
    let reference = model_weights(&dir.path().join("run/final"));
    let metrics = std::fs::read_to_string(dir.path().join("run/metrics.jsonl")).unwrap();

    // Keep only checkpoint-3, as if the run had been killed after it.
    let run = dir.path().join("run");
    for entry in std::fs::read_dir(&run).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name != "checkpoint-3" && name != "metrics.jsonl" && path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        }
    }
    let resumed = crossdistill(&["train", recipe.to_str().unwrap(), "--resume"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let after = model_weights(&run.join("final"));
    assert_eq!(reference.len(), after.len());
    for ((name, a), (_, b)) in reference.iter().zip(&after) {
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-6, "{name}: resumed weights differ by {diff}");
    }
    let resumed_metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let steps = |text: &str| -> Vec<u64> {
        text.lines()
            .filter_map(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()?
                    .get("loss")
                    .map(|_| 0)
            })
            .collect()
    };
    assert_eq!(
        steps(&metrics).len(),
        steps(&resumed_metrics).len(),
        "no duplicated or missing metrics rows"
    );
}

/// The tiny BERT with every dropout at 0, so training-mode logits equal predict's.
fn no_dropout_student() -> (tempfile::TempDir, CrossEncoder) {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture("tiny-bert-ce").join(file), dir.path().join(file)).unwrap();
    }
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("tiny-bert-ce").join("config.json")).unwrap(),
    )
    .unwrap();
    config["hidden_dropout_prob"] = 0.0.into();
    config["attention_probs_dropout_prob"] = 0.0.into();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let model =
        CrossEncoder::load(dir.path().to_str().unwrap(), None, &LoadOptions::default()).unwrap();
    (dir, model)
}

fn row(texts: &[&str]) -> Row {
    Row {
        line: 1,
        fields: texts.iter().map(|t| Field::Text(t.to_string())).collect(),
        label: Some(Label::Scalar(0.0)),
    }
}

fn loss_value(
    kind: &str,
    model: &CrossEncoder,
    rows: &[Row],
    labels: &[Vec<f32>],
) -> crossdistill::error::Result<f64> {
    let mut loss = LossRegistry::default().build(kind, &toml::Table::new(), 1)?;
    let input = LossInput {
        examples: rows,
        labels: Some(labels),
        seed: 0,
    };
    match loss.compute(model, &input, &mut Dropout::new(0))? {
        LossValue::Graph(t) => Ok(t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?),
        LossValue::Backpropagated { value, .. } => Ok(value as f64),
    }
}

#[test]
fn mse_and_margin_mse_match_hand_computed_values_for_every_label_layout() {
    let (_dir, model) = no_dropout_student();
    let (q, p, n1, n2) = (
        "what is rust",
        "rust is a language",
        "a rusty nail",
        "the weather today",
    );
    let logits = model
        .predict(&[(q, p), (q, n1), (q, n2)], 8, ScoreActivation::Identity)
        .unwrap();
    let (sp, s1, s2) = (logits[0] as f64, logits[1] as f64, logits[2] as f64);

    // MSE, (B,) labels.
    let rows = vec![row(&[q, p]), row(&[q, n1])];
    let got = loss_value("mse", &model, &rows, &[vec![0.5], vec![-1.0]]).unwrap();
    let want = ((sp - 0.5).powi(2) + (s1 + 1.0).powi(2)) / 2.0;
    assert!((got - want).abs() < 1e-5, "mse {got} vs {want}");

    let tuple = vec![row(&[q, p, n1, n2])];
    // MarginMSE with (B, N) margins.
    let got = loss_value("margin_mse", &model, &tuple, &[vec![0.3, 0.7]]).unwrap();
    let want = ((sp - s1 - 0.3).powi(2) + (sp - s2 - 0.7).powi(2)) / 2.0;
    assert!((got - want).abs() < 1e-5, "margin (B,N) {got} vs {want}");
    // (B, N+1) raw teacher scores become margins.
    let got = loss_value("margin_mse", &model, &tuple, &[vec![2.0, 1.7, 1.3]]).unwrap();
    assert!((got - want).abs() < 1e-5, "margin (B,N+1) {got} vs {want}");
    // (B,) labels with one negative.
    let triplet = vec![row(&[q, p, n1])];
    let got = loss_value("margin_mse", &model, &triplet, &[vec![0.3]]).unwrap();
    assert!(
        (got - (sp - s1 - 0.3).powi(2)).abs() < 1e-5,
        "margin (B,) {got}"
    );
    // MSE is 0 when the labels are the student's own scores.
    let got = loss_value("mse", &model, &rows, &[vec![sp as f32], vec![s1 as f32]]).unwrap();
    assert!(got < 1e-10);
}

#[test]
fn loss_inputs_are_checked_with_clear_messages() {
    let (_dir, model) = no_dropout_student();
    let err = loss_value("mse", &model, &[row(&["a", "b", "c"])], &[vec![1.0]])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mse needs 2 input columns (query and document), but row 1 has 3"),
        "{err}"
    );
    let err = loss_value(
        "margin_mse",
        &model,
        &[row(&["a", "b", "c", "d"])],
        &[vec![1.0, 2.0, 3.0, 4.0]],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("labels have shape [1, 4] but 2 negative columns need [1, 2] or [1, 3]"),
        "{err}"
    );
    let err = loss_value("margin_mse", &model, &[row(&["a", "b"])], &[vec![1.0]])
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 3"), "{err}");
    let ragged = Row {
        line: 4,
        fields: vec![
            Field::Text("q".into()),
            Field::List(vec!["a".into(), "b".into()]),
        ],
        label: None,
    };
    let err = loss_value("list_net", &model, &[ragged], &[vec![1.0]])
        .unwrap_err()
        .to_string();
    assert!(err.contains("row 4 has 2 documents but 1 labels"), "{err}");
    let err = LossRegistry::default()
        .build("mse", &toml::Table::new(), 3)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("num_labels = 1, found 3"), "{err}");
    let err = LossRegistry::default()
        .build("nope", &toml::Table::new(), 1)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("unknown loss kind `nope`"), "{err}");
}

#[test]
fn a_few_steps_lower_the_training_loss() {
    let dir = tempfile::tempdir().unwrap();
    let recipe_path = write_recipe(dir.path(), "epochs = 6\nwarmup_ratio = 0.0");
    // The quickstart teacher (a trained model, so its scores vary meaningfully between pairs).
    let teacher = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/quickstart-teacher");
    let overrides = [
        "train.log_every=6".to_string(),
        "train.save_every=0".to_string(),
        format!("teacher.model={}", teacher.display()),
    ];
    let recipe = crossdistill::recipe::load(&recipe_path, &overrides).unwrap();
    let plan = Plan::build(recipe, &LossRegistry::default()).unwrap();
    let report = train(plan, false, &mut Silent).unwrap();
    assert_eq!(report.steps, 36);
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("run/metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let losses: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.get("loss").and_then(|v| v.as_f64()))
        .collect();
    assert!(losses.last().unwrap() < &losses[0], "loss went {losses:?}");
    let (before, after) = (
        report.agreement_before.unwrap(),
        report.agreement_after.unwrap(),
    );
    assert!(after > before, "agreement {before} -> {after}");
}

fn grads_of(kind: &str, params: &str, model: &CrossEncoder, rows: &[Row]) -> (f64, Vec<Vec<f32>>) {
    let table: toml::Table = params.parse().unwrap();
    let mut loss = LossRegistry::default().build(kind, &table, 1).unwrap();
    let input = LossInput {
        examples: rows,
        labels: None,
        seed: 11,
    };
    let (value, store) = match loss.compute(model, &input, &mut Dropout::new(0)).unwrap() {
        LossValue::Graph(t) => (
            t.to_dtype(candle_core::DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap(),
            t.backward().unwrap(),
        ),
        LossValue::Backpropagated { value, grads } => (value as f64, grads),
    };
    let grads = model
        .vars()
        .iter()
        .map(|v| {
            store
                .get(v.as_tensor())
                .map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .unwrap_or_default()
        })
        .collect();
    (value, grads)
}

#[test]
fn cached_mnrl_equals_uncached_in_loss_and_every_gradient() {
    let (_dir, model) = no_dropout_student();
    let rows: Vec<Row> = (0..4)
        .map(|i| {
            row(&[
                &format!("question {i} about rust"),
                &format!("answer {i} on rust"),
                &format!("hard negative {i}"),
            ])
        })
        .collect();
    let (reference, reference_grads) = grads_of(
        "multiple_negatives_ranking",
        "num_negatives = 2",
        &model,
        &rows,
    );
    assert!(reference.is_finite() && reference > 0.0);
    for mini_batch_size in [1, 3, 64] {
        let params = format!("num_negatives = 2\nmini_batch_size = {mini_batch_size}");
        let (value, grads) = grads_of("cached_multiple_negatives_ranking", &params, &model, &rows);
        assert!(
            (value - reference).abs() < 1e-5,
            "mini_batch_size {mini_batch_size}: {value} vs {reference}"
        );
        for (index, (a, b)) in grads.iter().zip(&reference_grads).enumerate() {
            assert_eq!(a.len(), b.len(), "parameter {index} has a gradient in both");
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            let scale = b.iter().map(|y| y.abs()).fold(0f32, f32::max).max(1e-6);
            assert!(
                diff <= 1e-4 * scale.max(1.0),
                "mini_batch_size {mini_batch_size}, parameter {index}: {diff}"
            );
        }
    }
}

#[test]
fn every_shipped_recipe_checks_and_trains_two_steps() {
    let recipes = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&recipes)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    crate::custom_loss::register(); // recipes/custom-loss.toml uses the example's loss
    for recipe in names {
        let problems = crossdistill::recipe::check(&recipe, &[]);
        assert!(problems.is_empty(), "{}: {problems:?}", recipe.display());
        let out = tempfile::tempdir().unwrap();
        let mut overrides = vec![
            format!("run.output_dir={}", out.path().join("run").display()),
            "train.max_steps=2".to_string(),
            "train.save_every=0".to_string(),
        ];
        // Recipes whose models are made by other recipes or named by hub id (stsb-teacher,
        // stsb-multilingual) run here on the tiny fixtures instead.
        let raw = crossdistill::recipe::load(&recipe, &[]).unwrap();
        let missing = |model: &crossdistill::recipe::ModelRef| model.local_path().is_none();
        if missing(&raw.student.model) {
            // A ModernBERT recipe trains the tiny ModernBERT, the others the tiny XLM-R.
            let is_modernbert = recipe.to_string_lossy().contains("modernbert");
            let student = fixture(if is_modernbert {
                "tiny-modernbert-mean-ce"
            } else {
                "tiny-xlmr-ce"
            });
            overrides.push(format!("student.model={}", student.display()));
            if is_modernbert {
                // Its position table has 64 rows.
                overrides.push("student.max_length=32".to_string());
            }
            if raw.student.layers.is_some() {
                overrides.push("student.layers=[0, 1]".to_string());
            }
        }
        // Every teacher made by another recipe (an ensemble's too) becomes the tiny BERT.
        let teacher = fixture("tiny-bert-ce");
        for (index, entry) in raw.teachers.iter().enumerate() {
            if missing(&entry.model) {
                let key = if raw.teachers.len() == 1 {
                    "teacher.model".to_string()
                } else {
                    format!("teacher.{index}.model")
                };
                overrides.push(format!("{key}={}", teacher.display()));
            }
        }
        let loaded = crossdistill::recipe::load(&recipe, &overrides).unwrap();
        let plan = Plan::build(loaded, &LossRegistry::default())
            .unwrap_or_else(|e| panic!("{}: {e}", recipe.display()));
        let report =
            train(plan, false, &mut Silent).unwrap_or_else(|e| panic!("{}: {e}", recipe.display()));
        assert_eq!(report.steps, 2, "{}", recipe.display());
        assert!(out.path().join("run/final/README.md").is_file());
    }
}

#[test]
fn listwise_mini_batch_size_changes_memory_not_the_loss() {
    let (_dir, model) = no_dropout_student();
    let rows: Vec<Row> = (0..3)
        .map(|q| Row {
            line: q + 1,
            fields: vec![
                Field::Text(format!("query {q}")),
                Field::List(
                    (0..(q + 2))
                        .map(|d| format!("document {d} for {q}"))
                        .collect(),
                ),
            ],
            label: None,
        })
        .collect();
    let labels: Vec<Vec<f32>> = (0..3)
        .map(|q| (0..(q + 2)).map(|d| ((q + d) % 3) as f32).collect())
        .collect();
    for kind in ["list_net", "lambda", "list_mle"] {
        let mut values = Vec::new();
        for params in [
            "",
            "mini_batch_size = 1",
            "mini_batch_size = 4",
            "mini_batch_size = -1",
        ] {
            let table: toml::Table = params.parse().unwrap();
            let mut loss = LossRegistry::default().build(kind, &table, 1).unwrap();
            let input = LossInput {
                examples: &rows,
                labels: Some(&labels),
                seed: 0,
            };
            let LossValue::Graph(value) =
                loss.compute(&model, &input, &mut Dropout::new(0)).unwrap()
            else {
                panic!("graph")
            };
            values.push(
                value
                    .to_dtype(candle_core::DType::F64)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap(),
            );
        }
        for v in &values {
            assert!((v - values[0]).abs() < 1e-5, "{kind}: {values:?}");
        }
    }
}

/// Records the evaluation progress the trainer reports.
#[derive(Default)]
struct EvalProgress {
    calls: Vec<(String, usize, usize)>,
}

impl crossdistill::train::TrainProgress for EvalProgress {
    fn evaluating(&mut self, name: &str, done: usize, total: usize) {
        self.calls.push((name.to_string(), done, total));
    }
}

#[test]
fn training_evaluations_report_their_progress() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(
        dir.path(),
        "max_steps = 2\neval_every = 2\n[[eval]]\nkind = \"correlation\"\nname = \"dev\"\npath = \"eval.jsonl\"\ncolumns = [\"query\", \"passage\"]\nlabel = \"score\"\nbatch_size = 3\n",
    );
    let loaded = crossdistill::recipe::load(&recipe, &[]).unwrap();
    let plan = Plan::build(loaded, &LossRegistry::default()).unwrap();
    let mut progress = EvalProgress::default();
    train(plan, false, &mut progress).unwrap();
    // One evaluation at step 2 (the last step): 8 pairs in batches of 3.
    let dones: Vec<usize> = progress.calls.iter().map(|c| c.1).collect();
    assert_eq!(dones, [0, 3, 6, 8], "{:?}", progress.calls);
    assert!(progress.calls.iter().all(|c| c.0 == "dev" && c.2 == 8));
}

#[test]
fn two_losses_of_one_kind_are_logged_apart() {
    // loss/<kind> for the first loss of a kind, loss/<kind>_2 for the second; the total is their
    // weighted sum.
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(dir.path(), "max_steps = 2");
    let text = std::fs::read_to_string(&recipe).unwrap().replace(
        "[[loss]]\nkind = \"mse\"\nlabels = \"teacher\"\n",
        "[[loss]]\nkind = \"mse\"\nlabels = \"teacher\"\n[[loss]]\nkind = \"mse\"\nlabels = \"data\"\nweight = 0.5\n",
    );
    std::fs::write(&recipe, text).unwrap();
    let run = crossdistill(&["train", recipe.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    let metrics = std::fs::read_to_string(dir.path().join("run/metrics.jsonl")).unwrap();
    let row: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    let (teacher, data) = (
        row["loss/mse"].as_f64().unwrap(),
        row["loss/mse_2"].as_f64().unwrap(),
    );
    assert_ne!(teacher, data, "{row}");
    let total = row["loss"].as_f64().unwrap();
    assert!(
        (total - (teacher + 0.5 * data)).abs() < 1e-6 * total.abs().max(1.0),
        "{row}"
    );
}
