//! `score`'s shard from the scheduler that launched it, when `--shard` is not given: Slurm job
//! arrays and Kubernetes Indexed Jobs give each task its index in the environment.
//!
//! * Slurm (`sbatch --array=0-7`): `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`, and
//!   `SLURM_ARRAY_TASK_MIN` / `SLURM_ARRAY_TASK_STEP` so that `--array=1-8` or `--array=0-14:2`
//!   number their tasks 0..N too.
//! * Kubernetes Indexed Job (`completionMode: Indexed`): `JOB_COMPLETION_INDEX`; Kubernetes does
//!   not export the number of completions, so the manifest sets `CROSSDISTILL_SHARD_COUNT` to it.

use crate::cache::Shard;
use crate::error::{Error, Result};

/// The environment variable that carries the shard count of a Kubernetes Indexed Job.
pub const SHARD_COUNT_VAR: &str = "CROSSDISTILL_SHARD_COUNT";

/// The shard the scheduler's variables name (read through `var`), with where it came from;
/// `None` when neither scheduler's index is set. Errors name the variable and its value.
pub fn shard_from_env(
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<(Shard, &'static str)>> {
    let number = |name: &str| -> Result<Option<u64>> {
        match var(name) {
            None => Ok(None),
            Some(text) => text.trim().parse().map(Some).map_err(|_| {
                Error::invalid(format!(
                    "{name}={text:?}: expected a whole number (a shard index or count)"
                ))
                .with_hint("or pass the shard explicitly with --shard I/N")
            }),
        }
    };
    if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
        let Some(count) = number("SLURM_ARRAY_TASK_COUNT")? else {
            return Err(Error::invalid(
                "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: cannot tell how many shards there are",
            )
            .with_hint("run inside an `sbatch --array=...` job, or pass --shard I/N"));
        };
        let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        let offset = id.checked_sub(min).filter(|offset| offset % step == 0);
        let Some(offset) = offset else {
            return Err(Error::invalid(format!(
                "Slurm array task {id} (min {min}, step {step}) is not on the array's grid; \
                 shards need a regular array such as --array=0-{}",
                count.saturating_sub(1)
            ))
            .with_hint("use --array=0-(N-1), or pass --shard I/N"));
        };
        let shard = Shard::new(offset / step, count).map_err(|_| {
            Error::invalid(format!(
                "Slurm array task {id} (min {min}, step {step}) is task {} of {count}: \
                 shards need a regular array such as --array=0-{}",
                offset / step,
                count.saturating_sub(1)
            ))
            .with_hint("use --array=0-(N-1) without gaps, or pass --shard I/N")
        })?;
        return Ok(Some((shard, "Slurm job array")));
    }
    if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let Some(count) = number(SHARD_COUNT_VAR)? else {
            return Err(Error::invalid(format!(
                "JOB_COMPLETION_INDEX is set (Kubernetes Indexed Job) but {SHARD_COUNT_VAR} is not: \
                 Kubernetes does not export the number of completions"
            ))
            .with_hint(format!(
                "set {SHARD_COUNT_VAR} to the Job's `completions` in its manifest, or pass --shard I/N"
            )));
        };
        let shard = Shard::new(index, count).map_err(|e| {
            Error::invalid(format!(
                "JOB_COMPLETION_INDEX={index} with {SHARD_COUNT_VAR}={count}: {e}"
            ))
            .with_hint(format!(
                "{SHARD_COUNT_VAR} must equal the Job's `completions`"
            ))
        })?;
        return Ok(Some((shard, "Kubernetes Indexed Job")));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    fn shard(pairs: &[(&str, &str)]) -> Option<Shard> {
        shard_from_env(env(pairs)).unwrap().map(|(shard, _)| shard)
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        shard_from_env(env(pairs)).unwrap_err().to_string()
    }

    #[test]
    fn nothing_set_means_no_shard() {
        assert_eq!(shard(&[]), None);
    }

    #[test]
    fn slurm_arrays_number_their_tasks_from_zero() {
        let zero_based = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
        ];
        assert_eq!(shard(&zero_based), Some(Shard::new(3, 8).unwrap()));
        let one_based = [
            ("SLURM_ARRAY_TASK_ID", "8"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert_eq!(shard(&one_based), Some(Shard::new(7, 8).unwrap()));
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "14"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ];
        assert_eq!(shard(&stepped), Some(Shard::new(7, 8).unwrap()));
    }

    #[test]
    fn kubernetes_indexed_jobs_need_the_count() {
        let job = [("JOB_COMPLETION_INDEX", "2"), (SHARD_COUNT_VAR, "4")];
        assert_eq!(shard(&job), Some(Shard::new(2, 4).unwrap()));
        let err = error(&[("JOB_COMPLETION_INDEX", "2")]);
        assert!(
            err.contains(SHARD_COUNT_VAR) && err.contains("completions"),
            "{err}"
        );
        let err = error(&[("JOB_COMPLETION_INDEX", "4"), (SHARD_COUNT_VAR, "4")]);
        assert!(err.contains("JOB_COMPLETION_INDEX=4"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = error(&[
            ("SLURM_ARRAY_TASK_ID", "x"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ]);
        assert!(err.contains("SLURM_ARRAY_TASK_ID=\"x\""), "{err}");
        let err = error(&[("SLURM_ARRAY_TASK_ID", "1")]);
        assert!(err.contains("SLURM_ARRAY_TASK_COUNT"), "{err}");
        // An irregular array (--array=1,3,9) leaves tasks off the grid.
        let err = error(&[
            ("SLURM_ARRAY_TASK_ID", "9"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ]);
        assert!(err.contains("task 8 of 3"), "{err}");
    }
}
