//! The XDP path's two ends of the data plane: [`XdpSink`] sends the datagrams of send batches whose slots are
//! UMEM frames, [`XdpSource`] receives frames into receive batches without copying them.
//!
//! Frame ownership (the rule of [`super::xsk`]): a send batch's frames belong to the kernel from the moment
//! their descriptors are on the TX ring until they come back on the completion ring; the sink counts them per
//! batch and [`XdpSink::holds`] tells the pacer when a batch may go back to the packetizer. A receive batch
//! owns the frames it was filled with until [`XdpSource::recycle`] puts them back on their socket's fill ring,
//! which happens when the batch comes back from the reassembly stage to be filled again.

use super::frame::{parse_udp, FrameTemplate};
use super::udp::{RxBatch, TxBatch};
use super::xsk::{Xsk, FRAME_SIZE};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A frame template that a neighbour watcher may replace while the sink runs. The sink reads the
/// generation (one relaxed load per send) and takes the lock only when it changed.
#[derive(Debug)]
pub struct SharedTemplate {
    generation: AtomicU64,
    template: Mutex<FrameTemplate>,
}

impl SharedTemplate {
    /// A cell holding `t`.
    pub fn new(t: FrameTemplate) -> Arc<SharedTemplate> {
        Arc::new(SharedTemplate { generation: AtomicU64::new(0), template: Mutex::new(t) })
    }

    /// Replaces the template if its addresses differ; returns whether it did.
    pub fn update(&self, t: FrameTemplate) -> bool {
        let mut cur = self.template.lock().unwrap_or_else(|p| p.into_inner());
        if cur.addrs() == t.addrs() {
            return false;
        }
        *cur = t;
        // Release: the new template is in place before a sink sees the new generation.
        self.generation.fetch_add(1, Ordering::Release);
        true
    }

