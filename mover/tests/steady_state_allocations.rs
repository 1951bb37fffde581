//! Nothing on the data path allocates in steady state: a counting allocator watches the middle of a real
//! transfer (in-process `serve` and `push` over loopback, one large file, both through their pipelines of
//! pinned stages) and must see no allocation at all, on any thread.

use mover::session::serve_on;
use mover::session::{push, PushOptions};
use mover::sim::dataset::write_random;
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Counts allocations while `COUNTING` is set; prints the backtrace of the first one (capturing it allocates,
/// so a per-thread guard keeps that from counting or recursing).
struct Counting;
thread_local! { static GUARD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) }; }

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// Safety: defers every operation to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            let n = ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            if n == 0 && !GUARD.with(|g| g.replace(true)) {
                let bt = std::backtrace::Backtrace::force_capture();
                eprintln!("first allocation in steady state ({} bytes):\n{bt}", layout.size());
                GUARD.with(|g| g.set(false));
            }
        }
        // Safety: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Safety: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // Safety: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn no_allocation_in_the_middle_of_a_transfer() {
    let dir = std::env::temp_dir().join(format!("mover-alloc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("root")).unwrap();
    let src = dir.join("big.bin");
    write_random(&src, 768 << 20, 5).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let root = dir.join("root");
    let server = std::thread::spawn(move || serve_on(listener, &root, true, false));
    let mut opts = PushOptions::new(vec![src.clone()], format!("mover://127.0.0.1:{port}/"), 2_000_000_000);
    opts.connect_timeout = Duration::from_secs(5);
    // 768 MiB at 2 Gbit/s takes about 3.2 s: watch from 1.0 s to 2.0 s.
    let watcher = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(1000));
        COUNTING.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1000));
        COUNTING.store(false, Ordering::SeqCst);
    });
    let report = push(&opts);
    watcher.join().unwrap();
    server.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(report.verified, "{:?}", report.error);
    assert!(report.seconds > 2.2, "transfer too short ({:.2} s) to have a middle", report.seconds);
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst), 0, "allocations in the middle of the transfer");
    // It was the pipeline that ran: every sender stage reported.
    let names: Vec<&str> = report.stages.iter().map(|s| s.name).collect();
    assert_eq!(names, ["reader", "packetizer", "pacer", "nak"]);
}
