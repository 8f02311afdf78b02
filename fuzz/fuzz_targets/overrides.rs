//! `--set KEY=VALUE` overrides (one per input line) applied to a valid recipe: never a panic,
//! `check` and `load` agree, and a recipe that loads round-trips through its resolved form.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const RECIPE: &str = r#"version = 1
[run]
output_dir = "run"
seed = 1
[teacher]
kind = "candle"
model = "teacher-model"
[student]
model = "student-model"
max_length = 32
[data.train]
path = "train.jsonl"
columns = ["query", "passage"]
[[loss]]
kind = "mse"
labels = "teacher"
[[eval]]
kind = "reranking"
path = "dev.jsonl"
[train]
batch_size = 4
"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let overrides: Vec<String> = text.lines().map(str::to_string).collect();
    let path = common::write("recipe.toml", RECIPE.as_bytes());
    let problems = crossdistill::recipe::check(&path, &overrides);
    match crossdistill::recipe::load(&path, &overrides) {
        Ok(recipe) => {
            assert!(
                problems.is_empty(),
                "load accepted what check rejects: {problems:?}"
            );
            let resolved =
                common::write("recipe.resolved.toml", recipe.to_resolved_toml().as_bytes());
            let again = crossdistill::recipe::load(&resolved, &[])
                .unwrap_or_else(|e| panic!("the resolved recipe does not load: {e}"));
            assert!(
                again == recipe,
                "the resolved recipe loads to another recipe"
            );
        }
        Err(error) => {
            assert!(
                !problems.is_empty(),
                "load rejected what check accepts: {error}"
            );
        }
    }
});
