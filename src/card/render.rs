//! Markdown and YAML of the model card.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use super::{CardInput, DatasetInfo, DatasetRole, EvalResult, LossInfo};
use crate::loss::BUILTIN_LOSSES;
use crate::model::looks_like_hub_id;

/// The candle version crossdistill is built with (the `candle-core` entry of Cargo.lock; a test
/// keeps the two in step).
pub const CANDLE_VERSION: &str = "0.11.1";

/// The tokenizers version crossdistill is built with (Cargo.lock; kept in step by a test).
pub const TOKENIZERS_VERSION: &str = "0.23.2";

const SENTENCE_TRANSFORMERS_CITATION: &str = r#"@inproceedings{reimers-2019-sentence-bert,
    title = "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks",
    author = "Reimers, Nils and Gurevych, Iryna",
    booktitle = "Proceedings of the 2019 Conference on Empirical Methods in Natural Language Processing",
    month = "11",
    year = "2019",
    publisher = "Association for Computational Linguistics",
    url = "https://arxiv.org/abs/1908.10084",
}"#;

const CROSS_ENCODER_DOCS: &str = "https://www.sbert.net/docs/cross_encoder/usage/usage.html";

/// The sentence-transformers evaluator class behind an evaluator description, for links.
fn st_evaluator_class(description: &str) -> Option<&'static str> {
    match description {
        "Cross Encoder Reranking" => Some("CrossEncoderRerankingEvaluator"),
        "Cross Encoder Correlation" => Some("CrossEncoderCorrelationEvaluator"),
        "Cross Encoder Classification" => Some("CrossEncoderClassificationEvaluator"),
        _ => None,
    }
}

/// Python's `str.title()`: a cased letter is upper-case after a non-letter, lower-case after a
/// letter (`"mrr@10"` → `"Mrr@10"`, `"f1 macro"` → `"F1 Macro"`).
fn python_title(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous_is_letter = false;
    for c in text.chars() {
        if previous_is_letter {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        previous_is_letter = c.is_alphabetic();
    }
    out
}

/// A YAML scalar: plain when that is unambiguous, else a JSON string (valid YAML).
fn yaml_string(text: &str) -> String {
    let plain = !text.is_empty()
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./@:+-".contains(c))
        && !text.ends_with(':')
        && text.parse::<f64>().is_err()
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        text.to_string()
    } else {
        Value::from(text).to_string()
    }
}

fn yaml_number(value: f64) -> String {
    if value.is_nan() {
        ".nan".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { ".inf" } else { "-.inf" }.to_string()
    } else {
        value.to_string()
    }
}

fn yaml_list(out: &mut String, key: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    out.push_str(key);
    out.push_str(":\n");
    for item in items {
        let _ = writeln!(out, "- {}", yaml_string(item));
    }
}

/// Metrics shown for an evaluator: reranking's `map`/`mrr`/`ndcg` carry the change against the
/// first stage (`0.6236 (+0.2833)`, as ST's card) and the `base_*` rows are folded into them.
fn shown_metrics(result: &EvalResult) -> Vec<(String, f64, String)> {
    result
        .metrics
        .iter()
        .filter(|(key, _)| {
            !(key.starts_with("base_") && result.metrics.contains_key(&key["base_".len()..]))
        })
        .map(|(key, &value)| {
            let text = match result.metrics.get(&format!("base_{key}")) {
                Some(base) => format!("{} ({:+.4})", format_value(value), value - base),
                None => format_value(value),
            };
            (key.clone(), value, text)
        })
        .collect()
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "nan".to_string()
    } else {
        format!("{value:.4}")
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn english_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [first, second] => format!("{first} and {second}"),
        [rest @ .., last] => format!("{}, and {last}", rest.join(", ")),
    }
}

fn model_name(input: &CardInput) -> String {
    if !input.model_name.is_empty() {
        input.model_name.clone()
    } else if !input.base_model.is_empty() {
        format!("CrossEncoder based on {}", input.base_model)
    } else {
        "CrossEncoder".to_string()
    }
}

fn model_id(input: &CardInput) -> &str {
    if input.model_id.is_empty() {
        "path/to/model"
    } else {
        &input.model_id
    }
}

