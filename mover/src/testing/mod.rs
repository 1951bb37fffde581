//! Test support that every floor of the crate may use: the ground floor, importing nothing from the crate.
//!
//! Public (but hidden from the docs) only so that the integration tests in `mover/tests/` share the one
//! capability-skip rule with the unit tests; nothing in the `mover` binary calls it.

mod skip;
#[cfg(test)]
mod tempdir;

pub use skip::{caps_required, skip_or_fail, skip_or_fail_with, REQUIRE_CAPS_VAR};
#[cfg(test)]
pub(crate) use tempdir::TempDir;
