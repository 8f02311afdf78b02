//! The non-finite policy (`train.on_nan`): finding a non-finite teacher score in a batch,
//! stopping or skipping a step with non-finite values, and failing a run that skipped too many
//! steps. Decisions and messages only; the trainer skips.

use crate::error::{Error, Result};
use crate::pipeline::{teacher_pairs, Batch};
use crate::recipe::OnNan;

/// Most steps a run may skip (`train.on_nan = "skip"`), as a fraction of its steps: a run that
/// skipped more learned from too little of its data to be reported as a success.
pub const MAX_SKIPPED_FRACTION: f64 = 0.5;

/// Fail a run that skipped every step, or more than [`MAX_SKIPPED_FRACTION`] of them.
pub fn check_skipped(skipped: usize, steps: usize) -> Result<()> {
    if skipped == 0 || (skipped as f64) <= MAX_SKIPPED_FRACTION * steps as f64 {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{skipped} of {steps} steps were skipped (train.on_nan = \"skip\"): non-finite teacher scores, losses or gradients; the student was {} trained",
        if skipped == steps { "not" } else { "barely" }
    ))
    .with_hint(format!(
        "the log names the rows of each skipped batch: fix them (or the teacher, or lower train.learning_rate) and train again; a run may skip at most {}% of its steps",
        (MAX_SKIPPED_FRACTION * 100.0) as usize
    )))
}

/// The error that stops a run (`train.on_nan = "stop"`) at a teacher score `bad` (as
/// [`non_finite_teacher_score`] describes it) in `step`.
pub fn teacher_scored_non_finite(step: usize, bad: &str) -> Error {
    Error::invalid(format!("step {step}: the teacher scored {bad}"))
        .with_hint("check the teacher model (its weights or its ONNX export give non-finite scores for these pairs), or set train.on_nan = \"skip\" to skip such batches")
}

/// A step whose teacher scores, loss or gradients are not all finite.
pub struct NonFiniteStep<'a> {
    /// The step (1-based).
    pub step: usize,
    /// The first non-finite teacher score, described, when that is the cause.
    pub teacher_score: Option<&'a str>,
    /// The step's loss.
    pub loss: f64,
    /// The lines of the step's rows.
    pub lines: &'a [usize],
    /// The training data as messages name it.
    pub train_name: &'a str,
}

impl NonFiniteStep<'_> {
    /// Under `on_nan = "stop"` the error that ends the run; under `"skip"` the message that
    /// tells of the skipped step.
    pub fn skip_or_stop(&self, on_nan: OnNan) -> Result<String> {
        let Self {
            step,
            loss,
            lines,
            train_name,
            ..
        } = self;
        match on_nan {
            OnNan::Stop => Err(Error::invalid(format!(
                "non-finite loss or gradient at step {step} (loss {loss}); the batch holds the rows at lines {lines:?} of {train_name}",
            ))
            .with_hint("lower train.learning_rate, check those rows and the teacher's scores for NaN/inf, or set train.on_nan = \"skip\" to skip such batches")),
            OnNan::Skip => {
                let cause = match self.teacher_score {
                    Some(bad) => format!("the teacher scored {bad}"),
                    None => format!("non-finite loss or gradient (loss {loss})"),
                };
                Ok(format!(
                    "step {step}: {cause}, batch skipped (rows at lines {lines:?} of {train_name})",
                ))
            }
        }
    }
}

/// The first non-finite teacher score of a batch, with its pair and row, and how many more the
/// batch holds; `None` when every score is finite (or there are none).
pub fn non_finite_teacher_score(batch: &Batch, train_file: &str) -> Option<String> {
    let scores = batch.teacher_scores.as_ref()?;
    let mut first: Option<String> = None;
    let mut count = 0usize;
    for (example, example_scores) in batch.examples.iter().zip(scores) {
        for (index, score) in example_scores.iter().enumerate() {
            if score.is_finite() {
                continue;
            }
            count += 1;
            if first.is_none() {
                let pair = teacher_pairs(example, None)
                    .ok()
                    .and_then(|pairs| pairs.get(index).copied())
                    .map_or_else(
                        || format!("pair {}", index + 1),
                        |(query, document)| {
                            format!("({:?}, {:?})", shorten(query), shorten(document))
                        },
                    );
                first = Some(format!(
                    "{score} for {pair} of the row at line {} of {train_file}",
                    example.line
                ));
            }
        }
    }
    first.map(|first| match count {
        1 => first,
        n => format!("{first}, and {} more non-finite scores in the batch", n - 1),
    })
}

/// A text cut to its first 60 characters, for messages.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_finite_step_stops_or_is_skipped_naming_its_rows() {
        let step = NonFiniteStep {
            step: 3,
            teacher_score: None,
            loss: f64::NAN,
            lines: &[4, 7],
            train_name: "train.jsonl",
        };
        let stop = step.skip_or_stop(OnNan::Stop).unwrap_err().to_string();
        assert!(
            stop.contains("non-finite loss or gradient at step 3 (loss NaN); the batch holds the rows at lines [4, 7] of train.jsonl"),
            "{stop}"
        );
        assert_eq!(
            step.skip_or_stop(OnNan::Skip).unwrap(),
            "step 3: non-finite loss or gradient (loss NaN), batch skipped (rows at lines [4, 7] of train.jsonl)"
        );
        let teacher = NonFiniteStep {
            teacher_score: Some("NaN for pair 1"),
            ..step
        };
        assert!(teacher
            .skip_or_stop(OnNan::Skip)
            .unwrap()
            .starts_with("step 3: the teacher scored NaN for pair 1, batch skipped"));
    }

    #[test]
    fn skipping_more_than_half_the_steps_fails_the_run() {
        assert!(check_skipped(0, 10).is_ok());
        assert!(check_skipped(5, 10).is_ok());
        let err = check_skipped(6, 10).unwrap_err().to_string();
        assert!(err.contains("6 of 10 steps were skipped"), "{err}");
        assert!(err.contains("barely trained"), "{err}");
        let err = check_skipped(4, 4).unwrap_err().to_string();
        assert!(err.contains("not trained"), "{err}");
    }
}
