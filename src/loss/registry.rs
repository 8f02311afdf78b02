//! Losses by name: the registry a recipe's `[[loss]] kind = "..."` is built from, holding the
//! built-in table ([`BUILTIN_LOSSES`]) and the losses registered with
//! [`register_custom_loss`].

use std::collections::BTreeMap;
use std::sync::{OnceLock, RwLock};

use crate::error::{Error, Result};
use crate::loss::builtin::BUILTIN_LOSSES;
use crate::loss::objective::{BuiltinLoss, Loss, LossFactory};

/// How one registered loss is built.
#[derive(Clone, Copy)]
enum Factory {
    /// A row of the built-in table, built by its own `build` with the row.
    Builtin(&'static BuiltinLoss),
    /// A factory given to [`LossRegistry::register`] or [`register_custom_loss`].
    Custom(LossFactory),
}

/// Losses by name: the built-in table plus user-registered ones.
#[derive(Clone)]
pub struct LossRegistry {
    factories: BTreeMap<String, Factory>,
}

impl Default for LossRegistry {
    /// The built-in losses plus every loss registered with [`register_custom_loss`].
    fn default() -> Self {
        let mut factories: BTreeMap<String, Factory> = BUILTIN_LOSSES
            .iter()
            .map(|row| (row.kind.to_string(), Factory::Builtin(row)))
            .collect();
        for (kind, factory) in custom_losses()
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            factories.insert(kind.clone(), Factory::Custom(*factory));
        }
        Self { factories }
    }
}

fn custom_losses() -> &'static RwLock<BTreeMap<String, LossFactory>> {
    static CUSTOM: OnceLock<RwLock<BTreeMap<String, LossFactory>>> = OnceLock::new();
    CUSTOM.get_or_init(Default::default)
}

/// Make a user-defined loss available by name to every recipe loaded afterwards in this process
/// (`[[loss]] kind = "<kind>"`): recipe validation accepts the name and
/// [`LossRegistry::default`] builds it with `factory`. Register before loading recipes.
pub fn register_custom_loss(kind: &str, factory: LossFactory) {
    custom_losses()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(kind.to_string(), factory);
}

/// The names registered with [`register_custom_loss`].
pub fn custom_loss_kinds() -> Vec<String> {
    custom_losses()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect()
}

impl LossRegistry {
    /// Add (or replace) a loss under `kind`.
    pub fn register(&mut self, kind: &str, factory: LossFactory) {
        self.factories
            .insert(kind.to_string(), Factory::Custom(factory));
    }

    /// The registered names.
    pub fn kinds(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    /// Build the loss `kind`.
    pub fn build(
        &self,
        kind: &str,
        params: &toml::Table,
        num_labels: usize,
    ) -> Result<Box<dyn Loss>> {
        match self.factories.get(kind) {
            Some(Factory::Builtin(row)) => (row.build)(row, params, num_labels),
            Some(Factory::Custom(factory)) => factory(params, num_labels),
            None => Err(Error::invalid(format!(
                "unknown loss kind `{kind}`; expected one of {}",
                self.kinds().join(", ")
            ))),
        }
    }
}
