//! Which columns of a file are inputs and which one is the label (sentence-transformers' rules).

use super::row::Problem;

/// The label column is the first of these present in the file, searched in this order, as in
/// sentence-transformers (`DEFAULT_LABEL_COLUMNS` of `base/data_collator.py`, searched by
/// `CrossEncoderDataCollator.__call__` in `cross_encoder/data_collator.py`).
pub const LABEL_COLUMN_CANDIDATES: [&str; 4] = ["label", "labels", "score", "scores"];

/// sentence-transformers removes this column from the inputs and uses it to pick a loss
/// (`CrossEncoderDataCollator.__call__`, `cross_encoder/data_collator.py`); it is never an input
/// by default.
const DATASET_NAME_COLUMN: &str = "dataset_name";

/// What the format readers need from a `DataSource` (`source.rs`): the columns it names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColumnOptions<'a> {
    pub(crate) columns: Option<&'a [String]>,
    pub(crate) label: Option<&'a str>,
    pub(crate) names: Option<&'a [String]>,
}

/// The columns a reader hands out, as names and as indices into the file's columns.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Selection {
    /// Input column names, in row order.
    pub(crate) inputs: Vec<String>,
    /// Index of each input column among the file's columns.
    pub(crate) input_indices: Vec<usize>,
    /// The label column, when there is one.
    pub(crate) label: Option<String>,
    /// Index of the label column among the file's columns.
    pub(crate) label_index: Option<usize>,
}

/// Pick the input and label columns among `available` (the file's columns, in file order).
///
/// The label is `label` when given (it must exist), else the first of
/// [`LABEL_COLUMN_CANDIDATES`] present. The inputs are `columns` when given (each must exist and
/// not be the label), else every column but the label and `dataset_name`, in file order.
pub(crate) fn select(
    available: &[String],
    columns: Option<&[String]>,
    label: Option<&str>,
) -> Result<Selection, Problem> {
    let listed = available.join(", ");
    let position = |name: &str| available.iter().position(|column| column == name);
    for (index, name) in available.iter().enumerate() {
        if let Some(earlier) = available[..index].iter().position(|column| column == name) {
            return Err(Problem::new(
                format!(
                    "column `{name}` appears twice (columns {} and {}); the columns are: {listed}",
                    earlier + 1,
                    index + 1
                ),
                "give every column a distinct name",
            ));
        }
    }

    let label_index = match label {
        Some(name) => Some(position(name).ok_or_else(|| {
            Problem::new(
                format!("label column `{name}` does not exist; the columns are: {listed}"),
                format!(
                    "set `label` to one of the columns, or leave it out to use the first of {}",
                    LABEL_COLUMN_CANDIDATES.join(", ")
                ),
            )
        })?),
        None => LABEL_COLUMN_CANDIDATES
            .iter()
            .find_map(|candidate| position(candidate)),
    };
    let label = label_index.map(|index| available[index].clone());

    let input_indices = match columns {
        Some([]) => return Err(Problem::new(
            format!("`columns` is empty; expected at least one input column among: {listed}"),
            "list the input columns in order, or leave `columns` out to use every non-label column",
        )),
        Some(names) => {
            let mut indices = Vec::with_capacity(names.len());
            for (slot, name) in names.iter().enumerate() {
                let index = position(name).ok_or_else(|| {
                    Problem::new(
                        format!(
                            "`columns` names `{name}`, which is not a column of this file; \
                             the columns are: {listed}"
                        ),
                        "fix `columns` in the recipe's data section",
                    )
                })?;
                if Some(index) == label_index {
                    return Err(Problem::new(
                        format!("`columns` names `{name}`, which is the label column"),
                        "remove it from `columns`, or set `label` to another column",
                    ));
                }
                if names[..slot].contains(name) {
                    return Err(Problem::new(
                        format!("`columns` names `{name}` twice"),
                        "list each input column once",
                    ));
                }
                indices.push(index);
            }
            indices
        }
        None => (0..available.len())
            .filter(|&index| Some(index) != label_index && available[index] != DATASET_NAME_COLUMN)
            .collect(),
    };
    if input_indices.is_empty() {
        return Err(Problem::new(
            format!("no input columns: the only columns are {listed}"),
            "add at least one text column (column 0 is the query/anchor)",
        ));
    }
    Ok(Selection {
        inputs: input_indices
            .iter()
            .map(|&index| available[index].clone())
            .collect(),
        input_indices,
        label,
        label_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn label_is_the_first_of_label_labels_score_scores() {
        // Search order of sentence-transformers' `CrossEncoderDataCollator.__call__`
        // (cross_encoder/data_collator.py): ["label", "labels", "score", "scores"], first found
        // wins, whatever the file order.
        let cases: [(&[&str], Option<&str>); 6] = [
            (&["q", "d", "scores", "score"], Some("score")),
            (&["scores", "q", "labels"], Some("labels")),
            (&["labels", "label", "q"], Some("label")),
            (&["q", "scores", "d"], Some("scores")),
            (&["q", "d"], None),
            (&["q", "Label", "d"], None),
        ];
        for (available, expected) in cases {
            let selection = select(&names(available), None, None).unwrap();
            assert_eq!(selection.label.as_deref(), expected, "{available:?}");
        }
    }

    #[test]
    fn default_inputs_are_the_other_columns_in_file_order() {
        let available = names(&["score", "query", "dataset_name", "positive", "scores"]);
        let selection = select(&available, None, None).unwrap();
        assert_eq!(selection.inputs, names(&["query", "positive", "scores"]));
        assert_eq!(selection.input_indices, vec![1, 3, 4]);
        assert_eq!(selection.label_index, Some(0));
    }

    #[test]
    fn explicit_columns_pick_and_reorder_and_explicit_label_wins() {
        let available = names(&["query", "positive", "negative", "score", "teacher"]);
        let columns = names(&["negative", "query"]);
        let selection = select(&available, Some(&columns), Some("teacher")).unwrap();
        assert_eq!(selection.inputs, columns);
        assert_eq!(selection.input_indices, vec![2, 0]);
        assert_eq!(selection.label.as_deref(), Some("teacher"));
        assert_eq!(selection.label_index, Some(4));
    }

    #[test]
    fn selection_errors_list_the_columns_that_exist() {
        let available = names(&["query", "positive", "score"]);
        let problem = select(&available, Some(&names(&["query", "passage"])), None).unwrap_err();
        assert!(
            problem.message.contains("`columns` names `passage`"),
            "{problem:?}"
        );
        assert!(problem
            .message
            .contains("the columns are: query, positive, score"));

        let problem = select(&available, None, Some("relevance")).unwrap_err();
        assert!(problem
            .message
            .contains("label column `relevance` does not exist"));
        assert!(problem.message.contains("query, positive, score"));

        let problem = select(&available, Some(&names(&["query", "score"])), None).unwrap_err();
        assert!(problem
            .message
            .contains("`score`, which is the label column"));

        let problem = select(&available, Some(&[]), None).unwrap_err();
        assert!(problem.message.contains("`columns` is empty"));

        let problem = select(&names(&["score"]), None, None).unwrap_err();
        assert!(problem.message.contains("no input columns"));

        let problem = select(&names(&["q", "d", "q"]), None, None).unwrap_err();
        assert!(problem
            .message
            .contains("`q` appears twice (columns 1 and 3)"));
    }
}
