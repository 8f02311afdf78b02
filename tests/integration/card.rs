//! The model card of a synthetic run: every section, valid YAML front matter with the
//! model-index, and a PNG plot that decodes.

use std::collections::BTreeMap;

use crossdistill::card::{
    plot_metrics, render, CardInput, DatasetInfo, DatasetRole, EvalResult, LossInfo, TeacherInfo,
};
use serde_json::{json, Value};

const MARGIN_MSE_CITATION: &str = "@misc{hofstatter2021improving,
    title={Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation},
    author={Sebastian Hofstätter and Sophia Althammer and Michael Schröder and Mete Sertkan and Allan Hanbury},
    year={2021},
    eprint={2010.02666},
    archivePrefix={arXiv},
    primaryClass={cs.IR}
}";

fn metrics_rows() -> Vec<Value> {
    let mut rows = Vec::new();
    for step in 1..=40u64 {
        let loss = 1.0 / (1.0 + step as f64 * 0.2);
        rows.push(json!({
            "step": step,
            "epoch": step as f64 / 40.0,
            "loss": loss,
            "loss/margin_mse": loss * 0.7,
            "loss/list_net": loss * 0.3,
            "learning_rate": 2e-5,
            "grad_norm": 1.0,
            "pairs_per_s": 50.0,
        }));
        if step % 10 == 0 {
            rows.push(json!({
                "step": step,
                "eval/dev/ndcg@10": 0.5 + step as f64 / 100.0,
                "eval/dev/map": 0.4 + step as f64 / 120.0,
                "eval/sts/spearman": 0.3 + step as f64 / 200.0,
            }));
        }
    }
    rows
}

fn input() -> CardInput {
    let mut hyperparameters = toml::Table::new();
    hyperparameters.insert("epochs".into(), toml::Value::Integer(1));
    hyperparameters.insert("learning_rate".into(), toml::Value::Float(2e-5));
    hyperparameters.insert("scheduler".into(), toml::Value::String("linear".into()));
    CardInput {
        model_name: "MiniLM-L2 distilled from MiniLM-L6".into(),
        model_id: "someone/minilm-l2-distilled".into(),
        base_model: "cross-encoder/ms-marco-MiniLM-L2-v2".into(),
        num_labels: 1,
        max_length: 256,
        language: vec!["en".into()],
        license: Some("apache-2.0".into()),
        teachers: vec![TeacherInfo {
            description: "candle cross-encoder/ms-marco-MiniLM-L6-v2 (identity)".into(),
            fingerprint: "candle|weights=0123456789abcdef|tokenizer=fedcba9876543210".into(),
        }],
        datasets: vec![
            DatasetInfo {
                role: DatasetRole::Training,
                name: "msmarco-hard-negatives".into(),
                hub_id: Some("sentence-transformers/msmarco-hard-negatives".into()),
                rows: 12345,
                columns: vec!["query".into(), "positive".into(), "negative".into()],
            },
            DatasetInfo {
                role: DatasetRole::Evaluation,
                name: "dev.jsonl".into(),
                hub_id: None,
                rows: 500,
                columns: vec!["query".into(), "positive".into(), "documents".into()],
            },
        ],
        losses: vec![
            LossInfo {
                kind: "margin_mse".into(),
                class_name: "MarginMSELoss".into(),
                weight: 1.0,
                params: json!({"activation_fn": "torch.nn.modules.linear.Identity"}),
                citation: Some(MARGIN_MSE_CITATION.into()),
            },
            LossInfo {
                kind: "list_net".into(),
                class_name: "ListNetLoss".into(),
                weight: 0.5,
                params: json!({"activation_fn": "torch.nn.modules.linear.Identity", "mini_batch_size": null}),
                citation: None,
            },
        ],
        hyperparameters,
        metrics_rows: metrics_rows(),
        eval_results: vec![
            EvalResult {
                name: "dev".into(),
                description: "Cross Encoder Reranking".into(),
                primary_metric: Some("ndcg@10".into()),
                config: json!({"at_k": 10, "always_rerank_positives": true}),
                metrics: BTreeMap::from([
                    ("map".to_string(), 0.6),
                    ("mrr@10".to_string(), 0.65),
                    ("ndcg@10".to_string(), 0.9),
                    ("base_map".to_string(), 0.5),
                    ("base_mrr@10".to_string(), 0.55),
                    ("base_ndcg@10".to_string(), 0.6),
                ]),
            },
            EvalResult {
                name: "sts".into(),
                description: "Cross Encoder Correlation".into(),
                primary_metric: Some("spearman".into()),
                config: json!({}),
                metrics: BTreeMap::from([
                    ("pearson".to_string(), 0.45),
                    ("spearman".to_string(), f64::NAN),
                ]),
            },
        ],
        best_step: Some(30),
        plot: Some("training_metrics.png".into()),
        examples: vec![
            (
                "what is python".into(),
                "Python is a programming language.".into(),
            ),
            (
                "what is python".into(),
                "A python is a large snake, \"not\" a language.".into(),
            ),
        ],
    }
}

