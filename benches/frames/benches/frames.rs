//! Per-packet work of the XDP path in user space: writing Ethernet/IP/UDP headers with both checksums in front
//! of a datagram already in its frame (TX), and parsing a received frame (RX). The kernel's share (copy mode
//! copies every frame) is what `benches/run-xdp.sh` measures end to end.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mover::net::frame::{parse_udp, FlowAddrs, FrameTemplate};

fn template(v6: bool) -> FrameTemplate {
    let (src, dst) = if v6 { ("[fd00::1]:40000", "[fd00::2]:50000") } else { ("10.0.0.1:40000", "10.0.0.2:50000") };
    FrameTemplate::new(FlowAddrs {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
    })
    .unwrap()
}

fn tx(c: &mut Criterion) {
    let mut g = c.benchmark_group("tx_write_headers");
    for (v6, payload) in [(false, 1472usize), (false, 3770), (true, 1452), (true, 3750)] {
        let mut t = template(v6);
        let mut frame = vec![0x5au8; t.header_len() + payload];
        g.throughput(Throughput::Bytes(payload as u64));
        let name = if v6 { "ipv6" } else { "ipv4" };
        g.bench_with_input(BenchmarkId::new(name, payload), &payload, |b, _| {
            b.iter(|| {
                t.write(black_box(&mut frame));
            })
        });
    }
    g.finish();
}

fn rx(c: &mut Criterion) {
    let mut g = c.benchmark_group("rx_parse_frame");
    for (v6, payload) in [(false, 1472usize), (true, 3750)] {
        let mut t = template(v6);
        let mut frame = vec![0x5au8; t.header_len() + payload];
        t.write(&mut frame);
        g.throughput(Throughput::Elements(1));
        let name = if v6 { "ipv6" } else { "ipv4" };
        g.bench_with_input(BenchmarkId::new(name, payload), &payload, |b, _| {
            b.iter(|| parse_udp(black_box(&frame)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, tx, rx);
criterion_main!(benches);
