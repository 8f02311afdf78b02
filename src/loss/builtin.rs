//! The table of built-in losses: the one list the loss registry builds from, the recipe checker
//! accepts `[[loss]] kind`s from and the model card takes class names from.
//!
//! Adding a loss: write its file (math, config, `CITATION` and a `build` that returns its
//! adapter; see `mse.rs` for a pointwise loss, `list_net.rs` for a listwise one), declare it in
//! `loss/mod.rs`, and add its row here.

use crate::loss::objective::BuiltinLoss;
use crate::loss::{
    adr_mse, binary_cross_entropy, cached_multiple_negatives_ranking, cross_entropy, lambda,
    list_mle, list_net, margin_mse, mse, multiple_negatives_ranking, p_list_mle, rank_net,
};

/// Every built-in loss: its recipe `kind` (the snake_case of the class name), its
/// sentence-transformers class name and its builder. The order is the one recipe errors list
/// the kinds in.
pub const BUILTIN_LOSSES: &[BuiltinLoss] = &[
    BuiltinLoss {
        kind: "cross_entropy",
        class_name: "CrossEntropyLoss",
        build: cross_entropy::build,
    },
    BuiltinLoss {
        kind: "binary_cross_entropy",
        class_name: "BinaryCrossEntropyLoss",
        build: binary_cross_entropy::build,
    },
    BuiltinLoss {
        kind: "mse",
        class_name: "MSELoss",
        build: mse::build,
    },
    BuiltinLoss {
        kind: "margin_mse",
        class_name: "MarginMSELoss",
        build: margin_mse::build,
    },
    BuiltinLoss {
        kind: "multiple_negatives_ranking",
        class_name: "MultipleNegativesRankingLoss",
        build: multiple_negatives_ranking::build,
    },
    BuiltinLoss {
        kind: "cached_multiple_negatives_ranking",
        class_name: "CachedMultipleNegativesRankingLoss",
        build: cached_multiple_negatives_ranking::build,
    },
    BuiltinLoss {
        kind: "lambda",
        class_name: "LambdaLoss",
        build: lambda::build,
    },
    BuiltinLoss {
        kind: "rank_net",
        class_name: "RankNetLoss",
        build: rank_net::build,
    },
    BuiltinLoss {
        kind: "list_net",
        class_name: "ListNetLoss",
        build: list_net::build,
    },
    BuiltinLoss {
        kind: "list_mle",
        class_name: "ListMLELoss",
        build: list_mle::build,
    },
    BuiltinLoss {
        kind: "p_list_mle",
        class_name: "PListMLELoss",
        build: p_list_mle::build,
    },
    BuiltinLoss {
        kind: "adr_mse",
        class_name: "ADRMSELoss",
        build: adr_mse::build,
    },
];

/// The `kind` of every row of [`BUILTIN_LOSSES`], in table order.
pub const BUILTIN_KINDS: [&str; BUILTIN_LOSSES.len()] = {
    let mut kinds = [""; BUILTIN_LOSSES.len()];
    let mut index = 0;
    while index < kinds.len() {
        kinds[index] = BUILTIN_LOSSES[index].kind;
        index += 1;
    }
    kinds
};

/// The row of the built-in loss `kind`, or `None` when no built-in loss has that kind.
pub fn builtin_loss(kind: &str) -> Option<&'static BuiltinLoss> {
    BUILTIN_LOSSES.iter().find(|row| row.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::objective::default_class_name;
    use crate::loss::LossRegistry;

    #[test]
    fn loss_names_are_sentence_transformers_classes() {
        // The class names of sentence_transformers/cross_encoder/losses/__init__.py.
        let expected = [
            ("cross_entropy", "CrossEntropyLoss"),
            ("binary_cross_entropy", "BinaryCrossEntropyLoss"),
            ("mse", "MSELoss"),
            ("margin_mse", "MarginMSELoss"),
            ("multiple_negatives_ranking", "MultipleNegativesRankingLoss"),
            (
                "cached_multiple_negatives_ranking",
                "CachedMultipleNegativesRankingLoss",
            ),
            ("lambda", "LambdaLoss"),
            ("rank_net", "RankNetLoss"),
            ("list_net", "ListNetLoss"),
            ("list_mle", "ListMLELoss"),
            ("p_list_mle", "PListMLELoss"),
            ("adr_mse", "ADRMSELoss"),
        ];
        let registry = LossRegistry::default();
        for (kind, class) in expected {
            assert_eq!(builtin_loss(kind).map(|row| row.class_name), Some(class));
            let num_labels = if kind == "cross_entropy" { 2 } else { 1 };
            let loss = registry
                .build(kind, &toml::Table::new(), num_labels)
                .unwrap();
            assert_eq!((loss.kind(), loss.class_name()), (kind, class.to_string()));
        }
        assert_eq!(
            expected.map(|(kind, _)| kind),
            BUILTIN_KINDS,
            "every built-in loss kind has its class name here"
        );
    }

    #[test]
    fn kinds_are_the_snake_case_of_class_names() {
        // The derived name is right except where sentence-transformers spells an acronym.
        for row in BUILTIN_LOSSES {
            let derived = default_class_name(row.kind);
            if !["mse", "margin_mse", "adr_mse", "list_mle", "p_list_mle"].contains(&row.kind) {
                assert_eq!(derived, row.class_name);
            } else {
                assert_eq!(derived.to_lowercase(), row.class_name.to_lowercase());
            }
        }
    }
}
