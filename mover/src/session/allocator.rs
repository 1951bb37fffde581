//! Giving freed memory back to the system. glibc's allocator keeps what threads free in per-thread arenas
//! (up to eight per core) and below its top-of-heap threshold, so a daemon that served rounds of
//! concurrent sessions sat idle at hundreds of MiB it no longer used. [`configure_for_daemon`] bounds the
//! arenas; [`release_idle`] trims what they hold free when the last session ends. Elsewhere than glibc both
//! do nothing.
//!
//! The `mmap` threshold is left to glibc's dynamic rule on purpose: a fixed 1 MiB threshold would map and
//! unmap (and fault in) every buffer of a MiB or more that the data path allocates, while the trim at idle
//! returns those buffers anyway.

/// Most glibc arenas: enough that a few sessions' threads do not contend on one lock, few enough that
/// freed memory is not scattered over dozens of heaps.
#[cfg_attr(not(target_env = "gnu"), allow(dead_code))]
pub const ARENA_MAX: i32 = 4;

/// Sets the allocator up for a long-running daemon ([`ARENA_MAX`]). Call it once at start-up, before the
/// session threads start (arenas already created stay).
pub fn configure_for_daemon() {
    #[cfg(target_env = "gnu")]
    // Safety: mallopt only changes glibc's tuning parameters; it takes plain integers and is safe to call
    // at any time (it takes the arena locks itself).
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}

/// Returns free memory at the top of every arena (and free pages inside them) to the system: called when
/// the daemon has no session left, so an idle daemon is small again.
pub fn release_idle() {
    release_freed();
}

/// Returns what is free in every arena to the system now: after a session dropped its manifest (a
/// million entries' paths are small chunks in the middle of the heap, which `free` alone keeps).
pub fn release_freed() {
    #[cfg(target_env = "gnu")]
    // Safety: malloc_trim takes no pointers; it walks glibc's arenas under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
