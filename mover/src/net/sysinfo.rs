//! What the host's network configuration is, read from `/proc/sys`, `/sys/class/net`, `/proc/interrupts` and
//! ethtool ioctls ([`super::ethtool`]): the values `mover doctor` judges. Everything here only reads.
//!
//! Paths are read in the caller's network namespace: `/proc/sys/net` and `/sys/class/net` follow the namespace
//! of the reading process (sysfs is remounted per namespace by `ip netns exec`).

use super::ethtool::{self, Channels, Feature, Rings};
use std::fs;
use std::path::Path;

/// A sysctl by its dotted name (`net.core.rmem_max`), trimmed; `None` when the kernel (or this network
/// namespace) has no such key or it cannot be read.
pub fn sysctl(name: &str) -> Option<String> {
    if name.contains("..") || name.contains('/') {
        return None;
    }
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    fs::read_to_string(path).ok().map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A numeric sysctl (the first number when the value has several, as `udp_mem` does).
pub fn sysctl_u64(name: &str) -> Option<u64> {
    sysctl(name)?.split_whitespace().next()?.parse().ok()
}

/// One network interface as the doctor sees it.
#[derive(Clone, Debug, Default)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Interface index.
    pub ifindex: u32,
    /// MTU in bytes.
    pub mtu: u32,
    /// `operstate` (up, down, unknown, ...).
    pub operstate: String,
    /// Link speed in Mbit/s, `None` when the driver does not say (virtual devices).
    pub speed_mbps: Option<u64>,
    /// The driver's name (`/sys/class/net/X/device/driver`), or the kind of virtual device (`veth`, ...), or
    /// empty.
    pub driver: String,
    /// Loopback device.
    pub is_loopback: bool,
    /// A physical or paravirtual device (it has `/sys/class/net/X/device`), as opposed to veth, bridge, ifb.
    pub has_device: bool,
    /// Ring sizes, if the driver reports them.
    pub rings: Option<Rings>,
    /// Channels, if the driver reports them.
    pub channels: Option<Channels>,
    /// Offload features by name.
    pub features: Vec<Feature>,
    /// Interrupts of the device: (IRQ number, its `smp_affinity_list`).
    pub irqs: Vec<(u32, String)>,
    /// Receive queues in `/sys/class/net/X/queues`.
    pub rx_queues: u32,
}

impl Interface {
    /// Whether the feature `name` is on; `None` if the device does not list it.
    pub fn feature(&self, name: &str) -> Option<bool> {
        self.features.iter().find(|f| f.name == name).map(|f| f.active)
    }
}

fn read_trim(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Every interface of this network namespace, sorted by name.
pub fn interfaces() -> Vec<Interface> {
    let Ok(dir) = fs::read_dir("/sys/class/net") else { return Vec::new() };
    let mut names: Vec<String> = dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let interrupts = fs::read_to_string("/proc/interrupts").unwrap_or_default();
    names
        .into_iter()
        .filter(|n| Path::new("/sys/class/net").join(n).join("ifindex").exists())
        .map(|n| interface(&n, &interrupts))
        .collect()
}

/// One interface by name, with `interrupts` the text of `/proc/interrupts`.
fn interface(name: &str, interrupts: &str) -> Interface {
    let sys = Path::new("/sys/class/net").join(name);
    let num = |f: &str| read_trim(sys.join(f)).and_then(|s| s.parse::<u64>().ok());
    let flags = read_trim(sys.join("flags")).and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok());
    let device = sys.join("device");
    let has_device = device.exists();
    let driver = fs::read_link(device.join("driver"))
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .or_else(|| kind_from_uevent(&sys))
        .unwrap_or_default();
    let rx_queues = fs::read_dir(sys.join("queues"))
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count() as u32)
        .unwrap_or(0);
    Interface {
        name: name.to_string(),
        ifindex: num("ifindex").unwrap_or(0) as u32,
        mtu: num("mtu").unwrap_or(0) as u32,
        operstate: read_trim(sys.join("operstate")).unwrap_or_default(),
        // Virtual devices answer -1 or EINVAL.
        speed_mbps: read_trim(sys.join("speed"))
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|&s| s > 0)
            .map(|s| s as u64),
        driver,
        is_loopback: flags.is_some_and(|f| f & libc::IFF_LOOPBACK as u64 != 0),
        has_device,
        rings: ethtool::rings(name).ok().flatten(),
        channels: ethtool::channels(name).ok().flatten(),
        features: ethtool::features(name).unwrap_or_default(),
        irqs: if has_device { irqs_of(name, &device, interrupts) } else { Vec::new() },
        rx_queues,
    }
}

