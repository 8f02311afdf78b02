//! Evaluators from a recipe's `[[eval]]` sections, with their parameters checked.
//!
//! | `kind` | `path` | parameters (default) |
//! |---|---|---|
//! | `reranking` | JSONL samples | `at_k` (10), `always_rerank_positives` (true), `batch_size` (64) |
//! | `correlation` | JSONL labelled pairs | `columns` (detected), `label` (detected), `batch_size` (32) |
//! | `classification` | JSONL labelled pairs | `columns`, `label`, `batch_size` (32) |
//! | `agreement` | JSONL pairs | `columns`, `teacher_column` (detected) or `teacher` (a model to score the pairs), `per_query` (true), `batch_size` (32) |
//! | `beir` | a BEIR folder | `split` ("test"), `top_k` (100), `min_grade` (1), `run` (a TREC run; BM25 without), `k1` (1.5), `b` (0.75), `at_k`, `always_rerank_positives`, `batch_size` |
//! | `nano_beir` | — | an error: NanoBEIR lives on the Hugging Face hub |
//!
//! Unknown parameters are errors that name them and list the accepted ones; every error points
//! at the recipe file and the `[[eval]]` line. Relative paths in parameters (`run`, `teacher`)
//! resolve against the recipe's directory (`path` is already resolved by the recipe).
//!
//! This is the one place where `eval` uses `recipe` (for [`EvalSection`]); the recipe only
//! lists the kinds ([`EVAL_KINDS`](crate::recipe::EVAL_KINDS)).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::eval::read_labelled_pairs;
use crate::eval::AgreementEvaluator;
use crate::eval::Bm25Config;
use crate::eval::ClassificationEvaluator;
use crate::eval::CorrelationEvaluator;
use crate::eval::Evaluator;
use crate::eval::SampleOptions;
use crate::eval::{BeirFirstStage, BeirOptions, RerankingEvaluator, RerankingOptions};
use crate::model::LoadOptions;
use crate::params::{
    unknown_keys, ParamTable, BOOLEAN, INTEGER, NON_EMPTY_STRING, NUMBER, POSITIVE_INTEGER,
};
use crate::recipe::EvalSection;
use crate::teacher::load_candle_teacher;

/// Parameters each kind accepts (besides `kind`, `name` and `path`).
pub const EVAL_PARAMS: &[(&str, &[&str])] = &[
    (
        "reranking",
        &["at_k", "always_rerank_positives", "batch_size"],
    ),
    ("correlation", &["columns", "label", "batch_size"]),
    ("classification", &["columns", "label", "batch_size"]),
    (
        "agreement",
        &[
            "columns",
            "teacher_column",
            "teacher",
            "per_query",
            "batch_size",
        ],
    ),
    (
        "beir",
        &[
            "split",
            "top_k",
            "min_grade",
            "run",
            "k1",
            "b",
            "at_k",
            "always_rerank_positives",
            "batch_size",
        ],
    ),
    ("nano_beir", &[]),
];