fn base_model_link(base_model: &str) -> String {
    if looks_like_hub_id(base_model) {
        format!("[{base_model}](https://huggingface.co/{base_model})")
    } else {
        format!("`{base_model}`")
    }
}

fn dataset_link(dataset: &DatasetInfo) -> String {
    match &dataset.hub_id {
        Some(id) => format!("[{}](https://huggingface.co/datasets/{id})", dataset.name),
        None => dataset.name.clone(),
    }
}

fn is_ranking(input: &CardInput) -> bool {
    input.num_labels <= 1
}

/// Render the model card (see the [module docs](super)).
pub fn render(input: &CardInput) -> String {
    let mut out = String::new();
    front_matter(&mut out, input);
    title_and_details(&mut out, input);
    usage(&mut out, input);
    distillation(&mut out, input);
    evaluation(&mut out, input);
    training_details(&mut out, input);
    citations(&mut out, input);
    out
}

fn front_matter(out: &mut String, input: &CardInput) {
    out.push_str("---\n");
    match input.language.as_slice() {
        [] => {}
        [one] => {
            let _ = writeln!(out, "language: {}", yaml_string(one));
        }
        many => yaml_list(out, "language", many),
    }
    if let Some(license) = &input.license {
        let _ = writeln!(out, "license: {}", yaml_string(license));
    }
    out.push_str("library_name: sentence-transformers\n");
    if looks_like_hub_id(&input.base_model) {
        let _ = writeln!(out, "base_model: {}", yaml_string(&input.base_model));
    }
    let pipeline_tag = if is_ranking(input) {
        "text-ranking"
    } else {
        "text-classification"
    };
    let _ = writeln!(out, "pipeline_tag: {pipeline_tag}");

    let mut tags: Vec<String> = [
        "sentence-transformers",
        "cross-encoder",
        "reranker",
        "distillation",
        "crossdistill",
        "generated_from_trainer",
    ]
    .map(String::from)
    .to_vec();
    let training_rows: usize = input
        .datasets
        .iter()
        .filter(|d| d.role == DatasetRole::Training)
        .map(|d| d.rows)
        .sum();
    if training_rows > 0 {
        tags.push(format!("dataset_size:{training_rows}"));
    }
    for loss in &input.losses {
        let tag = format!("loss:{}", loss.class_name);
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    yaml_list(out, "tags", &tags);

    let mut datasets: Vec<String> = Vec::new();
    for id in input.datasets.iter().filter_map(|d| d.hub_id.clone()) {
        if !datasets.contains(&id) {
            datasets.push(id);
        }
    }
    yaml_list(out, "datasets", &datasets);

    let mut metric_names: Vec<String> = Vec::new();
    for result in &input.eval_results {
        for (key, _, _) in shown_metrics(result) {
            if !metric_names.contains(&key) {
                metric_names.push(key);
            }
        }
    }
    yaml_list(out, "metrics", &metric_names);

    let results: Vec<&EvalResult> = input
        .eval_results
        .iter()
        .filter(|r| shown_metrics(r).iter().any(|(_, v, _)| v.is_finite()))
        .collect();
    if !results.is_empty() {
        out.push_str("model-index:\n");
        let _ = writeln!(out, "- name: {}", yaml_string(&model_name(input)));
        out.push_str("  results:\n");
        for result in results {
            let task_name = if result.description.is_empty() {
                "Evaluation"
            } else {
                &result.description
            };
            let task_type = task_name.to_lowercase().replace(' ', "-");
            let _ = writeln!(out, "  - task:");
            let _ = writeln!(out, "      type: {}", yaml_string(&task_type));
            let _ = writeln!(out, "      name: {}", yaml_string(task_name));
            let _ = writeln!(out, "    dataset:");
            let dataset_name = result.name.replace(['_', '-'], " ");
            let _ = writeln!(out, "      name: {}", yaml_string(&dataset_name));
            let _ = writeln!(out, "      type: {}", yaml_string(&result.name));
            let _ = writeln!(out, "    metrics:");
            for (key, value, _) in shown_metrics(result) {
                if !value.is_finite() {
                    continue;
                }
                let _ = writeln!(out, "    - type: {}", yaml_string(&key));
                let _ = writeln!(out, "      value: {}", yaml_number(value));
                let _ = writeln!(
                    out,
                    "      name: {}",
                    yaml_string(&python_title(&key.replace('_', " ")))
                );
            }
        }
    }
    out.push_str("---\n\n");
}

fn title_and_details(out: &mut String, input: &CardInput) {
    let _ = writeln!(out, "# {}\n", model_name(input));
    let training: Vec<&DatasetInfo> = input
        .datasets
        .iter()
        .filter(|d| d.role == DatasetRole::Training)
        .collect();
    let mut line = format!("This is a [Cross Encoder]({CROSS_ENCODER_DOCS}) model");
    if input.base_model.is_empty() {
        line.push_str(" trained");
    } else {
        let _ = write!(
            line,
            " finetuned from {}",
            base_model_link(&input.base_model)
        );
    }
    if !training.is_empty() {
        let names: Vec<String> = training.iter().map(|d| dataset_link(d)).collect();
        let _ = write!(
            line,
            " on the {} dataset{}",
            english_list(&names),
            if names.len() > 1 { "s" } else { "" }
        );
    }
    match input.teachers.len() {
        0 => {}
        1 => line.push_str(", distilled from one teacher"),
        n => {
            let _ = write!(line, ", distilled from {n} teachers (scores averaged)");
        }
    }
    line.push_str(
        " with crossdistill. It loads unchanged in the [sentence-transformers](https://www.SBERT.net) \
         library and computes scores for pairs of texts, which can be used for ",
    );
    line.push_str(if is_ranking(input) {
        "text reranking and semantic search."
    } else {
        "text pair classification."
    });
    out.push_str(&line);
    out.push_str("\n\n## Model Details\n\n### Model Description\n");
    out.push_str("- **Model Type:** Cross Encoder\n");
    if input.base_model.is_empty() {
        out.push_str("<!-- - **Base model:** [Unknown](https://huggingface.co/unknown) -->\n");
    } else {
        let _ = writeln!(
            out,
            "- **Base model:** {}",
            base_model_link(&input.base_model)
        );
    }
    let _ = writeln!(
        out,
        "- **Maximum Sequence Length:** {} tokens",
        input.max_length
    );
    let _ = writeln!(
        out,
        "- **Number of Output Labels:** {} label{}",
        input.num_labels,
        if input.num_labels > 1 { "s" } else { "" }
    );
    if !training.is_empty() {
        let _ = writeln!(
            out,
            "- **Training Dataset{}:**",
            if training.len() > 1 { "s" } else { "" }
        );
        for dataset in &training {
            let _ = writeln!(out, "    - {}", dataset_link(dataset));
        }
    }
    if !input.teachers.is_empty() {
        let _ = writeln!(
            out,
            "- **Teacher{}:** {}",
            if input.teachers.len() > 1 { "s" } else { "" },
            input
                .teachers
                .iter()
                .map(|t| t.description.clone())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if !input.language.is_empty() {
        let _ = writeln!(
            out,
            "- **Language{}:** {}",
            if input.language.len() > 1 { "s" } else { "" },
            input.language.join(", ")
        );
    }
    match &input.license {
        Some(license) => {
            let _ = writeln!(out, "- **License:** {license}");
        }
        None => out.push_str("<!-- - **License:** Unknown -->\n"),
    }
    out.push_str(
        "\n### Model Sources\n\n\
         - **Documentation:** [Sentence Transformers Documentation](https://sbert.net)\n\
         - **Documentation:** [Cross Encoder Documentation](https://www.sbert.net/docs/cross_encoder/usage/usage.html)\n\
         - **Repository:** [Sentence Transformers on GitHub](https://github.com/huggingface/sentence-transformers)\n\
         - **Hugging Face:** [Cross Encoders on Hugging Face](https://huggingface.co/models?library=sentence-transformers&other=cross-encoder)\n\n",
    );
}

fn examples(input: &CardInput) -> Vec<(String, String)> {
    if input.examples.is_empty() {
        let query = "How many calories in an egg";
        [
            "There are on average between 55 and 80 calories in an egg depending on its size.",
            "Egg whites are very low in calories, have no fat, no cholesterol, and are loaded with protein.",
            "Most of the calories in an egg come from the yellow yolk in the center.",
        ]
        .iter()
        .map(|passage| (query.to_string(), passage.to_string()))
        .collect()
    } else {
        input.examples.iter().take(5).cloned().collect()
    }
}

/// A Python string literal (JSON strings are valid Python literals).
fn python_string(text: &str) -> String {
    Value::from(text).to_string()
}

/// A single-quoted shell word.
fn shell_word(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

fn usage(out: &mut String, input: &CardInput) {
    let id = model_id(input);
    let pairs = examples(input);
    out.push_str("## Usage\n\n### Direct Usage (crossdistill)\n\n");
    out.push_str(
        "Score (query, passage) pairs from a JSONL file (`{\"query\": ..., \"passage\": ...}` per \
         line; the rows come back with `score` added), or rank documents (one per line) for a query:\n\n",
    );
    let _ = writeln!(out, "```bash");
    let _ = writeln!(
        out,
        "crossdistill predict --model {} --input pairs.jsonl --output scored.jsonl",
        shell_word(id)
    );
    let _ = writeln!(
        out,
        "crossdistill rank --model {} --query {} --documents documents.txt",
        shell_word(id),
        shell_word(&pairs[0].0)
    );
    out.push_str("```\n\n");

    out.push_str(
        "### Direct Usage (Sentence Transformers)\n\n\
         First install the Sentence Transformers library:\n\n\
         ```bash\npip install -U sentence-transformers\n```\n\n\
         Then you can load this model and run inference.\n```python\n\
         from sentence_transformers import CrossEncoder\n\n",
    );
    let _ = writeln!(out, "model = CrossEncoder({})", python_string(id));
    out.push_str("# Get scores for pairs of texts\npairs = [\n");
    for (query, passage) in &pairs {
        let _ = writeln!(
            out,
            "    [{}, {}],",
            python_string(query),
            python_string(passage)
        );
    }
    out.push_str("]\nscores = model.predict(pairs)\nprint(scores.shape)\n");
    if is_ranking(input) {
        let _ = writeln!(out, "# ({},)", pairs.len());
        out.push_str("\n# Or rank different texts based on similarity to a single text\n");
        let _ = writeln!(
            out,
            "ranks = model.rank(\n    {},\n    [",
            python_string(&pairs[0].0)
        );
        for (_, passage) in &pairs {
            let _ = writeln!(out, "        {},", python_string(passage));
        }
        out.push_str("    ]\n)\n# [{'corpus_id': ..., 'score': ...}, {'corpus_id': ..., 'score': ...}, ...]\n");
    } else {
        let _ = writeln!(out, "# ({}, {})", pairs.len(), input.num_labels);
    }
    out.push_str("```\n\n");
}

fn distillation(out: &mut String, input: &CardInput) {
    out.push_str("## Distillation\n\n### Teachers\n\n");
    if input.teachers.is_empty() {
        out.push_str("No teacher: the student learned from the labels in its training data.\n\n");
        return;
    }
    if input.teachers.len() > 1 {
        out.push_str("The student learned from the mean of these teachers' scores:\n\n");
    } else {
        out.push_str("The student learned from this teacher's scores:\n\n");
    }
    for teacher in &input.teachers {
        let _ = writeln!(out, "- {}", teacher.description);
        let _ = writeln!(out, "    - Fingerprint: `{}`", teacher.fingerprint);
    }
    out.push_str(
        "\nThe fingerprint changes whenever the teacher's scores could change (weights, tokenizer, \
         backend, maximum length, activation); it keys crossdistill's teacher-score cache.\n\n",
    );
}

fn indented_json(value: &Value) -> String {
    let text = serde_json::to_string_pretty(value).expect("a serde_json::Value always serialises");
    format!("```json\n{text}\n```")
        .lines()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_empty_config(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

fn evaluation(out: &mut String, input: &CardInput) {
    if input.eval_results.is_empty() {
        return;
    }
    out.push_str("## Evaluation\n\n### Metrics\n");
    for result in &input.eval_results {
        let description = if result.description.is_empty() {
            "Evaluation"
        } else {
            &result.description
        };
        let _ = writeln!(out, "\n#### {description}\n");
        let _ = writeln!(out, "* Dataset: `{}`", result.name);
        let evaluator = match st_evaluator_class(description) {
            Some(class) => format!(
                "[<code>{class}</code>](https://sbert.net/docs/package_reference/cross_encoder/evaluation.html#sentence_transformers.cross_encoder.evaluation.{class})"
            ),
            None => format!("<code>{description}</code>"),
        };
        if is_empty_config(&result.config) {
            let _ = writeln!(out, "* Evaluated with {evaluator}\n");
        } else {
            let _ = writeln!(
                out,
                "* Evaluated with {evaluator} with these parameters:\n{}\n",
                indented_json(&result.config)
            );
        }
        out.push_str("| Metric | Value |\n|:--|:--|\n");
        for (key, _, text) in shown_metrics(result) {
            if result.primary_metric.as_deref() == Some(key.as_str()) {
                let _ = writeln!(out, "| **{key}** | **{text}** |");
            } else {
                let _ = writeln!(out, "| {key} | {text} |");
            }
        }
    }
    out.push('\n');
}

fn loss_section(out: &mut String, loss: &LossInfo) {
    let class = &loss.class_name;
    let _ = writeln!(out, "\n#### {class}\n");
    let _ = writeln!(
        out,
        "* Recipe kind: `{}`, weight {}",
        loss.kind, loss.weight
    );
    // Only sentence-transformers' own classes have a page to link to.
    let sentence_transformers_class = BUILTIN_LOSSES.iter().any(|row| row.class_name == class);
    let title = if sentence_transformers_class {
        format!(
            "[<code>{class}</code>](https://sbert.net/docs/package_reference/cross_encoder/losses.html#{})",
            class.to_lowercase()
        )
    } else {
        format!("<code>{class}</code>")
    };
    let _ = writeln!(
        out,
        "* Loss: {title} with these parameters:\n{}",
        indented_json(&loss.params)
    );
}

/// One row of the training log: everything logged at a step.
#[derive(Default)]
struct LogRow {
    epoch: Option<f64>,
    loss: Option<f64>,
    evals: BTreeMap<String, f64>,
}

fn step_of(row: &Value) -> Option<u64> {
    let step = row.get("step")?;
    step.as_u64().or_else(|| {
        step.as_f64()
            .filter(|s| s.fract() == 0.0 && *s >= 0.0)
            .map(|s| s as u64)
    })
}

fn training_log(out: &mut String, input: &CardInput) {
    let mut rows: BTreeMap<u64, LogRow> = BTreeMap::new();
    let mut eval_keys: Vec<String> = Vec::new();
    for row in &input.metrics_rows {
        let (Some(step), Some(object)) = (step_of(row), row.as_object()) else {
            continue;
        };
        let entry = rows.entry(step).or_default();
        for (key, value) in object {
            let Some(number) = value.as_f64() else {
                continue;
            };
            match key.as_str() {
                "epoch" => entry.epoch = Some(number),
                "loss" => entry.loss = Some(number),
                _ if key.starts_with("eval/") => {
                    if !eval_keys.contains(key) {
                        eval_keys.push(key.clone());
                    }
                    entry.evals.insert(key.clone(), number);
                }
                _ => {}
            }
        }
    }
    if rows.is_empty() && input.plot.is_none() {
        return;
    }
    out.push_str("\n### Training Logs\n");
    if !rows.is_empty() {
        let hide = rows.len() > 100;
        if hide {
            out.push_str("<details><summary>Click to expand</summary>\n\n");
        } else {
            out.push('\n');
        }
        let mut header = vec![
            "Epoch".to_string(),
            "Step".to_string(),
            "Training Loss".to_string(),
        ];
        // "eval/dev/ndcg@10" → "dev_ndcg@10", sentence-transformers' column names.
        header.extend(
            eval_keys
                .iter()
                .map(|k| k["eval/".len()..].replace('/', "_")),
        );
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|{}", ":--|".repeat(header.len()));
        let cell = |value: Option<f64>| value.map_or("-".to_string(), format_value);
        for (step, row) in &rows {
            let mut cells = vec![cell(row.epoch), step.to_string(), cell(row.loss)];
            cells.extend(eval_keys.iter().map(|k| cell(row.evals.get(k).copied())));
            if input.best_step == Some(*step) {
                cells = cells.into_iter().map(|c| format!("**{c}**")).collect();
            }
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        if input.best_step.is_some_and(|s| rows.contains_key(&s)) {
            out.push_str("\n* The bold row denotes the saved checkpoint.\n");
        }
        if hide {
            out.push_str("\n</details>\n");
        }
    }
    if let Some(plot) = &input.plot {
        let _ = writeln!(out, "\n![Training loss and evaluation metrics]({plot})");
    }
}

fn training_details(out: &mut String, input: &CardInput) {
    out.push_str("## Training Details\n");
    for (role, title, samples) in [
        (DatasetRole::Training, "Training", "training"),
        (DatasetRole::Evaluation, "Evaluation", "evaluation"),
    ] {
        let datasets: Vec<&DatasetInfo> =
            input.datasets.iter().filter(|d| d.role == role).collect();
        if datasets.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n### {title} Dataset{}",
            if datasets.len() > 1 { "s" } else { "" }
        );
        for dataset in datasets {
            let _ = writeln!(out, "\n#### {}\n", dataset.name);
            let _ = writeln!(out, "* Dataset: {}", dataset_link(dataset));
            let _ = writeln!(out, "* Size: {} {samples} samples", thousands(dataset.rows));
            let columns: Vec<String> = dataset
                .columns
                .iter()
                .map(|c| format!("<code>{c}</code>"))
                .collect();
            let _ = writeln!(out, "* Columns: {}", english_list(&columns));
        }
    }
    if !input.losses.is_empty() {
        let _ = writeln!(
            out,
            "\n### Loss{}\n\nThe training loss is the weighted sum of {}:",
            if input.losses.len() > 1 { "es" } else { "" },
            if input.losses.len() > 1 {
                "these losses"
            } else {
                "one loss"
            }
        );
        for loss in &input.losses {
            loss_section(out, loss);
        }
    }
    if !input.hyperparameters.is_empty() {
        let mut document = toml::Table::new();
        document.insert(
            "train".to_string(),
            toml::Value::Table(input.hyperparameters.clone()),
        );
        let text = toml::to_string(&document).unwrap_or_else(|e| format!("# not printable: {e}\n"));
        let _ = write!(
            out,
            "\n### Training Hyperparameters\n\nThe `[train]` table of the resolved recipe:\n\n```toml\n{}```\n",
            text
        );
        let _ = writeln!(out, "\n{}", checkpoints_kept(&input.hyperparameters));
    }
    training_log(out, input);
    let _ = write!(
        out,
        "\n### Framework Versions\n\
         - crossdistill: {}\n\
         - Candle: {CANDLE_VERSION}\n\
         - Tokenizers: {TOKENIZERS_VERSION}\n\n",
        env!("CARGO_PKG_VERSION")
    );
}

/// What the run kept of its checkpoints, from `save_total_limit` (0 = all; recipes default to
/// a few so that a long run's checkpoints do not fill the disk).
fn checkpoints_kept(train: &toml::Table) -> String {
    match train.get("save_total_limit").and_then(toml::Value::as_integer) {
        Some(0) => "Checkpoints: the run kept every `checkpoint-STEP` directory (`save_total_limit = 0`).".to_string(),
        Some(limit) => format!(
            "Checkpoints: the run kept only its newest {limit} `checkpoint-STEP` directories (`save_total_limit = {limit}`; the default is 3, and 0 keeps every one)."
        ),
        None => "Checkpoints: the run kept every `checkpoint-STEP` directory.".to_string(),
    }
}

fn citations(out: &mut String, input: &CardInput) {
    // Citation → the names that share it (sentence-transformers groups identical citations).
    let mut groups: Vec<(String, Vec<String>)> = vec![(
        SENTENCE_TRANSFORMERS_CITATION.to_string(),
        vec!["Sentence Transformers".to_string()],
    )];
    for loss in &input.losses {
        let Some(citation) = &loss.citation else {
            continue;
        };
        let name = loss.class_name.clone();
        let citation = citation.trim().to_string();
        match groups.iter_mut().find(|(text, _)| *text == citation) {
            Some((_, names)) => {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            None => groups.push((citation, vec![name])),
        }
    }
    out.push_str("## Citation\n\n### BibTeX\n");
    for (citation, names) in groups {
        let title = match names.as_slice() {
            [one] => one.clone(),
            [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
            [] => unreachable!("every citation group has a name"),
        };
        let _ = write!(out, "\n#### {title}\n```bibtex\n{citation}\n```\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_says_how_many_checkpoints_were_kept() {
        let mut train = toml::Table::new();
        train.insert("save_total_limit".into(), toml::Value::Integer(3));
        assert!(checkpoints_kept(&train).contains("only its newest 3"));
        train.insert("save_total_limit".into(), toml::Value::Integer(0));
        assert!(checkpoints_kept(&train).contains("kept every"));
    }

    #[test]
    fn python_title_matches_str_title() {
        // Python: "mrr@10".title() == "Mrr@10"; "f1 macro".title() == "F1 Macro";
        // "base ndcg@10".title() == "Base Ndcg@10"; "accuracy threshold".title() ==
        // "Accuracy Threshold".
        assert_eq!(python_title("mrr@10"), "Mrr@10");
        assert_eq!(python_title("f1 macro"), "F1 Macro");
        assert_eq!(python_title("base ndcg@10"), "Base Ndcg@10");
        assert_eq!(python_title("accuracy threshold"), "Accuracy Threshold");
        assert_eq!(python_title("MAP"), "Map");
    }

    #[test]
    fn yaml_scalars_are_quoted_only_when_needed() {
        assert_eq!(yaml_string("loss:MarginMSELoss"), "loss:MarginMSELoss");
        assert_eq!(
            yaml_string("cross-encoder/ms-marco-MiniLM-L6-v2"),
            "cross-encoder/ms-marco-MiniLM-L6-v2"
        );
        assert_eq!(yaml_string("ms marco"), "\"ms marco\"");
        assert_eq!(yaml_string("yes"), "\"yes\"");
        assert_eq!(yaml_string("1e5"), "\"1e5\"");
        assert_eq!(yaml_string("a: b"), "\"a: b\"");
        assert_eq!(yaml_string(""), "\"\"");
        assert_eq!(yaml_number(f64::NAN), ".nan");
    }

    #[test]
    fn numbers_and_lists_read_like_st() {
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(999), "999");
        let names = ["a", "b", "c"].map(String::from);
        assert_eq!(english_list(&names), "a, b, and c");
        assert_eq!(english_list(&names[..2]), "a and b");
    }

    #[test]
    fn a_loss_is_titled_by_its_class_name_and_only_built_in_ones_link_to_sbert() {
        let section = |kind: &str, class_name: &str| {
            let mut out = String::new();
            loss_section(
                &mut out,
                &LossInfo {
                    kind: kind.into(),
                    class_name: class_name.into(),
                    weight: 1.0,
                    params: serde_json::json!({}),
                    citation: None,
                },
            );
            out
        };
        let built_in = section("margin_mse", "MarginMSELoss");
        assert!(built_in.contains("#### MarginMSELoss"), "{built_in}");
        assert!(built_in.contains("losses.html#marginmseloss"), "{built_in}");
        let custom = section("pairwise_hinge", "PairwiseHingeLoss");
        assert!(custom.contains("#### PairwiseHingeLoss"), "{custom}");
        assert!(
            custom.contains("* Loss: <code>PairwiseHingeLoss</code> with"),
            "{custom}"
        );
        assert!(!custom.contains("sbert.net"), "{custom}");
    }

    #[test]
    fn versions_match_cargo_lock() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
            .expect("Cargo.lock is committed");
        let version_of = |name: &str| {
            let entry = format!("name = \"{name}\"\nversion = \"");
            let start = lock
                .find(&entry)
                .unwrap_or_else(|| panic!("{name} in Cargo.lock"))
                + entry.len();
            lock[start..].split('"').next().unwrap().to_string()
        };
        assert_eq!(
            version_of("candle-core"),
            CANDLE_VERSION,
            "update CANDLE_VERSION"
        );
        assert_eq!(
            version_of("tokenizers"),
            TOKENIZERS_VERSION,
            "update TOKENIZERS_VERSION"
        );
    }
}
