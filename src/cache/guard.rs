//! Catch a panic of the storage library at the cache's boundary, quietly.
//!
//! redb trusts the bytes of its file: a damaged page can make it index out of bounds or hit an
//! `unreachable!` instead of returning an error. The cache calls redb through [`catch`], which
//! turns such a panic into a message the cache reports as damage (one `error:` line naming the
//! file, not a backtrace and exit code 101). While a call is guarded, the process's panic hook
//! stays silent for that thread only; panics anywhere else print as before.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

/// Wrap the process's panic hook once: silent (remembering the location) on a guarded thread.
fn install() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) {
                // The last parts of the path (`redb-2.6.4/src/...`), not the registry's.
                let location = info.location().map(|location| {
                    let parts: Vec<&str> = location.file().rsplit('/').take(4).collect();
                    let file: Vec<&str> = parts.into_iter().rev().collect();
                    format!("{}:{}", file.join("/"), location.line())
                });
                LOCATION.with(|slot| *slot.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

/// Run `work`; a panic inside it comes back as `Err` with its message and location.
pub(super) fn catch<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    install();
    let was_guarded = GUARDED.with(|guarded| guarded.replace(true));
    let outcome = catch_unwind(AssertUnwindSafe(work));
    GUARDED.with(|guarded| guarded.set(was_guarded));
    outcome.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        match LOCATION.with(|slot| slot.borrow_mut().take()) {
            Some(location) => format!("{message} (at {location})"),
            None => message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message() {
        let outcome: Result<(), String> = catch(|| panic!("index out of bounds: {}", 7));
        let message = outcome.unwrap_err();
        assert!(
            message.starts_with("index out of bounds: 7 (at "),
            "{message}"
        );
        assert_eq!(catch(|| 3), Ok(3));
        // Nested guards restore the outer state.
        assert_eq!(catch(|| catch(|| 1).unwrap() + 1), Ok(2));
    }
}
