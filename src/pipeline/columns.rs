//! Parallel-data distillation: which fields of a row the student and the teacher read.
//!
//! A row of parallel data holds the same pair in several languages (`en_1, en_2, de_1, de_2,
//! ...`). The teacher scores its own columns (the English pair); the student trains on each
//! student column group (German, Spanish, ...) with those scores. Each row becomes one example
//! per group. While an example waits for its teacher score, its fields are the group's fields
//! followed by the teacher's; the producer cuts them back to the group's after scoring.

use crate::data::Row;
use crate::error::{Error, Result};
use crate::recipe::ParallelColumns;

/// Field indices of the student groups and the teacher, into the rows the data source yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRoles {
    student: Vec<Vec<usize>>,
    teacher: Option<Vec<usize>>,
}

impl ColumnRoles {
    /// Roles from field indices. Errors when there is no group, a group is empty, or the groups
    /// differ in length.
    pub fn new(student: Vec<Vec<usize>>, teacher: Option<Vec<usize>>) -> Result<Self> {
        let width = student.first().map_or(0, Vec::len);
        if width == 0 || student.iter().any(|group| group.len() != width) {
            return Err(Error::invalid(format!(
                "student column groups must be non-empty and of one length, found {student:?}"
            )));
        }
        if teacher.as_ref().is_some_and(Vec::is_empty) {
            return Err(Error::invalid("the teacher's column list is empty"));
        }
        Ok(Self { student, teacher })
    }

    /// Roles from the recipe's column names and the columns the data source reads (`read`, in
    /// field order). Errors name a column that `read` lacks.
    pub fn from_names(columns: &ParallelColumns, read: &[String]) -> Result<Self> {
        let index = |name: &String| {
            read.iter().position(|r| r == name).ok_or_else(|| {
                Error::invalid(format!(
                    "column {name:?} is not among the columns the data reads: {read:?}"
                ))
            })
        };
        let student = columns
            .student
            .iter()
            .map(|group| group.iter().map(index).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        let teacher = columns
            .teacher
            .as_ref()
            .map(|names| names.iter().map(index).collect::<Result<Vec<_>>>())
            .transpose()?;
        Self::new(student, teacher)
    }

    /// Examples per row.
    pub fn groups(&self) -> usize {
        self.student.len()
    }

    /// Fields of a student example.
    pub fn student_width(&self) -> usize {
        self.student[0].len()
    }

    /// Whether the teacher reads its own columns (else each example's own fields).
    pub fn has_teacher_columns(&self) -> bool {
        self.teacher.is_some()
    }

    /// One example per student group. With `for_teacher` and teacher columns, each example's
    /// fields are followed by the teacher's (see the module doc).
    pub fn expand(&self, row: &Row, for_teacher: bool) -> Result<Vec<Row>> {
        let field = |i: usize| {
            row.fields.get(i).cloned().ok_or_else(|| {
                Error::invalid(format!(
                    "row {}: expected at least {} fields, found {}",
                    row.line,
                    i + 1,
                    row.fields.len()
                ))
            })
        };
        let teacher = match (&self.teacher, for_teacher) {
            (Some(indices), true) => indices.iter().map(|&i| field(i)).collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        self.student
            .iter()
            .map(|group| {
                let mut fields = group
                    .iter()
                    .map(|&i| field(i))
                    .collect::<Result<Vec<_>>>()?;
                fields.extend(teacher.iter().cloned());
                Ok(Row {
                    line: row.line,
                    fields,
                    label: row.label.clone(),
                })
            })
            .collect()
    }

    /// The indices of the teacher's fields in an expanded example, when it has its own columns.
    pub fn teacher_fields(&self) -> Option<Vec<usize>> {
        let width = self.student_width();
        self.teacher
            .as_ref()
            .map(|teacher| (width..width + teacher.len()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Field;

    fn row(texts: &[&str]) -> Row {
        Row {
            line: 7,
            fields: texts.iter().map(|t| Field::Text(t.to_string())).collect(),
            label: None,
        }
    }

    fn texts(row: &Row) -> Vec<&str> {
        row.fields
            .iter()
            .map(|f| match f {
                Field::Text(t) => t.as_str(),
                Field::List(_) => "<list>",
            })
            .collect()
    }

    #[test]
    fn each_group_becomes_an_example_followed_by_the_teacher_fields() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let columns = ParallelColumns {
            student: vec![names(&["de_1", "de_2"]), names(&["es_1", "es_2"])],
            teacher: Some(names(&["en_1", "en_2"])),
        };
        let read = names(&["en_1", "en_2", "de_1", "de_2", "es_1", "es_2"]);
        let roles = ColumnRoles::from_names(&columns, &read).unwrap();
        assert_eq!(roles.groups(), 2);
        assert_eq!(roles.teacher_fields(), Some(vec![2, 3]));
        let source = row(&["a", "b", "A", "B", "x", "y"]);
        let examples = roles.expand(&source, true).unwrap();
        assert_eq!(texts(&examples[0]), ["A", "B", "a", "b"]);
        assert_eq!(texts(&examples[1]), ["x", "y", "a", "b"]);
        assert!(examples.iter().all(|e| e.line == 7));
        let plain = roles.expand(&source, false).unwrap();
        assert_eq!(texts(&plain[1]), ["x", "y"]);
    }

    #[test]
    fn unknown_columns_and_short_rows_are_errors() {
        let columns = ParallelColumns {
            student: vec![vec!["de_1".into(), "de_2".into()]],
            teacher: None,
        };
        let err = ColumnRoles::from_names(&columns, &["de_1".into()]).unwrap_err();
        assert!(err.to_string().contains("\"de_2\" is not among"), "{err}");
        let roles = ColumnRoles::new(vec![vec![0, 3]], None).unwrap();
        let err = roles.expand(&row(&["a", "b"]), true).unwrap_err();
        assert!(
            err.to_string()
                .contains("row 7: expected at least 4 fields, found 2"),
            "{err}"
        );
        assert!(ColumnRoles::new(vec![vec![0, 1], vec![2]], None).is_err());
    }
}