/// `DEVTYPE=` of a virtual device's uevent (`veth` shows none; its kind comes from its `iflink` peer), or
/// "veth" for a device whose `iflink` differs from its `ifindex` (a veth's peer), else `None`.
fn kind_from_uevent(sys: &Path) -> Option<String> {
    let uevent = fs::read_to_string(sys.join("uevent")).unwrap_or_default();
    if let Some(t) = uevent.lines().find_map(|l| l.strip_prefix("DEVTYPE=")) {
        return Some(t.to_string());
    }
    let ifindex = read_trim(sys.join("ifindex"))?;
    let iflink = read_trim(sys.join("iflink"))?;
    (ifindex != iflink).then(|| "veth".to_string())
}

/// The device's interrupts: the MSI vectors of its bus device (`msi_irqs`, of the device or, for virtio,
/// of its PCI parent), else the `/proc/interrupts` lines that name the interface or the device.
fn irqs_of(name: &str, device: &Path, interrupts: &str) -> Vec<(u32, String)> {
    let dev_name = fs::canonicalize(device).ok().and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()));
    let mut irqs: Vec<u32> = interrupts
        .lines()
        .filter_map(|l| {
            let (num, rest) = l.trim_start().split_once(':')?;
            let num: u32 = num.parse().ok()?;
            let label = rest.split_whitespace().last()?;
            let mine = irq_label_is_of(label, name, dev_name.as_deref());
            mine.then_some(num)
        })
        .collect();
    if irqs.is_empty() {
        for dir in [device.join("msi_irqs"), device.join("..").join("msi_irqs")] {
            if let Ok(d) = fs::read_dir(dir) {
                irqs.extend(d.flatten().filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok()));
                break;
            }
        }
    }
    irqs.sort_unstable();
    irqs.dedup();
    irqs.into_iter()
        .map(|n| (n, read_trim(format!("/proc/irq/{n}/smp_affinity_list")).unwrap_or_else(|| "?".into())))
        .collect()
}

/// Whether a `/proc/interrupts` label names a packet interrupt of interface `name` (bus device `dev`).
/// Drivers name queue interrupts after the interface ("eth0-TxRx-0" ixgbe, "i40e-eth0-TxRx-0") or the bus
/// device ("virtio2-input.0"); a device's "-config" interrupt carries no packets.
fn irq_label_is_of(label: &str, name: &str, dev: Option<&str>) -> bool {
    label == name
        || label.starts_with(&format!("{name}-"))
        || label.contains(&format!("-{name}-"))
        || label.ends_with(&format!("-{name}"))
        || dev.is_some_and(|d| label.starts_with(&format!("{d}-")) && !label.ends_with("-config"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctls_and_loopback_are_read() {
        assert!(sysctl_u64("net.core.rmem_max").is_some_and(|v| v > 0));
        assert!(sysctl("net.ipv4.../x").is_none());
        assert!(sysctl("no.such.key").is_none());
        let lo = interfaces().into_iter().find(|i| i.name == "lo").expect("lo");
        assert!(lo.is_loopback && lo.mtu > 0 && lo.ifindex == 1, "{lo:?}");
        assert!(lo.feature("rx-gro").is_some());
    }

    #[test]
    fn interrupt_labels_are_matched_to_their_interface() {
        assert!(irq_label_is_of("eth0-TxRx-0", "eth0", None));
        assert!(irq_label_is_of("i40e-eth0-TxRx-3", "eth0", None));
        assert!(irq_label_is_of("virtio2-input.0", "eth0", Some("virtio2")));
        assert!(!irq_label_is_of("virtio2-config", "eth0", Some("virtio2")));
        assert!(!irq_label_is_of("eth01-TxRx-0", "eth0", None));
        assert!(!irq_label_is_of("virtio20-input.0", "eth0", Some("virtio2")));
    }
}
