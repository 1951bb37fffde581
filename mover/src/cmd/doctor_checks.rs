//! `mover doctor`: judging what [`super::doctor_host`] read. Each check gives one [`Finding`]: how bad it is,
//! what was seen, why it matters to mover (with the hardware note it rests on), and the exact command that
//! fixes it. The thresholds and their sources are in hardware-notes/ (nic.md, disk.md, cpu.md).

use super::doctor_host::HostReadings;
use crate::json::JsonObject;
use crate::net::sysinfo::Interface;
use crate::rate::format_bytes;

/// What mover asks for per data socket (`session::SOCKET_BUFFER_BYTES`, 64 MiB): a ceiling below it caps a
/// mover that runs without CAP_NET_ADMIN (root forces its size past the ceiling).
const WANTED_SOCKET_BUFFER: u64 = 64 << 20;
/// The value the fixes propose: 256 MiB, ESnet's figure for 10G paths up to ~200 ms (hardware-notes/nic.md).
const PROPOSED_SOCKET_BUFFER: u64 = 256 << 20;
/// Below this a burst at 10 Gbit/s (1 MiB is under 1 ms of it) overflows the receive buffer.
const TINY_SOCKET_BUFFER: u64 = 1 << 20;
/// netdev_max_backlog below this drops at 10G+ on one RX queue (hardware-notes/nic.md#backlog).
const MIN_BACKLOG: u64 = 5000;
/// Locked memory the data path registers: reader and writer pools (tens of MiB) and AF_XDP frames (16 MiB a
/// queue).
const WANTED_MEMLOCK: u64 = 256 << 20;
/// The pipeline's stages: 4 on the sender (reader, packetizer, pacer, nak), 3 on the receiver.
const SENDER_STAGES: usize = 4;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Nothing to do.
    Ok,
    /// Slower than it could be, or unchecked.
    Warn,
    /// A transfer will suffer.
    Bad,
}

impl Severity {
    /// "ok", "warn" or "bad".
    pub fn name(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warn => "warn",
            Severity::Bad => "bad",
        }
    }
}

/// One judged observation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What was checked, e.g. `sysctl net.core.rmem_max`, `eth0 rings`.
    pub check: String,
    /// How bad.
    pub severity: Severity,
    /// What was seen.
    pub seen: String,
    /// Why it matters for mover, ending with the hardware note it rests on.
    pub why: String,
    /// The command that fixes it (empty when there is nothing to fix).
    pub fix: String,
}

impl Finding {
    fn new(
        check: impl Into<String>,
        severity: Severity,
        seen: impl Into<String>,
        why: &str,
        fix: impl Into<String>,
    ) -> Self {
        Finding { check: check.into(), severity, seen: seen.into(), why: why.to_string(), fix: fix.into() }
    }

    /// The finding's JSON object.
    pub fn to_json(&self) -> JsonObject {
        JsonObject::new()
            .str("check", &self.check)
            .str("severity", self.severity.name())
            .str("seen", &self.seen)
            .str("why", &self.why)
            .str("fix", &self.fix)
    }
}

/// Every finding about the host, in report order.
pub fn judge(h: &HostReadings) -> Vec<Finding> {
    let mut out = Vec::new();
    sysctl_findings(h, &mut out);
    for i in h.interfaces.iter().filter(|i| !i.is_loopback) {
        interface_findings(i, h.cores, &mut out);
    }
    for (name, mode) in &h.xdp {
        let features = h.xdp_features.iter().find(|(n, _)| n == name).map(|(_, f)| *f);
        out.push(xdp_finding(name, mode, features));
    }
    cpu_findings(h, &mut out);
    memory_findings(h, &mut out);
    out
}

fn sysctl_value(h: &HostReadings, name: &str) -> Option<String> {
    h.sysctls.iter().find(|(k, _)| *k == name).and_then(|(_, v)| v.clone())
}

