//! Several teachers, scores averaged.

use super::Teacher;
use crate::error::{Error, Result};

/// The mean of several teachers' scores.
pub struct Ensemble {
    members: Vec<Box<dyn Teacher>>,
}

impl Ensemble {
    /// An ensemble of at least one teacher.
    pub fn new(members: Vec<Box<dyn Teacher>>) -> Result<Self> {
        if members.is_empty() {
            return Err(Error::invalid("an ensemble needs at least one teacher"));
        }
        Ok(Self { members })
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: an ensemble has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl Teacher for Ensemble {
    fn score(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        let mut sum = vec![0f64; pairs.len()];
        for member in &mut self.members {
            let scores = member.score(pairs)?;
            if scores.len() != pairs.len() {
                return Err(Error::invalid(format!(
                    "teacher {} returned {} scores for {} pairs",
                    member.describe(),
                    scores.len(),
                    pairs.len()
                )));
            }
            for (s, v) in sum.iter_mut().zip(scores) {
                *s += v as f64;
            }
        }
        let n = self.members.len() as f64;
        Ok(sum.into_iter().map(|s| (s / n) as f32).collect())
    }

    fn fingerprint(&self) -> String {
        if self.members.len() == 1 {
            return self.members[0].fingerprint();
        }
        let parts: Vec<String> = self.members.iter().map(|m| m.fingerprint()).collect();
        format!("ensemble[{}]", parts.join(";"))
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self.members.iter().map(|m| m.describe()).collect();
        parts.join(" + ")
    }
}