/// Build the evaluator an `[[eval]]` section describes.
///
/// `recipe_path` is the recipe file (errors point at it; relative parameter paths resolve
/// against its directory); `num_labels` is the student's output count (classification picks
/// binary or multi-class metrics from it).
///
/// Errors: an unknown kind or parameter, a parameter of the wrong type or range, a missing or
/// unreadable data file (with its file and line), `nano_beir` (needs the hub).
pub fn from_section(
    section: &EvalSection,
    recipe_path: &Path,
    num_labels: usize,
) -> Result<Box<dyn Evaluator>> {
    let params = Params {
        section,
        recipe_path,
    };
    let accepted = EVAL_PARAMS
        .iter()
        .find(|(kind, _)| *kind == section.kind)
        .map(|(_, accepted)| *accepted)
        .ok_or_else(|| {
            params.error(format!(
                "unknown kind {:?}; expected one of {}",
                section.kind,
                EVAL_PARAMS
                    .iter()
                    .map(|(kind, _)| *kind)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    params.check_known(accepted)?;
    let name = section.name.clone();
    match section.kind.as_str() {
        "nano_beir" => Err(params
            .error(
                "kind nano_beir needs the Hugging Face hub (the sentence-transformers/Nano*-bm25 \
                 datasets), which crossdistill does not download",
            )
            .with_hint(
                "download a BEIR dataset folder and use kind = \"beir\" with path = \"DIR\"",
            )),
        "reranking" => Ok(Box::new(RerankingEvaluator::from_jsonl(
            name,
            &params.data_path()?,
            params.reranking_options()?,
        )?)),
        "correlation" => {
            let columns = params.columns()?;
            Ok(Box::new(CorrelationEvaluator::from_jsonl(
                name,
                &params.data_path()?,
                columns.as_ref().map(|[a, b]| [a.as_str(), b.as_str()]),
                params.string("label")?.as_deref(),
                params.positive_integer("batch_size", 32)?,
            )?))
        }
        "classification" => {
            let columns = params.columns()?;
            Ok(Box::new(ClassificationEvaluator::from_jsonl(
                name,
                &params.data_path()?,
                columns.as_ref().map(|[a, b]| [a.as_str(), b.as_str()]),
                params.string("label")?.as_deref(),
                num_labels,
                params.positive_integer("batch_size", 32)?,
            )?))
        }
        "agreement" => params.agreement(name),
        "beir" => {
            let beir = BeirOptions {
                split: params
                    .string("split")?
                    .unwrap_or_else(|| "test".to_string()),
                first_stage: match params.string("run")? {
                    Some(run) => BeirFirstStage::Run(params.relative(&run)),
                    None => {
                        let defaults = Bm25Config::default();
                        let config = Bm25Config {
                            k1: params.number("k1", defaults.k1)?,
                            b: params.number("b", defaults.b)?,
                        };
                        config.validate().map_err(|e| params.error(e.to_string()))?;
                        BeirFirstStage::Bm25(config)
                    }
                },
                samples: SampleOptions {
                    top_k: params.positive_integer("top_k", SampleOptions::default().top_k)?,
                    min_grade: params.integer("min_grade", SampleOptions::default().min_grade)?,
                },
            };
            Ok(Box::new(RerankingEvaluator::from_beir(
                name,
                &params.data_path()?,
                &beir,
                params.reranking_options()?,
            )?))
        }
        other => unreachable!("EVAL_PARAMS has kind {other:?} but from_section does not build it"),
    }
}

/// Typed access to one section's parameters, with errors at the section's line.
struct Params<'a> {
    section: &'a EvalSection,
    recipe_path: &'a Path,
}

impl ParamTable for Params<'_> {
    fn get(&self, key: &str) -> Option<&toml::Value> {
        self.section.params.get(key)
    }

    fn wrong(&self, key: &str, expected: &str, found: &toml::Value) -> Error {
        self.error(format!(
            "parameter {key}: expected {expected}, found {found}"
        ))
    }
}

impl Params<'_> {
    fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::input(
            self.recipe_path,
            self.section.line,
            format!(
                "[[eval]] {:?} (kind {}): {message}",
                self.section.name, self.section.kind
            ),
        )
    }

    fn check_known(&self, accepted: &[&str]) -> Result<()> {
        let unknown = unknown_keys(&self.section.params, accepted);
        if unknown.is_empty() {
            return Ok(());
        }
        let accepted: Vec<&str> = ["kind", "name", "path"]
            .into_iter()
            .chain(accepted.iter().copied())
            .collect();
        Err(self.error(format!(
            "unknown parameter(s) {}; accepted: {}",
            unknown.join(", "),
            accepted.join(", ")
        )))
    }

    fn data_path(&self) -> Result<PathBuf> {
        let path = self.section.path.clone().ok_or_else(|| {
            self.error("no `path`; this kind needs its evaluation data")
                .with_hint("add path = \"dev.jsonl\"")
        })?;
        if path.to_string_lossy().starts_with("hf://") {
            return Err(self
                .error(format!(
                    "path {} is on the Hugging Face hub; evaluation data must be a local file",
                    path.display()
                ))
                .with_hint("download the file and give its local path"));
        }
        Ok(path)
    }

    fn relative(&self, path: &str) -> PathBuf {
        let base = self.recipe_path.parent().unwrap_or(Path::new("."));
        base.join(path)
    }

    fn positive_integer(&self, key: &str, default: usize) -> Result<usize> {
        Ok(self.read(key, &POSITIVE_INTEGER)?.unwrap_or(default))
    }

    fn integer(&self, key: &str, default: i64) -> Result<i64> {
        Ok(self.read(key, &INTEGER)?.unwrap_or(default))
    }

    fn number(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.read(key, &NUMBER)?.unwrap_or(default))
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool> {
        Ok(self.read(key, &BOOLEAN)?.unwrap_or(default))
    }

    fn string(&self, key: &str) -> Result<Option<String>> {
        self.read(key, &NON_EMPTY_STRING)
    }

    fn columns(&self) -> Result<Option<[String; 2]>> {
        let Some(value) = self.get("columns") else {
            return Ok(None);
        };
        let names: Option<Vec<String>> = value.as_array().and_then(|items| {
            items
                .iter()
                .map(|item| item.as_str().map(str::to_string))
                .collect()
        });
        match names.as_deref() {
            Some([first, second]) => Ok(Some([first.clone(), second.clone()])),
            _ => Err(self.wrong(
                "columns",
                "two column names, e.g. [\"query\", \"passage\"]",
                value,
            )),
        }
    }

    fn reranking_options(&self) -> Result<RerankingOptions> {
        let defaults = RerankingOptions::default();
        Ok(RerankingOptions {
            at_k: self.positive_integer("at_k", defaults.at_k)?,
            always_rerank_positives: self
                .boolean("always_rerank_positives", defaults.always_rerank_positives)?,
            batch_size: self.positive_integer("batch_size", defaults.batch_size)?,
        })
    }

    fn agreement(&self, name: String) -> Result<Box<dyn Evaluator>> {
        let columns = self.columns()?;
        let columns = columns.as_ref().map(|[a, b]| [a.as_str(), b.as_str()]);
        let per_query = self.boolean("per_query", true)?;
        let batch_size = self.positive_integer("batch_size", 32)?;
        let teacher_column = self.string("teacher_column")?;
        let path = self.data_path()?;
        match self.string("teacher")? {
            Some(_) if teacher_column.is_some() => Err(self.error(
                "give `teacher` (a model that scores the pairs) or `teacher_column` (scores in \
                 the file), not both",
            )),
            Some(teacher) => {
                let base = self.recipe_path.parent().unwrap_or(Path::new("."));
                let mut teacher = load_candle_teacher(
                    &teacher,
                    Some(base),
                    &LoadOptions::default(),
                    batch_size,
                    None,
                )?;
                let data = read_labelled_pairs(&path, columns, crate::eval::LabelColumn::Absent)?;
                Ok(Box::new(AgreementEvaluator::from_teacher(
                    name,
                    data.pairs,
                    &mut teacher,
                    per_query,
                    batch_size,
                )?))
            }
            None => Ok(Box::new(AgreementEvaluator::from_jsonl(
                name,
                &path,
                columns,
                teacher_column.as_deref(),
                per_query,
                batch_size,
            )?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(kind: &str, path: Option<PathBuf>, params: &str) -> EvalSection {
        EvalSection {
            kind: kind.to_string(),
            name: "dev".to_string(),
            path,
            params: toml::from_str(params).unwrap(),
            line: Some(12),
        }
    }

    fn reranking_file(dir: &Path) -> PathBuf {
        let path = dir.join("rerank.jsonl");
        std::fs::write(
            &path,
            "{\"query\": \"q\", \"positive\": [\"p\"], \"negative\": [\"n\"]}\n",
        )
        .unwrap();
        path
    }

    fn build_error(section: &EvalSection) -> String {
        match from_section(section, Path::new("/r/recipe.toml"), 1) {
            Ok(evaluator) => panic!("built {:?}", evaluator.name()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn builds_a_reranking_evaluator_with_its_params() {
        let dir = tempfile::tempdir().unwrap();
        let path = reranking_file(dir.path());
        let evaluator = from_section(
            &section("reranking", Some(path), "at_k = 5\nbatch_size = 2"),
            Path::new("/r/recipe.toml"),
            1,
        )
        .unwrap();
        assert_eq!(evaluator.name(), "dev");
        assert_eq!(evaluator.primary_metric(), "ndcg@5");
        assert_eq!(evaluator.description(), "Cross Encoder Reranking");
    }

    #[test]
    fn unknown_and_ill_typed_params_are_errors_at_the_section() {
        let dir = tempfile::tempdir().unwrap();
        let path = reranking_file(dir.path());
        let err = build_error(&section(
            "reranking",
            Some(path.clone()),
            "top_k = 3\nat_kk = 1",
        ));
        assert_eq!(
            err,
            "/r/recipe.toml:12: [[eval]] \"dev\" (kind reranking): unknown parameter(s) top_k, \
             at_kk; accepted: kind, name, path, at_k, always_rerank_positives, batch_size"
        );
        let err = build_error(&section("reranking", Some(path.clone()), "at_k = -3"));
        assert!(
            err.contains("recipe.toml:12: ")
                && err.contains("parameter at_k: expected a positive integer, found -3"),
            "{err}"
        );
        let err = build_error(&section(
            "reranking",
            Some(path.clone()),
            "always_rerank_positives = \"yes\"",
        ));
        assert!(
            err.contains("expected true or false, found \"yes\""),
            "{err}"
        );
        let err = build_error(&section("correlation", Some(path), "columns = [\"a\"]"));
        assert!(
            err.contains("parameter columns: expected two column names"),
            "{err}"
        );
        let err = build_error(&section("beir", Some(dir.path().to_path_buf()), "b = 2.0"));
        assert!(err.contains("BM25 b is 2"), "{err}");
    }

    #[test]
    fn nano_beir_says_it_needs_the_hub() {
        let err = build_error(&section("nano_beir", None, ""));
        assert!(
            err.contains("recipe.toml:12:")
                && err.contains("needs the Hugging Face hub")
                && err.contains("kind = \"beir\""),
            "{err}"
        );
    }

    #[test]
    fn data_problems_name_the_data_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.jsonl");
        let err = build_error(&section("correlation", Some(missing), ""));
        assert!(
            err.contains("cannot read") && err.contains("missing.jsonl"),
            "{err}"
        );
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(
            &bad,
            "{\"query\": \"q\", \"passage\": \"p\", \"label\": 1}\n{\"query\": 1}\n",
        )
        .unwrap();
        let err = build_error(&section("classification", Some(bad), ""));
        assert!(
            err.contains("bad.jsonl:2: `query` must be a string"),
            "{err}"
        );
        let err = build_error(&section(
            "reranking",
            Some(PathBuf::from("hf://datasets/x/y/dev.jsonl")),
            "",
        ));
        assert!(
            err.contains("evaluation data must be a local file"),
            "{err}"
        );
    }

    #[test]
    fn every_recipe_kind_is_built_here() {
        for kind in crate::recipe::EVAL_KINDS {
            assert!(
                EVAL_PARAMS.iter().any(|(known, _)| known == kind),
                "{kind} has no parameter list"
            );
        }
    }
}