fn sysctl_findings(h: &HostReadings, out: &mut Vec<Finding>) {
    const WHY_BUF: &str = "mover asks for 64 MiB socket buffers to ride out bursts and the pacer's ticks; a mover \
        without CAP_NET_ADMIN is capped at this ceiling and drops datagrams (then retransmits) once it fills; \
        see hardware-notes/nic.md#socket-buffers";
    for name in ["net.core.rmem_max", "net.core.wmem_max"] {
        let check = format!("sysctl {name}");
        match sysctl_value(h, name).and_then(|v| v.parse::<u64>().ok()) {
            Some(v) => {
                let sev = if v >= WANTED_SOCKET_BUFFER {
                    Severity::Ok
                } else if v >= TINY_SOCKET_BUFFER {
                    Severity::Warn
                } else {
                    Severity::Bad
                };
                let fix = if sev == Severity::Ok {
                    String::new()
                } else {
                    format!("sysctl -w {name}={PROPOSED_SOCKET_BUFFER} (or: tuning/mover-tune --apply 10g)")
                };
                out.push(Finding::new(check, sev, format!("{v} ({})", format_bytes(v)), WHY_BUF, fix));
            }
            None => out.push(Finding::new(check, Severity::Warn, "unreadable", WHY_BUF, "")),
        }
    }
    for name in ["net.core.rmem_default", "net.core.wmem_default"] {
        if let Some(v) = sysctl_value(h, name) {
            let why = "the size a socket gets without asking; mover asks for its own, so this only matters to \
                       other programs; see hardware-notes/nic.md#socket-buffers";
            out.push(Finding::new(format!("sysctl {name}"), Severity::Ok, v, why, ""));
        }
    }
    let why = "packets a CPU queues between the NIC's interrupt and the protocol stack; when the queue is full \
               the kernel drops them before any socket sees them (softnet_stat's second column counts these); \
               see hardware-notes/nic.md#backlog";
    match sysctl_value(h, "net.core.netdev_max_backlog").and_then(|v| v.parse::<u64>().ok()) {
        Some(v) if v >= MIN_BACKLOG => {
            out.push(Finding::new("sysctl net.core.netdev_max_backlog", Severity::Ok, v.to_string(), why, ""))
        }
        Some(v) => out.push(Finding::new(
            "sysctl net.core.netdev_max_backlog",
            Severity::Warn,
            v.to_string(),
            why,
            "sysctl -w net.core.netdev_max_backlog=250000 (or: tuning/mover-tune --apply 10g)",
        )),
        None => out.push(Finding::new(
            "sysctl net.core.netdev_max_backlog",
            Severity::Ok,
            "not in this network namespace (a global setting: the host's value applies)",
            why,
            "",
        )),
    }
    let why = "per-socket memory for options and control messages; mover's are small (a UDP_SEGMENT cmsg), \
               but below 10 KiB large batches of sendmmsg control data fail with ENOBUFS; see \
               hardware-notes/nic.md#socket-buffers";
    if let Some(v) = sysctl_value(h, "net.core.optmem_max").and_then(|v| v.parse::<u64>().ok()) {
        let (sev, fix) = if v >= 10_240 {
            (Severity::Ok, String::new())
        } else {
            (Severity::Warn, "sysctl -w net.core.optmem_max=131072".to_string())
        };
        out.push(Finding::new("sysctl net.core.optmem_max", sev, v.to_string(), why, fix));
    }
    if let Some(v) = sysctl_value(h, "net.ipv4.udp_mem") {
        // Pages: min, pressure, max. All UDP sockets together are capped at max.
        let max_pages = v.split_whitespace().nth(2).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0);
        let bytes = max_pages * 4096;
        let why = "pages all UDP sockets of the host may hold together; past it, every UDP socket drops; mover's \
                   receive socket alone may hold 64 MiB; see hardware-notes/nic.md#socket-buffers";
        let (sev, fix) = if bytes >= 4 * WANTED_SOCKET_BUFFER {
            (Severity::Ok, String::new())
        } else {
            (Severity::Warn, "sysctl -w net.ipv4.udp_mem='262144 524288 1048576'".to_string())
        };
        out.push(Finding::new("sysctl net.ipv4.udp_mem", sev, format!("{v} (max {})", format_bytes(bytes)), why, fix));
    }
    let busy: Vec<String> = ["net.core.busy_poll", "net.core.busy_read"]
        .iter()
        .filter_map(|k| sysctl_value(h, k).map(|v| format!("{k}={v}")))
        .collect();
    if !busy.is_empty() {
        let why = "0 is interrupt-driven receive (the default); busy polling trades a core for latency. mover's \
                   AF_XDP receiver busy-polls per socket when MOVER_XDP_BUSY_POLL is set, without these; see \
                   hardware-notes/nic.md#busy-polling";
        out.push(Finding::new("sysctl busy_poll/busy_read", Severity::Ok, busy.join(", "), why, ""));
    }
}

