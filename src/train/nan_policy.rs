//! The non-finite policy (`train.on_nan`): finding a non-finite teacher score in a batch, and
//! failing a run that skipped too many steps.

use crate::error::{Error, Result};
use crate::pipeline::{teacher_pairs, Batch};

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