fn front_matter(card: &str) -> serde_yaml::Value {
    let rest = card
        .strip_prefix("---\n")
        .expect("the card opens with front matter");
    let end = rest.find("\n---\n").expect("the front matter is closed");
    serde_yaml::from_str(&rest[..end]).expect("the front matter is valid YAML")
}

#[test]
fn card_front_matter_is_valid_yaml_with_the_model_index() {
    let card = render(&input());
    let yaml = front_matter(&card);
    assert_eq!(yaml["library_name"], "sentence-transformers");
    assert_eq!(yaml["base_model"], "cross-encoder/ms-marco-MiniLM-L2-v2");
    assert_eq!(yaml["pipeline_tag"], "text-ranking");
    assert_eq!(yaml["language"], "en");
    assert_eq!(yaml["license"], "apache-2.0");
    let tags: Vec<&str> = yaml["tags"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for tag in [
        "sentence-transformers",
        "cross-encoder",
        "reranker",
        "distillation",
        "generated_from_trainer",
        "dataset_size:12345",
        "loss:MarginMSELoss",
        "loss:ListNetLoss",
    ] {
        assert!(tags.contains(&tag), "{tag} in {tags:?}");
    }
    assert_eq!(
        yaml["datasets"],
        serde_yaml::from_str::<serde_yaml::Value>("[sentence-transformers/msmarco-hard-negatives]")
            .unwrap()
    );
    assert_eq!(
        yaml["metrics"],
        serde_yaml::from_str::<serde_yaml::Value>("[map, mrr@10, ndcg@10, pearson, spearman]")
            .unwrap()
    );
    // sentence-transformers' model-index layout (base_model_card.format_eval_metrics): one result
    // per evaluator, reranking without the base_* values, NaN left out.
    let index = &yaml["model-index"][0];
    assert_eq!(index["name"], "MiniLM-L2 distilled from MiniLM-L6");
    let results = index["results"].as_sequence().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["task"]["type"], "cross-encoder-reranking");
    assert_eq!(results[0]["task"]["name"], "Cross Encoder Reranking");
    assert_eq!(results[0]["dataset"]["name"], "dev");
    let metrics = results[0]["metrics"].as_sequence().unwrap();
    assert_eq!(metrics.len(), 3);
    assert_eq!(metrics[2]["type"], "ndcg@10");
    assert_eq!(metrics[2]["value"], 0.9);
    assert_eq!(metrics[2]["name"], "Ndcg@10");
    let sts = results[1]["metrics"].as_sequence().unwrap();
    assert_eq!(sts.len(), 1, "spearman is NaN: {sts:?}");
    assert_eq!(sts[0]["type"], "pearson");
}