fn interface_findings(i: &Interface, cores: usize, out: &mut Vec<Finding>) {
    let name = &i.name;
    let speed = i.speed_mbps.map_or("speed not reported".to_string(), |s| format!("{s} Mbit/s"));
    let driver = if i.driver.is_empty() { "no driver" } else { i.driver.as_str() };
    let why = "datagrams are sized to the path MTU (--mtu); below 1500 every byte costs more packets, and \
               each packet costs the sender and receiver the same CPU; see hardware-notes/nic.md#mtu";
    let sev = if i.mtu >= 1500 { Severity::Ok } else { Severity::Warn };
    let fix = if sev == Severity::Ok { String::new() } else { format!("ip link set dev {name} mtu 1500") };
    out.push(Finding::new(
        format!("{name} mtu"),
        sev,
        format!("{} ({driver}, {speed}, {})", i.mtu, i.operstate),
        why,
        fix,
    ));
    if let Some(r) = i.rings {
        let why = "descriptors the NIC can fill before the kernel empties them; a short ring drops a burst \
                   while the CPU is busy (rx_missed/rx_no_buffer in ethtool -S); see hardware-notes/nic.md#rings";
        let short = r.rx < r.rx_max || r.tx < r.tx_max;
        let (sev, fix) = if short {
            (
                Severity::Warn,
                format!(
                    "ethtool -G {name} rx {} tx {} (or: tuning/mover-tune --apply 10g --iface {name})",
                    r.rx_max, r.tx_max
                ),
            )
        } else {
            (Severity::Ok, String::new())
        };
        out.push(Finding::new(
            format!("{name} rings"),
            sev,
            format!("rx {}/{} tx {}/{} (now/max)", r.rx, r.rx_max, r.tx, r.tx_max),
            why,
            fix,
        ));
    }
    let why = "GRO merges a burst of UDP datagrams into one trip up the stack and GSO sends many in one call: \
               mover uses UDP GSO, and with GRO off the receiver pays per datagram; TSO only helps the TCP \
               control channel; rx-udp-gro-forwarding matters only on a host that forwards; see \
               hardware-notes/nic.md#offloads";
    if !i.features.is_empty() {
        let state = |f: &str| i.feature(f).map_or("n/a", |on| if on { "on" } else { "off" });
        let seen = format!(
            "gro {}, gso {}, tso {}, tx-udp-segmentation {}, rx-udp-gro-forwarding {}",
            state("rx-gro"),
            state("tx-generic-segmentation"),
            state("tx-tcp-segmentation"),
            state("tx-udp-segmentation"),
            state("rx-udp-gro-forwarding")
        );
        let off: Vec<&str> = [("rx-gro", "gro"), ("tx-generic-segmentation", "gso")]
            .into_iter()
            .filter(|(f, _)| i.feature(f) == Some(false))
            .map(|(_, k)| k)
            .collect();
        let (sev, fix) = if off.is_empty() {
            (Severity::Ok, String::new())
        } else {
            (
                Severity::Warn,
                format!("ethtool -K {name} {}", off.iter().map(|k| format!("{k} on")).collect::<Vec<_>>().join(" ")),
            )
        };
        out.push(Finding::new(format!("{name} offloads"), sev, seen, why, fix));
    }
    if let Some(c) = i.channels {
        let why = "each channel is a queue pair with its own interrupt, spread over cores by RSS; mover's \
                   receiver opens one AF_XDP socket per receive queue and its UDP socket is served by whichever \
                   queue RSS picks; see hardware-notes/nic.md#channels-and-irqs";
        let now = c.combined.max(c.rx);
        let want = c.combined_max.min(cores as u32);
        let (sev, fix) = if c.combined_max > 0 && c.combined < want {
            (Severity::Warn, format!("ethtool -L {name} combined {want}"))
        } else {
            (Severity::Ok, String::new())
        };
        out.push(Finding::new(
            format!("{name} channels"),
            sev,
            format!("{now} in use, {} at most ({} receive queues)", c.combined_max, i.rx_queues),
            why,
            fix,
        ));
    }
    if !i.irqs.is_empty() {
        let seen = i.irqs.iter().map(|(n, a)| format!("{n}->{a}")).collect::<Vec<_>>().join(" ");
        let why = "the core that takes a queue's interrupt also runs its softirq (GRO, the UDP stack); when \
                   it is the core a mover stage is pinned to (--cores), the two compete; see \
                   hardware-notes/nic.md#channels-and-irqs";
        let all_one_cpu =
            i.irqs.len() > 1 && i.irqs.windows(2).all(|w| w[0].1 == w[1].1) && !i.irqs[0].1.contains([',', '-']);
        let (sev, fix) = if all_one_cpu && cores > 1 {
            let (n, _) = i.irqs[1];
            let tune = format!("tuning/mover-tune --apply 10g --iface {name}");
            (Severity::Warn, format!("echo 1 > /proc/irq/{n}/smp_affinity_list (spread queues over cores; or: {tune})"))
        } else {
            (Severity::Ok, String::new())
        };
        out.push(Finding::new(format!("{name} irq affinity"), sev, seen, why, fix));
    }
}

