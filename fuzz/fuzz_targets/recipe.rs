//! The recipe reader on arbitrary text: never a panic; `check` and `load` agree; a recipe that
//! loads writes a resolved recipe that loads again to an equal recipe (the contract of
//! `Recipe::to_resolved_toml`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::write("recipe.toml", data);
    let problems = crossdistill::recipe::check(&path, &[]);
    for problem in &problems {
        assert!(!problem.to_string().is_empty());
    }
    match crossdistill::recipe::load(&path, &[]) {
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
