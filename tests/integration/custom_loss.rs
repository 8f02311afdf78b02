//! A user-defined loss (the one in examples/custom_loss.rs) registered by name and used by a
//! recipe.

use crossdistill::loss::{register_custom_loss, LossRegistry};
use crossdistill::train::{train, Plan, Silent};

#[allow(dead_code)]
#[path = "../../examples/custom_loss.rs"]
pub mod example;

/// Register the example's loss (idempotent).
pub fn register() {
    register_custom_loss("pairwise_hinge", example::PairwiseHinge::build);
}

#[test]
fn a_registered_custom_loss_trains_from_a_recipe() {
    register();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let overrides = [
        format!("run.output_dir={}", out.path().join("run").display()),
        "train.max_steps=6".into(),
        "train.log_every=3".into(),
    ];
    let recipe =
        crossdistill::recipe::load(&root.join("recipes/custom-loss.toml"), &overrides).unwrap();
    let plan = Plan::build(recipe, &LossRegistry::default()).unwrap();
    let report = train(plan, false, &mut Silent).unwrap();
    assert_eq!(report.steps, 6);
    let metrics = std::fs::read_to_string(out.path().join("run/metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"loss/pairwise_hinge\""), "{metrics}");
    let card = std::fs::read_to_string(out.path().join("run/final/README.md")).unwrap();
    assert!(
        card.contains("herbrich1999large") && card.contains("\"margin\": 1.0"),
        "card has the loss config and citation"
    );
}

#[test]
fn custom_loss_parameters_are_checked() {
    register();
    let table: toml::Table = "margin = -1".parse().unwrap();
    let err = LossRegistry::default()
        .build("pairwise_hinge", &table, 1)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("margin must be a number >= 0, found -1"),
        "{err}"
    );
}

#[test]
fn a_custom_loss_is_titled_by_its_class_name() {
    register();
    let loss = LossRegistry::default()
        .build("pairwise_hinge", &toml::Table::new(), 1)
        .unwrap();
    assert_eq!(loss.kind(), "pairwise_hinge");
    assert_eq!(loss.class_name(), "PairwiseHingeLoss");
}
