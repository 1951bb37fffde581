//! Skips that cannot hide: a test that lacks a capability (root, io_uring, XDP, sshd, a network namespace)
//! says so loudly and returns, except where `MOVER_REQUIRE_CAPS=1` asks for every capability (CI sets it,
//! in `.ci/run`), where the same skip is a failure. So a green CI run proves the privileged tests ran.

/// The environment variable that turns every capability skip into a failure.
pub const REQUIRE_CAPS_VAR: &str = "MOVER_REQUIRE_CAPS";

/// Whether the variable's value asks for every capability: set to anything but empty or `0`.
///
/// Any other value counts as "required" so that a typo (`true`, `yes`) in CI cannot quietly allow skips.
pub fn caps_required(value: Option<&std::ffi::OsStr>) -> bool {
    match value {
        None => false,
        Some(v) => !(v.is_empty() || v == "0"),
    }
}

/// Skips (prints `SKIPPED <test>: <why>` and returns) or, under `MOVER_REQUIRE_CAPS=1`, panics.
///
/// The caller returns right after it, or skips only the part of the test that needs the capability. The panic
/// points at the caller's line.
#[track_caller]
pub fn skip_or_fail(test: &str, why: &str) {
    skip_or_fail_with(caps_required(std::env::var_os(REQUIRE_CAPS_VAR).as_deref()), test, why);
}

/// [`skip_or_fail`] with the decision made by the caller (tests of the rule itself).
#[track_caller]
pub fn skip_or_fail_with(required: bool, test: &str, why: &str) {
    if required {
        panic!("{test} cannot run here: {why}; every capability is required by {REQUIRE_CAPS_VAR}=1");
    }
    eprintln!("\n!!! SKIPPED {test}: {why} !!!\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn the_variable_decides() {
        assert!(!caps_required(None));
        assert!(!caps_required(Some(OsStr::new(""))));
        assert!(!caps_required(Some(OsStr::new("0"))));
        assert!(caps_required(Some(OsStr::new("1"))));
        assert!(caps_required(Some(OsStr::new("yes"))), "a typo must not allow skips");
    }

    #[test]
    fn a_required_capability_panics_and_names_the_variable() {
        let failed = std::panic::catch_unwind(|| skip_or_fail_with(true, "some_test", "not root"))
            .expect_err("a skip under MOVER_REQUIRE_CAPS=1 must panic");
        let message = failed.downcast_ref::<String>().expect("a formatted panic message");
        assert!(message.contains("some_test cannot run here: not root"), "{message}");
        assert!(message.contains("required by MOVER_REQUIRE_CAPS=1"), "{message}");
    }

    #[test]
    fn an_optional_capability_only_skips() {
        assert!(std::panic::catch_unwind(|| skip_or_fail_with(false, "some_test", "not root")).is_ok());
    }
}
