//! `mover doctor`: reading the host (CPU frequency and governor, idle states, huge pages, io_uring,
//! locked-memory limit, cores, sysctls, interfaces and their AF_XDP bind mode) into one [`HostReadings`]
//! that the checks in [`super::doctor_checks`] judge. Only reads: nothing here writes a file or a setting.

use crate::net::sysinfo::{self, Interface};
use std::fs;

/// The sysctls the doctor reads, in the order it reports them.
pub const SYSCTLS: [&str; 9] = [
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.rmem_default",
    "net.core.wmem_default",
    "net.core.netdev_max_backlog",
    "net.core.optmem_max",
    "net.ipv4.udp_mem",
    "net.core.busy_poll",
    "net.core.busy_read",
];

/// CPU frequency scaling as `/sys/devices/system/cpu/cpu*/cpufreq` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuFreq {
    /// Distinct governors of the CPUs (empty when there is no cpufreq: most VMs).
    pub governors: Vec<String>,
    /// Current and maximum frequency of cpu0 in kHz, when shown.
    pub cur_max_khz: Option<(u64, u64)>,
}

/// Everything read from the host.
#[derive(Clone, Debug, Default)]
pub struct HostReadings {
    /// Each of [`SYSCTLS`] with its value, `None` when this kernel or namespace has none.
    pub sysctls: Vec<(&'static str, Option<String>)>,
    /// Interfaces of this network namespace that are not down.
    pub interfaces: Vec<Interface>,
    /// Per non-loopback interface: the AF_XDP bind mode it allows ("zero-copy"/"copy") or why none.
    pub xdp: Vec<(String, Result<&'static str, String>)>,
    /// Per interface name: the driver's `xdp-features` bits (`net::xdp_features`); empty before Linux 6.3.
    pub xdp_features: Vec<(String, u64)>,
    /// CPU frequency scaling.
    pub cpu: CpuFreq,
    /// Idle states of cpu0 that are enabled: (name, exit latency in us).
    pub idle_states: Vec<(String, u64)>,
    /// `HugePages_Total` and `Hugepagesize` (kB) from /proc/meminfo.
    pub huge_pages: (u64, u64),
    /// The selected mode of /sys/kernel/mm/transparent_hugepage/enabled.
    pub thp: Option<String>,
    /// Why an io_uring could not be set up; `None` when it could.
    pub io_uring_error: Option<String>,
    /// `kernel.io_uring_disabled`.
    pub io_uring_disabled: Option<u64>,
    /// RLIMIT_MEMLOCK soft limit in bytes (`None`: unlimited).
    pub memlock: Option<u64>,
    /// The process has CAP_IPC_LOCK (locked memory is then not limited).
    pub ipc_lock: bool,
    /// Cores this process may run on.
    pub cores: usize,
    /// AES instructions in /proc/cpuinfo (`aes` on x86, `aes` in Features on arm64).
    pub aes: Option<bool>,
}

/// Reads everything. `probe_xdp`: open an AF_XDP socket on each interface (needs root; skipped otherwise).
pub fn read(probe_xdp: bool) -> HostReadings {
    // A down interface carries no transfer (the ifb devices of traffic shaping, unused ports): not judged.
    let interfaces: Vec<Interface> = sysinfo::interfaces().into_iter().filter(|i| i.operstate != "down").collect();
    let xdp = interfaces
        .iter()
        .filter(|i| !i.is_loopback && probe_xdp)
        .map(|i| (i.name.clone(), crate::net::xdp_path::probe_bind_mode(i.ifindex)))
        .collect();
    let by_index = crate::net::xdp_features::dump().ok().flatten().unwrap_or_default();
    let xdp_features = interfaces
        .iter()
        .filter_map(|i| by_index.iter().find(|(x, _)| *x == i.ifindex).map(|(_, f)| (i.name.clone(), *f)))
        .collect();
    HostReadings {
        xdp_features,
        sysctls: SYSCTLS.iter().map(|&k| (k, sysinfo::sysctl(k))).collect(),
        interfaces,
        xdp,
        cpu: cpu_freq(),
        idle_states: idle_states(),
        huge_pages: huge_pages(),
        thp: fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok().and_then(|s| bracketed(&s)),
        io_uring_error: crate::disk::io_uring_available().err(),
        io_uring_disabled: sysinfo::sysctl_u64("kernel.io_uring_disabled"),
        memlock: memlock(),
        ipc_lock: crate::net::caps::has(14), // CAP_IPC_LOCK
        cores: crate::pipeline::topology::available_cores().len(),
        aes: aes_instructions(),
    }
}

/// The `[selected]` word of a sysfs choice list ("always [madvise] never").
fn bracketed(s: &str) -> Option<String> {
    let start = s.find('[')? + 1;
    let end = s[start..].find(']')? + start;
    Some(s[start..end].to_string())
}

fn cpu_freq() -> CpuFreq {
    let mut governors = Vec::new();
    if let Ok(dir) = fs::read_dir("/sys/devices/system/cpu") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.strip_prefix("cpu").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
                continue;
            }
            if let Ok(g) = fs::read_to_string(e.path().join("cpufreq/scaling_governor")) {
                governors.push(g.trim().to_string());
            }
        }
    }
    governors.sort();
    governors.dedup();
    let khz = |f: &str| {
        fs::read_to_string(format!("/sys/devices/system/cpu/cpu0/cpufreq/{f}")).ok()?.trim().parse::<u64>().ok()
    };
    let cur_max_khz = khz("scaling_cur_freq").zip(khz("cpuinfo_max_freq"));
    CpuFreq { governors, cur_max_khz }
}

fn idle_states() -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for i in 0..16 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cpuidle/state{i}");
        let Ok(name) = fs::read_to_string(format!("{dir}/name")) else { break };
        let disabled = fs::read_to_string(format!("{dir}/disable")).is_ok_and(|s| s.trim() == "1");
        let latency = fs::read_to_string(format!("{dir}/latency")).ok().and_then(|s| s.trim().parse().ok());
        if !disabled {
            out.push((name.trim().to_string(), latency.unwrap_or(0)));
        }
    }
    out
}

fn huge_pages() -> (u64, u64) {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |k: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(k)?.trim_start_matches(':').split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("HugePages_Total"), field("Hugepagesize"))
}

/// Sets up (and drops) a small io_uring, as the disk engines do first.
fn memlock() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // Safety: getrlimit writes one rlimit into `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(lim.rlim_cur)
}

fn aes_instructions() -> Option<bool> {
    let info = fs::read_to_string("/proc/cpuinfo").ok()?;
    let flags = info.lines().find(|l| l.starts_with("flags") || l.starts_with("Features"))?;
    Some(flags.split_whitespace().any(|f| f == "aes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_read() {
        let h = read(false);
        assert_eq!(h.sysctls.len(), SYSCTLS.len());
        assert!(h.sysctls[0].1.is_some(), "net.core.rmem_max is readable everywhere");
        assert!(h.cores >= 1);
        assert!(h.interfaces.iter().any(|i| i.is_loopback));
        assert_eq!(bracketed("always [madvise] never").as_deref(), Some("madvise"));
        assert_eq!(bracketed("none"), None);
    }
}