    /// The current template.
    pub fn get(&self) -> FrameTemplate {
        self.template.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Sends datagrams of frame-backed [`TxBatch`]es through an AF_XDP socket's TX ring.
pub struct XdpSink {
    xsk: Xsk,
    shared: Arc<SharedTemplate>,
    template: FrameTemplate,
    generation: u64,
    /// Area offset of the first TX frame, and frames per batch: a completed frame's batch is
    /// `(offset - tx_base) / (FRAME_SIZE * frames_per_batch)`.
    tx_base: u64,
    frames_per_batch: u64,
    /// Frames of each batch still owned by the kernel.
    outstanding: Vec<u32>,
}

impl XdpSink {
    /// A sink for `batches` batches of `frames_per_batch` frames each, laid out from area offset `tx_base`.
    pub fn new(xsk: Xsk, shared: Arc<SharedTemplate>, tx_base: u64, frames_per_batch: usize, batches: usize) -> Self {
        let template = shared.get();
        XdpSink {
            xsk,
            generation: shared.generation.load(Ordering::Acquire),
            shared,
            template,
            tx_base,
            frames_per_batch: frames_per_batch as u64,
            outstanding: vec![0; batches],
        }
    }

    /// The socket.
    pub fn xsk(&self) -> &Xsk {
        &self.xsk
    }

    fn batch_of(&self, frame_offset: u64) -> usize {
        ((frame_offset - self.tx_base) / (FRAME_SIZE as u64 * self.frames_per_batch)) as usize
    }

    /// Takes completed frames off the completion ring and credits them to their batches.
    fn reap(&mut self) {
        let (tx_base, per) = (self.tx_base, FRAME_SIZE as u64 * self.frames_per_batch);
        let outstanding = &mut self.outstanding;
        self.xsk.complete(u32::MAX, |off| {
            let b = ((off - tx_base) / per) as usize;
            debug_assert!(outstanding[b] > 0, "completion for batch {b} with nothing outstanding");
            outstanding[b] = outstanding[b].saturating_sub(1);
        });
    }

    /// Sends up to `limit` of the oldest datagrams of `batch`; returns how many.
    pub fn send(&mut self, batch: &mut TxBatch, limit: usize) -> io::Result<usize> {
        let gen = self.shared.generation.load(Ordering::Relaxed);
        if gen != self.generation {
            // Acquire pairs with `update`'s release.
            self.generation = self.shared.generation.load(Ordering::Acquire);
            self.template = self.shared.get();
        }
        self.reap();
        let want = limit.min(batch.len());
        let n = (self.xsk.tx_free(want as u32) as usize).min(want);
        if n == 0 {
            return Ok(0);
        }
        let first = batch.first_frame().expect("XdpSink given a heap batch");
        let b = self.batch_of(first);
        let hl = self.template.header_len();
        for i in 0..n {
            let (frame, offset) = batch.framed_mut(i, hl);
            self.template.write(frame);
            self.xsk.tx_write(i as u32, offset, frame.len() as u32);
        }
        self.outstanding[b] += n as u32;
        batch.mark_sent(n);
        self.xsk.tx_submit(n as u32)?;
        Ok(n)
    }

    /// Whether the kernel still owns frames of `batch` (it may not be refilled yet). Kicks the kernel while it
    /// does: in copy mode each kick sends a bounded number of descriptors.
    pub fn holds(&mut self, batch: &TxBatch) -> bool {
        let b = self.batch_of(batch.first_frame().expect("XdpSink given a heap batch"));
        self.reap();
        if self.outstanding[b] == 0 {
            return false;
        }
        let _ = self.xsk.kick_tx();
        self.reap();
        self.outstanding[b] > 0
    }

    /// Waits a little for TX ring room.
    pub fn wait_writable(&mut self, timeout: Duration) {
        let _ = self.xsk.kick_tx();
        self.reap();
        if self.xsk.tx_free(1) == 0 {
            std::thread::sleep(timeout.min(Duration::from_micros(50)));
        }
    }
}

/// Receives frames from one AF_XDP socket per queue into frame-backed [`RxBatch`]es.
pub struct XdpSource {
    sockets: Vec<Xsk>,
    /// UDP destination port of the session: a frame for another port (which the XDP program would not
    /// redirect, unless the port map is shared) is returned unread.
    port: u16,
    next: usize,
    pollfds: Vec<libc::pollfd>,
    /// Frames that were not a datagram for the session.
    pub not_ours: u64,
}

impl XdpSource {
    /// A source over `sockets` (each with an RX ring), with all their frames (`frames_of(k)`) put on their
    /// fill rings.
    pub fn new(mut sockets: Vec<Xsk>, port: u16, frames_of: impl Fn(usize) -> Vec<u64>) -> io::Result<Self> {
        for (k, s) in sockets.iter_mut().enumerate() {
            let frames = frames_of(k);
            let n = s.fill(&frames);
            if n != frames.len() {
                return Err(io::Error::other(format!("fill ring holds {n} of {} frames", frames.len())));
            }
        }
        let pollfds =
            sockets.iter().map(|s| libc::pollfd { fd: s.raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
        Ok(XdpSource { sockets, port, next: 0, pollfds, not_ours: 0 })
    }

    /// The sockets.
    pub fn sockets(&self) -> &[Xsk] {
        &self.sockets
    }

    /// Puts the frames `batch` holds back on their sockets' fill rings and empties it.
    pub fn recycle(&mut self, batch: &mut RxBatch) {
        let frames = batch.held_frames();
        if frames.is_empty() {
            return;
        }
        if self.sockets.len() == 1 {
            let n = self.sockets[0].fill(frames);
            // The fill ring has an entry for every frame of its UMEM, so the frames always fit.
            assert_eq!(n, frames.len(), "fill ring full: frame accounting is broken");
        } else {
            // `recv` takes frames from one socket after another, so a batch holds runs of one socket's frames:
            // one fill-ring submission per run.
            let mut rest = frames;
            while let Some(&first) = rest.first() {
                let s = self.sockets.iter_mut().find(|s| s.owns(first)).expect("a frame of no socket");
                let run = rest.iter().position(|&f| !s.owns(f)).unwrap_or(rest.len());
                assert_eq!(s.fill(&rest[..run]), run, "fill ring full: frame accounting is broken");
                rest = &rest[run..];
            }
        }
        batch.frames_returned();
    }

    /// Receives into `batch` (emptied by [`recycle`](Self::recycle)) from the sockets in turn; returns the
    /// datagrams received.
    pub fn recv(&mut self, batch: &mut RxBatch) -> usize {
        self.recycle(batch);
        let port = self.port;
        let mut not_ours = 0u64;
        for _ in 0..self.sockets.len() {
            let k = self.next;
            self.next = (self.next + 1) % self.sockets.len();
            let room = batch.capacity() - batch.held_frames().len();
            if room == 0 {
                break;
            }
            let sock = &mut self.sockets[k];
            let base = sock.area().base();
            let area_len = sock.area().len();
            sock.receive(room as u32, |frame, data, len| {
                let (data, len) = (data as usize, len as usize);
                let datagram = if data + len <= area_len {
                    // Safety: the kernel handed this frame over (it is ours until it goes back on the fill
                    // ring); the range lies inside the area (checked).
                    let bytes = unsafe { std::slice::from_raw_parts(base.add(data), len) };
                    match parse_udp(bytes) {
                        Ok(p) if p.dst_port == port => {
                            Some((data as u64 + p.payload_offset as u64, p.payload_len, p.src))
                        }
                        _ => None,
                    }
                } else {
                    None
                };
                if datagram.is_none() {
                    not_ours += 1;
                }
                let held = batch.hold_frame(frame, datagram);
                debug_assert!(held, "received more frames than asked for");
            });
        }
        for _ in 0..not_ours {
            batch.count_truncated();
        }
        self.not_ours += not_ours;
        batch.len()
    }

    /// Waits up to `timeout` for frames on any socket (this is also the fill rings' wake-up).
    pub fn wait(&mut self, timeout: Duration) {
        if self.sockets.len() == 1 {
            self.sockets[0].wait_rx(timeout.as_millis() as i32);
            return;
        }
        // Safety: `pollfds` is a valid array of its length.
        unsafe {
            libc::poll(self.pollfds.as_mut_ptr(), self.pollfds.len() as libc::nfds_t, timeout.as_millis() as i32)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::frame::FlowAddrs;

    fn addrs(mac: u8) -> FlowAddrs {
        FlowAddrs {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, mac],
            src: "10.0.0.1:1".parse().unwrap(),
            dst: "10.0.0.2:2".parse().unwrap(),
        }
    }

    /// The neighbour watcher's hand-over: an unchanged resolution is no update, a new MAC bumps the generation
    /// the sink checks, and the sink's next `get` sees it.
    #[test]
    fn shared_template_updates_only_on_change() {
        let cell = SharedTemplate::new(FrameTemplate::new(addrs(2)).unwrap());
        let gen = cell.generation.load(Ordering::Acquire);
        assert!(!cell.update(FrameTemplate::new(addrs(2)).unwrap()));
        assert_eq!(cell.generation.load(Ordering::Acquire), gen);
        assert!(cell.update(FrameTemplate::new(addrs(9)).unwrap()));
        assert_eq!(cell.generation.load(Ordering::Acquire), gen + 1);
        assert_eq!(cell.get().addrs().dst_mac, [2, 0, 0, 0, 0, 9]);
    }
}