#[test]
fn card_has_every_section() {
    let card = render(&input());
    let body = &card[card.find("\n---\n").unwrap()..];
    let sections = [
        "# MiniLM-L2 distilled from MiniLM-L6\n",
        "## Model Details",
        "### Model Description",
        "- **Base model:** [cross-encoder/ms-marco-MiniLM-L2-v2](https://huggingface.co/cross-encoder/ms-marco-MiniLM-L2-v2)",
        "- **Maximum Sequence Length:** 256 tokens",
        "- **Number of Output Labels:** 1 label",
        "## Usage",
        "crossdistill predict --model 'someone/minilm-l2-distilled' --input pairs.jsonl",
        "crossdistill rank --model 'someone/minilm-l2-distilled' --query 'what is python'",
        "from sentence_transformers import CrossEncoder",
        "model = CrossEncoder(\"someone/minilm-l2-distilled\")",
        "    [\"what is python\", \"A python is a large snake, \\\"not\\\" a language.\"],",
        "# (2,)",
        "ranks = model.rank(",
        "## Distillation",
        "### Teachers",
        "- candle cross-encoder/ms-marco-MiniLM-L6-v2 (identity)",
        "    - Fingerprint: `candle|weights=0123456789abcdef|tokenizer=fedcba9876543210`",
        "## Evaluation",
        "#### Cross Encoder Reranking",
        "* Dataset: `dev`",
        "CrossEncoderRerankingEvaluator",
        "\"always_rerank_positives\": true",
        "| map | 0.6000 (+0.1000) |",
        "| **ndcg@10** | **0.9000 (+0.3000)** |",
        "| pearson | 0.4500 |",
        "| **spearman** | **nan** |",
        "## Training Details",
        "### Training Dataset\n",
        "* Dataset: [msmarco-hard-negatives](https://huggingface.co/datasets/sentence-transformers/msmarco-hard-negatives)",
        "* Size: 12,345 training samples",
        "* Columns: <code>query</code>, <code>positive</code>, and <code>negative</code>",
        "### Evaluation Dataset\n",
        "* Size: 500 evaluation samples",
        "### Losses",
        "#### MarginMSELoss",
        "* Recipe kind: `margin_mse`, weight 1",
        "[<code>MarginMSELoss</code>](https://sbert.net/docs/package_reference/cross_encoder/losses.html#marginmseloss) with these parameters:",
        "    \"activation_fn\": \"torch.nn.modules.linear.Identity\"",
        "#### ListNetLoss",
        "* Recipe kind: `list_net`, weight 0.5",
        "### Training Hyperparameters",
        "```toml\n[train]\nepochs = 1\nlearning_rate = 0.00002\nscheduler = \"linear\"\n```",
        "### Training Logs",
        "| Epoch | Step | Training Loss | dev_ndcg@10 | dev_map | sts_spearman |",
        "| 0.0250 | 1 | 0.8333 | - | - | - |",
        "| **0.7500** | **30** | **0.1429** | **0.8000** | **0.6500** | **0.4500** |",
        "* The bold row denotes the saved checkpoint.",
        "![Training loss and evaluation metrics](training_metrics.png)",
        "### Framework Versions",
        concat!("- crossdistill: ", env!("CARGO_PKG_VERSION")),
        "- Candle: 0.",
        "## Citation",
        "#### Sentence Transformers\n```bibtex\n@inproceedings{reimers-2019-sentence-bert,",
        "#### MarginMSELoss\n```bibtex\n@misc{hofstatter2021improving,",
    ];
    let mut last = 0;
    for section in sections {
        let at = body
            .find(section)
            .unwrap_or_else(|| panic!("missing {section:?} in:\n{body}"));
        assert!(at >= last, "{section:?} is out of order");
        last = at;
    }
    assert!(
        !body.contains("#### ListNetLoss\n```bibtex"),
        "no citation, no BibTeX block"
    );
}

#[test]
fn card_without_teacher_or_results_still_renders() {
    let card = render(&CardInput {
        base_model: "/models/local-student".into(),
        num_labels: 3,
        ..CardInput::default()
    });
    let yaml = front_matter(&card);
    assert_eq!(yaml["pipeline_tag"], "text-classification");
    assert!(
        yaml.get("base_model").is_none(),
        "a local path is not a hub base_model"
    );
    assert!(yaml.get("model-index").is_none());
    assert!(card.contains("# CrossEncoder based on /models/local-student"));
    assert!(card.contains("No teacher: the student learned from the labels"));
    assert!(card.contains("# (3, 3)"));
    assert!(!card.contains("## Evaluation"));
}

#[test]
fn plot_is_a_png_of_the_requested_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plots/training_metrics.png");
    plot_metrics(&metrics_rows(), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG magic");
    let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), (1000, 800));
    // Curves are drawn in colour: count pixels that are neither white nor grey.
    let coloured = pixels[..frame.buffer_size()]
        .chunks(3)
        .filter(|p| {
            let (max, min) = (p.iter().max().unwrap(), p.iter().min().unwrap());
            max - min > 60
        })
        .count();
    assert!(coloured > 2000, "only {coloured} coloured pixels");
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
}

#[test]
fn plot_errors_on_rows_without_anything_to_draw() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plot.png");
    let err = plot_metrics(&[json!({"step": 1, "learning_rate": 1e-5})], &path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing to plot"), "{err}");
    assert!(!path.exists());
}