fn xdp_finding(name: &str, mode: &Result<&'static str, String>, features: Option<u64>) -> Finding {
    use crate::net::xdp_features::{names, XDP_ACT_BASIC, XDP_ACT_XSK_ZEROCOPY};
    let why = "AF_XDP bypasses the kernel's UDP stack; zero-copy mode lets the NIC use mover's frames directly, \
               copy mode copies each frame once and measured slower than UDP sockets on a veth; --net auto takes \
               AF_XDP only where the driver runs XDP natively; see hardware-notes/nic.md#af-xdp";
    let check = format!("{name} af_xdp");
    let driver = match features {
        Some(f) => format!(
            "driver xdp-features: {} ({}, {})",
            if f == 0 { "none".to_string() } else { names(f).join(", ") },
            if f & XDP_ACT_BASIC != 0 { "native XDP" } else { "generic XDP only" },
            if f & XDP_ACT_XSK_ZEROCOPY != 0 { "zero-copy capable" } else { "no zero-copy" }
        ),
        None => "driver xdp-features not reported (Linux before 6.3)".to_string(),
    };
    match mode {
        Ok("zero-copy") => Finding::new(check, Severity::Ok, format!("zero-copy bind works; {driver}"), why, ""),
        Ok(m) if features.is_some_and(|f| f & XDP_ACT_XSK_ZEROCOPY != 0) => Finding::new(
            check,
            Severity::Ok,
            format!(
                "{m} bind on queue 0 although the {driver}: the driver refused zero-copy for this socket \
                 (a transmit-only socket, the queue's set-up or the device's features); UDP sockets are the faster \
                 path unless zero-copy binds"
            ),
            why,
            "",
        ),
        Ok(m) => Finding::new(
            check,
            Severity::Ok,
            format!("{m} bind only; {driver}: UDP sockets are the faster path"),
            why,
            "",
        ),
        Err(e) if e.contains("run as root") => {
            Finding::new(check, Severity::Warn, format!("bind not checked: {e}; {driver}"), why, "sudo mover doctor")
        }
        Err(e) => {
            Finding::new(check, Severity::Ok, format!("cannot bind: {e}; {driver}: UDP sockets will be used"), why, "")
        }
    }
}

