//! [`Bell`]: how a stage wakes the stage on the other side of a ring after publishing to it.

use std::sync::{Arc, OnceLock};
use std::thread::Thread;

/// A stage registers its thread on its bell when it starts; the stages that feed it ring the bell after each
/// publish. Ringing an awake thread costs one atomic swap (no system call), so producers ring freely; a parked
/// consumer wakes at once instead of at its timeout.
#[derive(Clone, Default)]
pub struct Bell(Arc<OnceLock<Thread>>);

impl Bell {
    /// A bell no thread listens to yet.
    pub fn new() -> Bell {
        Bell::default()
    }

    /// Makes the calling thread the one this bell wakes (first registration wins).
    pub fn register(&self) {
        let _ = self.0.set(std::thread::current());
    }

    /// Wakes the registered thread if it is parked (or makes its next park return at once).
    pub fn ring(&self) {
        if let Some(t) = self.0.get() {
            t.unpark();
        }
    }
}
