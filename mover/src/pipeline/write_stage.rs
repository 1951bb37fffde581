//! The receiver's writer stage: takes runs from the `writes` ring, writes them with a [`DiskWriter`]
//! (io_uring `WRITE_FIXED`, or `pwrite`), and returns each buffer with its result through `written`.

use super::bell::Bell;
use super::ring::{Consumer, Producer};
use super::stats::{StageMeter, StageReport};
use super::store::{WriteItem, Written};
use crate::disk::{DiskWriter, Full, WriteDone, WriteReq};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs the writer stage until `stop` and every accepted write has completed.
#[allow(clippy::too_many_arguments)]
pub fn run_writer(
    mut writer: DiskWriter,
    buffers: usize,
    mut input: Consumer<WriteItem>,
    mut back: Producer<Written>,
    store_bell: Bell,
    own_bell: Bell,
    stop: Arc<AtomicBool>,
    mut meter: StageMeter,
) -> StageReport {
    own_bell.register();
    let latency = meter.add_latency("block_write");
    // Per buffer: the descriptor its write owns and when the write was submitted.
    let mut owned: Vec<Option<(OwnedFd, Instant)>> = (0..buffers).map(|_| None).collect();
    let mut held: Option<WriteItem> = None;
    loop {
        // Submit what arrived.
        let mut submitted = false;
        loop {
            let item = match held.take() {
                Some(i) => i,
                None => match input.pop() {
                    Some(i) => i,
                    None => break,
                },
            };
            let req =
                WriteReq { req_id: item.buf as u64, fd: item.fd, offset: item.offset, buf: item.buf, len: item.len };
            match writer.submit(req) {
                Ok(()) => {
                    let i = item.buf as usize;
                    // Safety: the item owns `fd` (the store duplicated it for this write and gave it up).
                    owned[i] = Some((unsafe { OwnedFd::from_raw_fd(item.fd) }, Instant::now()));
                    submitted = true;
                }
                Err(Full) => {
                    held = Some(item);
                    break;
                }
            }
        }
        input.release();

        // Hand back what finished.
        let mut finished = 0;
        loop {
            match writer.poll_complete() {
                Ok(Some(d)) => complete(d, &mut owned, &mut back, &mut meter, latency),
                Ok(None) => break,
                Err(e) => panic!("the io_uring of the writer stage failed: {e}"),
            }
            finished += 1;
        }
        if finished > 0 {
            back.publish();
            store_bell.ring();
        }
        if submitted || finished > 0 {
            continue;
        }
        if writer.in_flight() > 0 {
            // Waiting on the disk: counted as output stall (the disk is this stage's output).
            let t = Instant::now();
            match writer.wait_complete() {
                Ok(Some(d)) => {
                    complete(d, &mut owned, &mut back, &mut meter, latency);
                    back.publish();
                    store_bell.ring();
                }
                Ok(None) => {}
                Err(e) => panic!("the io_uring of the writer stage failed: {e}"),
            }
            meter.stalled_on_output(t.elapsed());
            continue;
        }
        if stop.load(Ordering::Relaxed) && held.is_none() {
            break;
        }
        meter.park_for_input(Duration::from_millis(5));
    }
    meter.finish()
}

/// Closes a finished write's descriptor, records its latency and hands its buffer back (unpublished).
fn complete(
    done: WriteDone,
    owned: &mut [Option<(OwnedFd, Instant)>],
    back: &mut Producer<Written>,
    meter: &mut StageMeter,
    latency: usize,
) {
    let (fd, at) = owned[done.buf as usize].take().expect("a completed write owns its descriptor");
    drop(fd);
    meter.record(latency, at.elapsed().as_nanos() as u64);
    let result = match done.result {
        Ok(n) => {
            meter.add(1, n as u64);
            n as i64
        }
        Err(errno) => -(errno as i64),
    };
    assert!(back.push(Written { buf: done.buf, result }).is_ok(), "written ring smaller than the pool");
}
