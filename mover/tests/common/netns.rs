//! Two network namespaces joined by a veth pair, for tests that send real packets (ENGINEERING.md §15).
//!
//! Addresses are 10.77.<n>.1/24 (side A, the sender) and 10.77.<n>.2/24 (side B, the receiver), only inside
//! namespaces this guard created. Dropping the guard kills whatever still runs in them and deletes both
//! namespaces, which also removes the veth pair.

use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT_PAIR: AtomicU32 = AtomicU32::new(0);

/// The veth device's name inside each namespace (names are per namespace, so they never collide).
pub const VETH: &str = "mv0";

/// Why a privileged test cannot run here, if it cannot: not root, or no `ip` binary.
pub fn unavailable() -> Option<String> {
    // Safety: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    match Command::new("ip").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => None,
        _ => Some("no `ip` binary (iproute2)".into()),
    }
}

/// Prints the loud skip line and returns true when the caller must return early; under
/// `MOVER_REQUIRE_CAPS=1` (CI) panics instead (see [`super::skip_or_fail`]).
pub fn skip_unless_root(test: &str) -> bool {
    match unavailable() {
        None => false,
        Some(why) => {
            super::skip_or_fail(test, &format!("needs root (CI runs as root): {why}"));
            true
        }
    }
}

/// Two namespaces `a` (sender side) and `b` (receiver side) with a veth pair between them.
pub struct NetnsPair {
    pub a: String,
    pub b: String,
    pub ip_a: Ipv4Addr,
    pub ip_b: Ipv4Addr,
}

impl NetnsPair {
    /// Creates the pair; `mtu` sets both veth ends (default 1500).
    pub fn new(mtu: Option<u32>) -> Result<NetnsPair, String> {
        let n = NEXT_PAIR.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let subnet = (pid.wrapping_mul(31).wrapping_add(n) % 250 + 1) as u8;
        let pair = NetnsPair {
            a: format!("mvt-{pid}-{n}-a"),
            b: format!("mvt-{pid}-{n}-b"),
            ip_a: Ipv4Addr::new(10, 77, subnet, 1),
            ip_b: Ipv4Addr::new(10, 77, subnet, 2),
        };
        // From here on, Drop cleans up whatever part was made.
        run(&["ip", "netns", "add", &pair.a])?;
        run(&["ip", "netns", "add", &pair.b])?;
        run(&["ip", "link", "add", VETH, "netns", &pair.a, "type", "veth", "peer", "name", VETH, "netns", &pair.b])?;
        let mtu = mtu.unwrap_or(1500).to_string();
        for (ns, ip) in [(&pair.a, pair.ip_a), (&pair.b, pair.ip_b)] {
            pair.exec(ns, &["ip", "link", "set", "lo", "up"])?;
            pair.exec(ns, &["ip", "link", "set", VETH, "mtu", &mtu])?;
            pair.exec(ns, &["ip", "addr", "add", &format!("{ip}/24"), "dev", VETH])?;
            pair.exec(ns, &["ip", "link", "set", VETH, "up"])?;
        }
        Ok(pair)
    }

    /// A command that runs `argv` inside namespace `ns` (`ip netns exec`), for the caller to spawn.
    pub fn command(&self, ns: &str, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(argv);
        c
    }

    /// Starts `mover serve --insecure-no-auth --net udp --listen IP_B:PORT --root ROOT [extra]` in namespace
    /// `b`, its stderr in `log`, and waits until it listens (panicking with the log if it exits or takes over
    /// 10 s). Killed when the guard drops.
    pub fn start_serve(
        &self,
        port: u16,
        root: &std::path::Path,
        log: &std::path::Path,
        extra: &[&str],
    ) -> super::KillOnDrop {
        let listen = format!("{}:{port}", self.ip_b);
        let log_file = std::fs::File::create(log).expect("server log");
        let mut argv =
            vec![env!("CARGO_BIN_EXE_mover"), "serve", "--insecure-no-auth", "--net", "udp", "--listen", &listen];
        argv.extend(["--root", root.to_str().unwrap()]);
        argv.extend(extra);
        let child = self.command(&self.b, &argv).stdout(Stdio::null()).stderr(log_file).spawn().expect("spawn serve");
        let mut server = super::KillOnDrop(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("listening on") {
                return server;
            }
            if let Ok(Some(status)) = server.0.try_wait() {
                panic!("mover serve exited early ({status}): {text}");
            }
            assert!(std::time::Instant::now() < deadline, "mover serve did not start listening: {text}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Runs `argv` inside `ns` to completion; an error carries its stderr.
    pub fn exec(&self, ns: &str, argv: &[&str]) -> Result<Output, String> {
        let out = self.command(ns, argv).output().map_err(|e| format!("{argv:?} in {ns}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{argv:?} in {ns}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(out)
    }

    /// Turns off the veth offloads that would make one "packet" a 64 KB burst (segmentation, GRO) and the
    /// checksum offload, on both ends: loss then hits single datagrams, as on a real wire.
    pub fn offloads_off(&self) -> Result<(), String> {
        for ns in [&self.a, &self.b] {
            self.exec(ns, &["ethtool", "-K", VETH, "tso", "off", "gso", "off", "gro", "off", "tx", "off"])?;
        }
        Ok(())
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        remove_namespaces([&self.a, &self.b]);
    }
}

/// Kills what still runs in each namespace and deletes it (which removes its links).
pub fn remove_namespaces<'a>(names: impl IntoIterator<Item = &'a String>) {
    for ns in names {
        // Only processes inside our own namespaces: children the test started and may have lost track of.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<libc::pid_t>() {
                    // Safety: kill has no memory-safety preconditions; the pid was listed in our namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "delete", ns]).stderr(Stdio::null()).status();
    }
}

/// Runs `argv` (outside any namespace); an error carries its stderr.
pub fn run(argv: &[&str]) -> Result<(), String> {
    let out = Command::new(argv[0]).args(&argv[1..]).output().map_err(|e| format!("{argv:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{argv:?}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}
