//! Several network namespaces on one bridge, for tests with more than two hosts (a striped push: a
//! sender, a receiver and relays). Each host `i` gets 10.78.<n>.<i+1>/24 on a veth whose other end is in
//! the hub namespace's bridge `br0`. Dropping the guard kills whatever runs in the namespaces and deletes
//! them (which removes the links).

use super::netns::run;
use super::KillOnDrop;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT_STAR: AtomicU32 = AtomicU32::new(0);

/// Hosts joined by a bridge in a hub namespace.
pub struct NetnsStar {
    /// The hub namespace (holds the bridge `br0`).
    pub hub: String,
    /// Each host's namespace and address, in the order given.
    pub hosts: Vec<(String, Ipv4Addr)>,
    /// Middle namespaces of delayed hosts, and their emulators.
    middles: Vec<(String, Option<KillOnDrop>)>,
}

impl NetnsStar {
    /// Creates a hub and `count` hosts.
    pub fn new(count: usize) -> Result<NetnsStar, String> {
        NetnsStar::with_delays(&vec![None; count])
    }

    /// Creates a hub and one host per entry; a host with a delay (`"5ms"`) reaches the bridge through
    /// `mover-wanem` (benches/wanem) in a middle namespace, which adds that one-way delay each way (so every
    /// RTT to it grows by twice the delay). The emulator is the one `cargo test --workspace` built.
    pub fn with_delays(delays: &[Option<&str>]) -> Result<NetnsStar, String> {
        let count = delays.len();
        let n = NEXT_STAR.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let subnet = (pid.wrapping_mul(37).wrapping_add(n) % 250 + 1) as u8;
        let mut star = NetnsStar { hub: format!("mvs-{pid}-{n}-hub"), hosts: Vec::new(), middles: Vec::new() };
        run(&["ip", "netns", "add", &star.hub])?;
        star.exec_in(&star.hub.clone(), &["ip", "link", "add", "br0", "type", "bridge"])?;
        star.exec_in(&star.hub.clone(), &["ip", "link", "set", "br0", "up"])?;
        star.exec_in(&star.hub.clone(), &["ip", "link", "set", "lo", "up"])?;
        for i in 0..count {
            let ns = format!("mvs-{pid}-{n}-h{i}");
            let ip = Ipv4Addr::new(10, 78, subnet, i as u8 + 1);
            run(&["ip", "netns", "add", &ns])?;
            star.hosts.push((ns.clone(), ip));
            let port = format!("p{i}");
            match delays[i] {
                None => run(&[
                    "ip", "link", "add", "mv0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns", &star.hub,
                ])?,
                Some(delay) => {
                    let mid = format!("mvs-{pid}-{n}-m{i}");
                    run(&["ip", "netns", "add", &mid])?;
                    star.middles.push((mid.clone(), None));
                    run(&[
                        "ip", "link", "add", "mv0", "netns", &ns, "type", "veth", "peer", "name", "a0", "netns", &mid,
                    ])?;
                    run(&[
                        "ip", "link", "add", "b0", "netns", &mid, "type", "veth", "peer", "name", &port, "netns",
                        &star.hub,
                    ])?;
                    for dev in ["a0", "b0"] {
                        // The middle kernel must neither answer nor route: no IPv6 link-local addresses.
                        let _ = star.exec_in(&mid, &["sysctl", "-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")]);
                        star.exec_in(&mid, &["ip", "link", "set", dev, "up"])?;
                    }
                    let emulator = start_wanem(&mid, delay)?;
                    star.middles.last_mut().expect("pushed").1 = Some(emulator);
                }
            }
            // Frames as on a wire (no 64 KB segments) wherever an emulator may forward them.
            if delays.iter().any(Option::is_some) {
                let _ =
                    star.exec_in(&ns, &["ethtool", "-K", "mv0", "tso", "off", "gso", "off", "gro", "off", "tx", "off"]);
            }
            star.exec_in(&star.hub.clone(), &["ip", "link", "set", &port, "master", "br0"])?;
            star.exec_in(&star.hub.clone(), &["ip", "link", "set", &port, "up"])?;
            star.exec_in(&ns, &["ip", "link", "set", "lo", "up"])?;
            star.exec_in(&ns, &["ip", "addr", "add", &format!("{ip}/24"), "dev", "mv0"])?;
            star.exec_in(&ns, &["ip", "link", "set", "mv0", "up"])?;
        }
        Ok(star)
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        self.hosts[i].1
    }

    /// A command running `argv` in host `i`'s namespace.
    pub fn command(&self, i: usize, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hosts[i].0]).args(argv);
        c
    }

    /// Runs `argv` in namespace `ns` to completion; an error carries its stderr.
    pub fn exec_in(&self, ns: &str, argv: &[&str]) -> Result<Output, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .output()
            .map_err(|e| format!("{argv:?} in {ns}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{argv:?} in {ns}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(out)
    }

    /// Starts `mover ARGS` in host `i` with its stderr in `log`, and waits until it listens (a daemon).
    pub fn start_daemon(&self, i: usize, args: &[&str], log: &Path) -> KillOnDrop {
        let mut argv = vec![env!("CARGO_BIN_EXE_mover")];
        argv.extend(args);
        let log_file = std::fs::File::create(log).expect("daemon log");
        let child = self.command(i, &argv).stdout(Stdio::null()).stderr(log_file).spawn().expect("spawn daemon");
        let mut daemon = KillOnDrop(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("listening on") {
                return daemon;
            }
            if let Ok(Some(status)) = daemon.0.try_wait() {
                panic!("mover {args:?} exited early ({status}): {text}");
            }
            assert!(Instant::now() < deadline, "mover {args:?} did not start listening: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts `mover-wanem --a a0 --b b0 --delay DELAY` in `mid` and waits for its `ready`.
fn start_wanem(mid: &str, delay: &str) -> Result<KillOnDrop, String> {
    use std::io::BufRead;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe.parent().and_then(Path::parent).ok_or("no target dir")?.join("mover-wanem");
    if !bin.exists() {
        return Err(format!("{} missing: run the tests with `cargo test --workspace`", bin.display()));
    }
    let child = Command::new("ip")
        .args(["netns", "exec", mid])
        .arg(&bin)
        .args(["--a", "a0", "--b", "b0", "--delay", delay, "--rt-priority", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("mover-wanem: {e}"))?;
    let mut child = KillOnDrop(child);
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().expect("piped")).read_line(&mut line).map_err(|e| e.to_string())?;
    if line.trim() != "ready" {
        return Err(format!("mover-wanem did not come up: {line:?}"));
    }
    Ok(child)
}

impl Drop for NetnsStar {
    fn drop(&mut self) {
        for (_, emulator) in &mut self.middles {
            drop(emulator.take());
        }
        let all: Vec<String> = self
            .hosts
            .iter()
            .map(|(ns, _)| ns.clone())
            .chain(self.middles.iter().map(|(ns, _)| ns.clone()))
            .chain([self.hub.clone()])
            .collect();
        super::netns::remove_namespaces(&all);
    }
}
