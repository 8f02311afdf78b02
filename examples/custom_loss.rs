//! A user-defined loss, registered by name and used from a recipe.
//!
//!   cargo run --release --example custom_loss
//!
//! `PairwiseHinge` pushes the student's score of (query, positive) above (query, negative) by a
//! margin: `mean(max(0, margin − (s_pos − s_neg)))`. It is built with the model's `num_labels`
//! first (the factory), gets the batch's text columns and optional labels in `compute`, returns
//! one scalar on the autograd graph, and reports its config and citation for the model card. Its
//! title on the card is `Loss::class_name`, by default the kind in CamelCase + `Loss`
//! (`PairwiseHingeLoss`); override it to name the loss otherwise.

use crossdistill::error::{Error, Result};
use crossdistill::loss::{
    register_custom_loss, require_columns, student_logits, text_column, Loss, LossInput,
    LossRegistry, LossValue,
};
use crossdistill::model::{CrossEncoder, Dropout};
use crossdistill::train::{train, Plan, TrainProgress};

/// Hinge loss on (query, positive, negative) rows.
pub struct PairwiseHinge {
    margin: f64,
}

impl PairwiseHinge {
    /// The factory a recipe's `[[loss]] kind = "pairwise_hinge"` calls with its other keys.
    pub fn build(params: &toml::Table, num_labels: usize) -> Result<Box<dyn Loss>> {
        if num_labels != 1 {
            return Err(Error::invalid(format!(
                "pairwise_hinge needs num_labels = 1, found {num_labels}"
            )));
        }
        let mut margin = 1.0;
        for (key, value) in params {
            match (
                key.as_str(),
                value
                    .as_float()
                    .or_else(|| value.as_integer().map(|i| i as f64)),
            ) {
                ("margin", Some(m)) if m >= 0.0 => margin = m,
                ("margin", _) => {
                    return Err(Error::invalid(format!(
                        "pairwise_hinge: margin must be a number >= 0, found {value}"
                    )))
                }
                (other, _) => {
                    return Err(Error::invalid(format!(
                        "pairwise_hinge: unknown parameter `{other}`; accepted: margin"
                    )))
                }
            }
        }
        Ok(Box::new(PairwiseHinge { margin }))
    }
}

impl Loss for PairwiseHinge {
    fn kind(&self) -> &str {
        "pairwise_hinge"
    }

    fn compute(
        &mut self,
        student: &CrossEncoder,
        input: &LossInput,
        dropout: &mut Dropout,
    ) -> Result<LossValue> {
        require_columns(
            input.examples,
            3,
            "pairwise_hinge",
            "query, positive, negative",
        )?;
        let queries = text_column(input.examples, 0, "pairwise_hinge")?;
        let positives = text_column(input.examples, 1, "pairwise_hinge")?;
        let negatives = text_column(input.examples, 2, "pairwise_hinge")?;
        let mut pairs: Vec<(&str, &str)> = queries.iter().copied().zip(positives).collect();
        pairs.extend(queries.iter().copied().zip(negatives));
        let batch = queries.len();
        let logits = student_logits(student, &pairs, Some(dropout))?.squeeze(1)?;
        let margins = (logits.narrow(0, 0, batch)? - logits.narrow(0, batch, batch)?)?;
        let loss = (margins.neg()? + self.margin)?.relu()?.mean_all()?;
        Ok(LossValue::Graph(loss))
    }

    fn config_dict(&self) -> serde_json::Value {
        serde_json::json!({"margin": self.margin})
    }

    fn citation(&self) -> Option<&'static str> {
        Some("@inproceedings{herbrich1999large, title={Large margin rank boundaries for ordinal regression}, author={Herbrich, Ralf and Graepel, Thore and Obermayer, Klaus}, year={1999}}")
    }
}

struct Print;
impl TrainProgress for Print {
    fn logged(&mut self, row: &serde_json::Value) {
        println!("{row}");
    }
}

fn main() -> anyhow::Result<()> {
    register_custom_loss("pairwise_hinge", PairwiseHinge::build);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let recipe = crossdistill::recipe::load(&root.join("recipes/custom-loss.toml"), &[])?;
    let plan = Plan::build(recipe, &LossRegistry::default())?;
    let report = train(plan, false, &mut Print)?;
    println!(
        "trained {} steps with pairwise_hinge; final model: {}",
        report.steps,
        report.final_dir.display()
    );
    Ok(())
}