fn cpu_findings(h: &HostReadings, out: &mut Vec<Finding>) {
    let why = "a powersave or ondemand governor starts a burst at a low clock; the pacer's and packetizer's \
               per-packet work then runs slower than measured; see hardware-notes/cpu.md#governor";
    let freq = h.cpu.cur_max_khz.map_or(String::new(), |(c, m)| format!(", cpu0 at {} of {} MHz", c / 1000, m / 1000));
    if h.cpu.governors.is_empty() {
        out.push(Finding::new(
            "cpu governor",
            Severity::Ok,
            "no cpufreq in /sys (a VM: the hypervisor's host sets the clock, which this guest cannot see or change)",
            why,
            "",
        ));
    } else if h.cpu.governors.iter().all(|g| g == "performance") {
        out.push(Finding::new("cpu governor", Severity::Ok, format!("performance{freq}"), why, ""));
    } else {
        out.push(Finding::new(
            "cpu governor",
            Severity::Warn,
            format!("{}{freq}", h.cpu.governors.join(", ")),
            why,
            "cpupower frequency-set -g performance (or: tuning/mover-tune --apply 10g --governor)",
        ));
    }
    let why = "waking from a deep idle state takes its exit latency; a receiver core that sleeps between \
               bursts adds it to every burst; see hardware-notes/cpu.md#c-states";
    let deepest = h.idle_states.iter().max_by_key(|s| s.1);
    match deepest {
        Some((name, lat)) if *lat > 100 => out.push(Finding::new(
            "cpu idle states",
            Severity::Warn,
            format!("deepest enabled {name} ({lat} us exit latency)"),
            why,
            "cpupower idle-set -D 10 (disables the idle states with an exit latency of 10 us or more)",
        )),
        Some((name, lat)) => out.push(Finding::new(
            "cpu idle states",
            Severity::Ok,
            format!("deepest enabled {name} ({lat} us)"),
            why,
            "",
        )),
        None => out.push(Finding::new("cpu idle states", Severity::Ok, "no cpuidle states listed", why, "")),
    }
    let why = "mover's datagram AEAD (AES-256-GCM) runs at GB/s per core only with AES instructions; without \
               them --cipher chacha20poly1305 is faster; see hardware-notes/cpu.md#aes-ni";
    match h.aes {
        Some(true) => out.push(Finding::new("cpu aes", Severity::Ok, "AES instructions present", why, "")),
        Some(false) => out.push(Finding::new(
            "cpu aes",
            Severity::Warn,
            "no AES instructions in /proc/cpuinfo",
            why,
            "push/pull with --cipher chacha20poly1305",
        )),
        None => {}
    }
    let why = "the sender runs 4 pinned stages (reader, packetizer, pacer, nak) and the receiver 3; with fewer \
               cores than stages they share cores and each waits for the others; see \
               hardware-notes/cpu.md#cores";
    let sev = if h.cores >= SENDER_STAGES { Severity::Ok } else { Severity::Warn };
    let fix = if sev == Severity::Ok { "" } else { "run on a host (or VM) with 4 or more cores" };
    out.push(Finding::new("cpu cores", sev, format!("{} usable", h.cores), why, fix));
}

