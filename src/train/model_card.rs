//! The model card of a finished run: what the run knows (recipe, data, losses, teacher,
//! metrics, evaluation results), gathered into a card input and written to `final/README.md`.

use serde_json::Value;

use super::plan::Plan;
use super::trainer_state::TrainerState;
use crate::card::{
    dataset_reference, plot_metrics, render, CardInput, DatasetInfo, DatasetRole, EvalResult,
    LossInfo, TeacherInfo,
};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

/// Write `final/README.md` (the model card) and the metrics plot (in `final/` and the run dir).
pub fn write_card(plan: &Plan, state: &TrainerState, final_results: &[EvalResult]) -> Result<()> {
    let output_dir = &plan.output_dir;
    let final_dir = output_dir.join("final");
    let rows: Vec<Value> = std::fs::read_to_string(output_dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // A run can end without a single loss row (every logged step skipped by on_nan = "skip"):
    // then there is no plot, and the card says nothing of one.
    let plottable = rows.iter().any(|row| {
        row.as_object().is_some_and(|fields| {
            fields.iter().any(|(key, value)| {
                (key == "loss" || key.starts_with("eval/"))
                    && value.as_f64().is_some_and(f64::is_finite)
            })
        })
    });
    if plottable {
        plot_metrics(&rows, &output_dir.join("training_metrics.png"))?;
        plot_metrics(&rows, &final_dir.join("training_metrics.png"))?;
    }
    let resolved: toml::Table = plan
        .recipe
        .to_resolved_toml()
        .parse()
        .map_err(|e| Error::invalid(format!("resolved recipe does not parse: {e}")))?;
    let hyperparameters = resolved
        .get("train")
        .and_then(|t| t.as_table())
        .cloned()
        .unwrap_or_default();
    let columns =
        |section: &crate::recipe::DataSection| section.columns.clone().unwrap_or_default();
    // The card names data and models as a reader can find them (file name, hub id, directory
    // name); the paths of this machine stay in recipe.resolved.toml.
    let (train_name, train_hub_id) = dataset_reference(&plan.recipe.data.train.path);
    let mut datasets = vec![DatasetInfo {
        role: DatasetRole::Training,
        name: train_name,
        hub_id: train_hub_id,
        rows: plan.rows_per_epoch,
        columns: columns(&plan.recipe.data.train),
    }];
    if let (Some(section), Some(source)) = (&plan.recipe.data.eval, &plan.eval_source) {
        let (name, hub_id) = dataset_reference(&section.path);
        datasets.push(DatasetInfo {
            role: DatasetRole::Evaluation,
            name,
            hub_id,
            rows: crate::data::count_rows(source)?,
            columns: columns(section),
        });
    }
    // A hub id (or a Hugging Face cache snapshot of one) is linked on the card; a local
    // directory is named, not linked: its name is no hub id even when it looks like one.
    let files = plan.student.files();
    let reference = files.reference();
    let from_hub = plan.recipe.student.model.local_path().is_none()
        || files
            .dir
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with("models--"));
    let base_model = if from_hub {
        reference.clone()
    } else {
        format!("{reference} (local directory)")
    };
    let input = CardInput {
        model_name: format!("{reference} distilled with crossdistill"),
        base_model,
        num_labels: plan.student.num_labels(),
        max_length: plan.student.tokenizer().max_length(),
        teachers: plan
            .teacher_info
            .iter()
            .map(|(description, fingerprint)| TeacherInfo {
                description: description.clone(),
                fingerprint: fingerprint.clone(),
            })
            .collect(),
        datasets,
        losses: plan
            .losses
            .iter()
            .map(|l| LossInfo {
                kind: l.loss.kind().to_string(),
                class_name: l.loss.class_name(),
                weight: l.weight,
                params: l.loss.config_dict(),
                citation: l.loss.citation().map(str::to_string),
            })
            .collect(),
        hyperparameters,
        metrics_rows: rows,
        eval_results: final_results.to_vec(),
        best_step: state.best_step.map(|s| s as u64),
        plot: plottable.then(|| "training_metrics.png".into()),
        ..CardInput::default()
    };
    write_atomic(&final_dir.join("README.md"), render(&input).as_bytes())
}
