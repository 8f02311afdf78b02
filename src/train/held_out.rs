//! The held-out pairs of a run's student–teacher agreement: read once, scored by the student
//! before and after training (the producer's teacher scores them).

use crate::data::{DataSource, Row};
use crate::error::{Error, Result};
use crate::model::{CrossEncoder, ScoreActivation};
use crate::pipeline::{teacher_pairs, ColumnRoles};

/// The held-out pairs the student scores, for student–teacher agreement.
pub struct HeldOut {
    /// (query, passage) pairs as the student reads them.
    pub pairs: Vec<(String, String)>,
}

impl HeldOut {
    /// The held-out rows (the first `max_rows`) as student pairs, and the teacher's pair for
    /// each (its own columns with parallel data), which the producer scores. With parallel
    /// columns the student is judged on each of its column groups against the teacher's score
    /// of the teacher's columns.
    pub fn read(
        source: &DataSource,
        max_rows: Option<usize>,
        columns: Option<&ColumnRoles>,
    ) -> Result<(Self, Vec<(String, String)>)> {
        let teacher_fields = columns.and_then(ColumnRoles::teacher_fields);
        let mut student_pairs = Vec::new();
        let mut teacher_pairs_text = Vec::new();
        for row in source.open()?.take(max_rows.unwrap_or(usize::MAX)) {
            let row: Row = row?;
            let examples = match columns {
                Some(roles) => roles.expand(&row, true)?,
                None => vec![row],
            };
            for example in examples {
                let width = columns.map_or(example.fields.len(), ColumnRoles::student_width);
                let scored = teacher_pairs(&example, teacher_fields.as_deref())?;
                let mut student_view = example.clone();
                student_view.fields.truncate(width);
                let learned = teacher_pairs(&student_view, None)?;
                if learned.len() != scored.len() {
                    return Err(Error::invalid(format!(
                        "held-out row {}: the student reads {} pairs, the teacher scores {}",
                        example.line,
                        learned.len(),
                        scored.len()
                    )));
                }
                for ((q, d), (tq, td)) in learned.into_iter().zip(scored) {
                    student_pairs.push((q.to_string(), d.to_string()));
                    teacher_pairs_text.push((tq.to_string(), td.to_string()));
                }
            }
        }
        Ok((
            Self {
                pairs: student_pairs,
            },
            teacher_pairs_text,
        ))
    }

    /// The student's raw scores (logits) of the held-out pairs.
    pub fn student_scores(&self, student: &CrossEncoder) -> Result<Vec<f64>> {
        Ok(student
            .predict(&self.pairs, 32, ScoreActivation::Identity)?
            .into_iter()
            .map(f64::from)
            .collect())
    }
}
