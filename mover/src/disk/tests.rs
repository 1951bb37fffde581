use super::*;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh directory under the system temp directory (on a disk file system here, so O_DIRECT is real),
/// removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "mover-disk-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Bytes that differ at every offset within a block and between blocks.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A reader with `backend` forced, or `None` (said loudly) when io_uring cannot work on this machine.
fn reader(backend: DiskBackend, qd: u32, block: usize, max_open: u32) -> Option<DiskReader> {
    let mut cfg = ReaderConfig::new(BackendChoice::Force(backend), qd, block);
    cfg.max_open_files = max_open;
    match DiskReader::new(&cfg) {
        Ok(r) => {
            assert_eq!(r.backend(), backend);
            Some(r)
        }
        Err(e) if backend == DiskBackend::IoUring => {
            let test = std::thread::current().name().unwrap_or("a disk test").to_string();
            crate::testing::skip_or_fail(&format!("{test} (its io_uring half)"), &format!("io_uring unavailable: {e}"));
            None
        }
        Err(e) => panic!("pread reader: {e}"),
    }
}

const BACKENDS: [DiskBackend; 2] = [DiskBackend::IoUring, DiskBackend::Pread];

/// Reads all of `path` in `block`-sized requests, returning the bytes in request order.
fn read_whole(r: &mut DiskReader, path: &Path, direct: bool, block: usize) -> Vec<u8> {
    let size = fs::metadata(path).unwrap().len();
    let f = r.open(path, direct).unwrap();
    assert_eq!(r.is_direct(f), direct, "ext4 accepts O_DIRECT");
    let mut order = InOrder::new(r.pool().count() as usize, 0);
    let mut out = Vec::with_capacity(size as usize);
    let (mut next_id, mut next_off) = (0u64, 0u64);
    loop {
        while next_off < size {
            let len = (size - next_off).min(block as u64) as u32;
            if r.submit(ReadReq { req_id: next_id, file: f, offset: next_off, len }).is_err() {
                break;
            }
            next_id += 1;
            next_off += u64::from(len);
        }
        let Some(c) = r.wait_complete().unwrap() else { break };
        order.insert(c);
        while let Some(c) = order.pop() {
            let want = (size - c.req_id * block as u64).min(block as u64) as usize;
            assert_eq!(*c.result.as_ref().unwrap(), want, "request {}", c.req_id);
            out.extend_from_slice(r.data(&c));
            r.release(c.buf);
        }
    }
    assert_eq!(order.next_req_id(), next_id);
    assert_eq!(r.in_flight(), 0);
    r.close(f).unwrap();
    out
}

#[test]
fn odd_sized_file_reads_back_identically_with_every_backend_mode_and_depth() {
    let t = Scratch::new("odd");
    let path = t.0.join("odd.bin");
    fs::write(&path, pattern((10 << 20) + 123, 1)).unwrap();
    let want = fs::read(&path).unwrap();
    for backend in BACKENDS {
        for direct in [false, true] {
            for qd in [1, 16] {
                let block = 1 << 20;
                let Some(mut r) = reader(backend, qd, block, 4) else { continue };
                let got = read_whole(&mut r, &path, direct, block);
                assert!(got == want, "{backend:?} direct={direct} qd={qd}: bytes differ");
            }
        }
    }
}

#[test]
fn many_small_files_in_flight_complete_with_their_own_bytes() {
    let t = Scratch::new("small");
    let sizes: Vec<usize> = (0..120).map(|i| [0, 1, 123, 4096, 4097, 8191, 20_000, 65_536][i % 8] + i).collect();
    let paths: Vec<PathBuf> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let p = t.0.join(format!("f{i}"));
            fs::write(&p, pattern(n, i as u64 + 7)).unwrap();
            p
        })
        .collect();
    for backend in BACKENDS {
        for direct in [false, true] {
            // 128 KiB blocks: each file is one request, most of them asking past end of file.
            let Some(mut r) = reader(backend, 16, 128 << 10, 128) else { continue };
            let files: Vec<FileId> = paths.iter().map(|p| r.open(p, direct).unwrap()).collect();
            let mut seen = vec![false; paths.len()];
            let mut next = 0;
            while seen.iter().any(|s| !s) {
                while next < files.len()
                    && r.submit(ReadReq { req_id: next as u64, file: files[next], offset: 0, len: 128 << 10 }).is_ok()
                {
                    next += 1;
                }
                assert!(r.in_flight() > 1 || next == files.len(), "several files in flight");
                let c = r.wait_complete().unwrap().expect("reads in flight");
                let i = c.req_id as usize;
                let want = fs::read(&paths[i]).unwrap();
                assert_eq!(*c.result.as_ref().unwrap(), want.len(), "{backend:?} direct={direct} file {i}");
                assert!(r.data(&c) == want.as_slice(), "{backend:?} direct={direct} file {i}: bytes differ");
                seen[i] = true;
                r.release(c.buf);
            }
            for f in files {
                r.close(f).unwrap();
            }
        }
    }
}