fn memory_findings(h: &HostReadings, out: &mut Vec<Finding>) {
    let why = "the disk stages read and write through io_uring (pread/pwrite otherwise, slower at depth); see \
               hardware-notes/disk.md#io-uring";
    let disabled = h.io_uring_disabled.map_or(String::new(), |d| format!(" (kernel.io_uring_disabled={d})"));
    match &h.io_uring_error {
        None => out.push(Finding::new("io_uring", Severity::Ok, format!("available{disabled}"), why, "")),
        Some(e) => out.push(Finding::new(
            "io_uring",
            Severity::Bad,
            format!("unavailable: {e}{disabled}"),
            why,
            "sysctl -w kernel.io_uring_disabled=0 (or allow io_uring_setup in the container's seccomp profile)",
        )),
    }
    let why = "io_uring's registered buffers and AF_XDP's frames are pinned and count against RLIMIT_MEMLOCK \
               unless the process has CAP_IPC_LOCK; too low a limit fails their set-up; see \
               hardware-notes/disk.md#locked-memory";
    let seen = match h.memlock {
        None => "unlimited".to_string(),
        Some(b) => format!("{}{}", format_bytes(b), if h.ipc_lock { " (CAP_IPC_LOCK: not enforced)" } else { "" }),
    };
    let low = h.memlock.is_some_and(|b| b < WANTED_MEMLOCK) && !h.ipc_lock;
    let (sev, fix) = if low {
        (Severity::Warn, "ulimit -l unlimited (or LimitMEMLOCK=infinity in the systemd unit)")
    } else {
        (Severity::Ok, "")
    };
    out.push(Finding::new("memlock limit", sev, seen, why, fix));
    let (total, size_kb) = h.huge_pages;
    let thp = h.thp.clone().unwrap_or_else(|| "unknown".into());
    let why = "AF_XDP frames sit on reserved 2 MiB huge pages when there are some (fewer TLB misses per frame); \
               the disk pools ask for transparent huge pages (madvise); see hardware-notes/cpu.md#huge-pages";
    let (sev, fix) = if thp == "never" {
        (Severity::Warn, "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled")
    } else {
        (Severity::Ok, "")
    };
    out.push(Finding::new(
        "huge pages",
        sev,
        format!("{total} reserved of {size_kb} kB; transparent huge pages: {thp}"),
        why,
        fix,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ethtool::{Feature, Rings};

    fn host(rmem: &str) -> HostReadings {
        HostReadings {
            sysctls: vec![("net.core.rmem_max", Some(rmem.into())), ("net.core.wmem_max", Some("268435456".into()))],
            cores: 8,
            ..HostReadings::default()
        }
    }

    fn find<'a>(f: &'a [Finding], check: &str) -> &'a Finding {
        f.iter().find(|x| x.check == check).unwrap_or_else(|| panic!("no {check} in {f:?}"))
    }

    #[test]
    fn small_socket_buffers_are_bad_with_the_fix_and_large_ones_ok() {
        let f = judge(&host("212992"));
        let r = find(&f, "sysctl net.core.rmem_max");
        assert_eq!(r.severity, Severity::Bad);
        assert!(r.fix.starts_with("sysctl -w net.core.rmem_max=268435456"), "{r:?}");
        assert!(r.why.contains("hardware-notes/nic.md#socket-buffers"));
        assert_eq!(find(&judge(&host("4194304")), "sysctl net.core.rmem_max").severity, Severity::Warn);
        let ok = judge(&host("268435456"));
        assert_eq!(find(&ok, "sysctl net.core.rmem_max").severity, Severity::Ok);
        assert_eq!(find(&ok, "sysctl net.core.rmem_max").fix, "");
        assert_eq!(find(&ok, "sysctl net.core.wmem_max").severity, Severity::Ok);
    }

    #[test]
    fn short_rings_offloads_off_and_a_small_mtu_are_found() {
        let mut h = host("268435456");
        h.interfaces.push(Interface {
            name: "eth9".into(),
            mtu: 1280,
            rings: Some(Rings { rx: 256, rx_max: 4096, tx: 256, tx_max: 4096 }),
            features: vec![
                Feature { name: "rx-gro".into(), active: false, changeable: true },
                Feature { name: "tx-generic-segmentation".into(), active: true, changeable: true },
            ],
            ..Interface::default()
        });
        let f = judge(&h);
        assert_eq!(find(&f, "eth9 mtu").fix, "ip link set dev eth9 mtu 1500");
        assert!(find(&f, "eth9 rings").fix.starts_with("ethtool -G eth9 rx 4096 tx 4096"));
        let off = find(&f, "eth9 offloads");
        assert_eq!((off.severity, off.fix.as_str()), (Severity::Warn, "ethtool -K eth9 gro on"));
        assert_eq!(find(&f, "io_uring").severity, Severity::Ok);
    }
}