#[test]
fn reads_at_and_past_end_of_file_are_short() {
    let t = Scratch::new("eof");
    let path = t.0.join("f");
    let bytes = pattern(5000, 3);
    fs::write(&path, &bytes).unwrap();
    for backend in BACKENDS {
        for direct in [false, true] {
            let Some(mut r) = reader(backend, 4, 16 << 10, 1) else { continue };
            let f = r.open(&path, direct).unwrap();
            let reqs = [(0u64, 4096u32, 4096usize), (4096, 8192, 904), (8192, 4096, 0), (0, 16 << 10, 5000)];
            for (i, &(offset, len, _)) in reqs.iter().enumerate() {
                r.submit(ReadReq { req_id: i as u64, file: f, offset, len }).unwrap();
            }
            let mut order = InOrder::new(8, 0);
            while let Some(c) = r.wait_complete().unwrap() {
                order.insert(c);
            }
            for (i, &(offset, _, want)) in reqs.iter().enumerate() {
                let c = order.pop().unwrap();
                assert_eq!(c.req_id, i as u64);
                assert_eq!(*c.result.as_ref().unwrap(), want, "{backend:?} direct={direct} request {i}");
                assert!(r.data(&c) == &bytes[(offset as usize).min(bytes.len())..][..want]);
                r.release(c.buf);
            }
        }
    }
}

#[test]
fn a_full_reader_says_so_and_a_busy_file_does_not_close() {
    let t = Scratch::new("full");
    let path = t.0.join("f");
    fs::write(&path, pattern(64 << 10, 4)).unwrap();
    for backend in BACKENDS {
        let mut cfg = ReaderConfig::new(BackendChoice::Force(backend), 2, 4096);
        cfg.buffers = 3;
        let Ok(mut r) = DiskReader::new(&cfg) else { continue };
        let f = r.open(&path, false).unwrap();
        let req = |i: u64| ReadReq { req_id: i, file: f, offset: i * 4096, len: 4096 };
        r.submit(req(0)).unwrap();
        r.submit(req(1)).unwrap();
        assert_eq!(r.submit(req(2)), Err(Full), "two slots");
        assert!(r.close(f).is_err(), "reads in flight");
        let a = r.wait_complete().unwrap().unwrap();
        r.submit(req(2)).unwrap();
        let b = r.wait_complete().unwrap().unwrap();
        // Both delivered buffers are still held: only one buffer of three is free, and it is in flight.
        assert_eq!(r.submit(req(3)), Err(Full), "no buffer");
        r.release(a.buf);
        r.release(b.buf);
        let c = r.wait_complete().unwrap().unwrap();
        r.release(c.buf);
        assert!(r.wait_complete().unwrap().is_none());
        r.close(f).unwrap();
    }
}

#[test]
fn pread_is_chosen_by_the_constructor_and_the_env_spelling_parses() {
    let r = reader(DiskBackend::Pread, 4, 4096, 1).unwrap();
    assert_eq!(r.backend(), DiskBackend::Pread);
    assert_eq!(BackendChoice::parse("pread"), Ok(BackendChoice::Force(DiskBackend::Pread)));
    assert_eq!(BackendChoice::parse("io_uring"), Ok(BackendChoice::Force(DiskBackend::IoUring)));
    assert_eq!(BackendChoice::parse(""), Ok(BackendChoice::Auto));
    assert!(BackendChoice::parse("aio").unwrap_err().contains("MOVER_DISK"));
    // Auto picks io_uring where it works, pread otherwise: either way a working reader.
    let auto = DiskReader::new(&ReaderConfig::new(BackendChoice::Auto, 4, 4096)).unwrap();
    assert!(matches!(auto.backend(), DiskBackend::IoUring | DiskBackend::Pread));
}

#[test]
fn failures_name_the_file() {
    let t = Scratch::new("fail");
    let gone = t.0.join("vanished.bin");
    for backend in BACKENDS {
        let Some(mut r) = reader(backend, 4, 4096, 2) else { continue };
        let e = r.open(&gone, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("vanished.bin"), "{e}");
        // Named (a daemon serving a pull): the name it was given, never the path.
        let e = r.open_named(&gone, "data/vanished.bin", true).unwrap_err().to_string();
        assert!(e.contains("'data/vanished.bin'") && !e.contains(&*t.0.to_string_lossy()), "{e}");
        let dir = r.open_named(&t.0, "data/a-directory", false).unwrap();
        r.submit(ReadReq { req_id: 8, file: dir, offset: 0, len: 4096 }).unwrap();
        let c = r.wait_complete().unwrap().unwrap();
        let e = c.result.as_ref().unwrap_err().to_string();
        assert!(e.contains("'data/a-directory'") && !e.contains(&*t.0.to_string_lossy()), "{backend:?}: {e}");
        r.release(c.buf);
        r.close(dir).unwrap();
        // A directory opens but cannot be read: the read's error names it.
        let dir = r.open(&t.0, false).unwrap();
        r.submit(ReadReq { req_id: 9, file: dir, offset: 0, len: 4096 }).unwrap();
        let c = r.wait_complete().unwrap().unwrap();
        let e = c.result.as_ref().unwrap_err();
        assert!(e.to_string().contains(&*t.0.to_string_lossy()), "{backend:?}: {e}");
        assert!(r.data(&c).is_empty());
        r.release(c.buf);
        r.close(dir).unwrap();
    }
}

#[test]
fn in_order_restores_request_order() {
    let mut pool = BufferPool::new(4, 4096);
    let mut order = InOrder::new(4, 10);
    for id in [12u64, 10, 13, 11] {
        order.insert(Completion { req_id: id, buf: pool.alloc().unwrap(), result: Ok(0) });
    }
    let ids: Vec<u64> = std::iter::from_fn(|| order.pop())
        .map(|c| {
            let id = c.req_id;
            pool.free(c.buf);
            id
        })
        .collect();
    assert_eq!(ids, [10, 11, 12, 13]);
    assert_eq!(pool.free_count(), 4);
}
