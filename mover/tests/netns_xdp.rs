//! The AF_XDP data path between network namespaces (root only; CI runs as root): every pairing of XDP and UDP
//! ends, other traffic while the program is attached, loss through a router, clean-up after `kill -9` and
//! Ctrl-C, and each refusal that can be provoked here (another program, missing capabilities, locked-memory
//! limit, datagrams larger than a frame).

mod common;

use common::netns::{skip_unless_root, NetnsPair, VETH};
use common::{hash_file, json_bool, json_raw, json_u64, write_random_file, KillOnDrop, TempDir};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MOVER: &str = env!("CARGO_BIN_EXE_mover");
const PORT: u16 = 7600;
const PUSH_LIMIT: Duration = Duration::from_secs(180);

struct Serve {
    proc: KillOnDrop,
    log: PathBuf,
}

impl Serve {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ok(&mut self) -> String {
        let status = self.proc.wait_timeout(Duration::from_secs(20)).expect("serve --once exits");
        let log = self.log();
        assert!(status.success(), "serve: {status}: {log}");
        log
    }
}

/// Starts `prefix... mover serve --once --listen IP:PORT --root ROOT extra...` in `ns` and waits until it listens.
fn serve(
    net: &NetnsPair,
    ns: &str,
    ip: &str,
    root: &Path,
    extra: &[&str],
    prefix: &[&str],
    env: &[(&str, &str)],
) -> Serve {
    let log =
        root.with_extension(format!("serve{}.log", std::process::id() ^ Instant::now().elapsed().as_nanos() as u32));
    let listen = format!("{ip}:{PORT}");
    let mut argv: Vec<&str> = prefix.to_vec();
    argv.extend([
        MOVER,
        "serve",
        "--insecure-no-auth",
        "--once",
        "--listen",
        &listen,
        "--root",
        root.to_str().unwrap(),
    ]);
    argv.extend(extra);
    let mut cmd = net.command(ns, &argv);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().expect("spawn serve");
    let mut s = Serve { proc: KillOnDrop(child), log };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = s.log();
        if text.contains("listening on") {
            return s;
        }
        if let Ok(Some(status)) = s.proc.0.try_wait() {
            panic!("mover serve exited early ({status}): {text}");
        }
        assert!(Instant::now() < deadline, "mover serve did not start listening: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `mover push --json extra... SRC mover://IP:PORT/in` in `ns`.
fn spawn_push(net: &NetnsPair, ns: &str, ip: &str, src: &Path, extra: &[&str], prefix: &[&str]) -> KillOnDrop {
    let url = format!("mover://{ip}:{PORT}/in");
    let mut argv: Vec<&str> = prefix.to_vec();
    argv.extend([MOVER, "push", "--insecure-no-auth", "--json"]);
    argv.extend(extra);
    argv.extend([src.to_str().unwrap(), url.as_str()]);
    KillOnDrop(net.command(ns, &argv).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn push"))
}

/// Waits for a push; returns (success, stdout, stderr).
fn finish(mut p: KillOnDrop) -> (bool, String, String) {
    let status = p.wait_timeout(PUSH_LIMIT);
    let (mut out, mut err) = (String::new(), String::new());
    use std::io::Read;
    let _ = p.0.stdout.take().unwrap().read_to_string(&mut out);
    let _ = p.0.stderr.take().unwrap().read_to_string(&mut err);
    (matches!(status, Ok(s) if s.success()), out, err)
}

/// `ip -d link show` of the veth in `ns`.
fn link_details(net: &NetnsPair, ns: &str, dev: &str) -> String {
    String::from_utf8_lossy(&net.exec(ns, &["ip", "-d", "link", "show", "dev", dev]).unwrap().stdout).into_owned()
}

fn has_xdp(net: &NetnsPair, ns: &str, dev: &str) -> bool {
    link_details(net, ns, dev).contains("prog/xdp")
}

fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn xdp_in_each_role_moves_1_gib_byte_identical_while_other_traffic_flows() {
    if skip_unless_root("xdp_in_each_role_moves_1_gib_byte_identical_while_other_traffic_flows") {
        return;
    }
    let net = NetnsPair::new(None).expect("namespaces");
    let dir = TempDir::new("xdp-roles");
    let src = dir.path().join("big.bin");
    let len = 1u64 << 30;
    write_random_file(&src, len, 0x0d15);
    let want = hash_file(&src);
    let ip_b = net.ip_b.to_string();
    for (sender, receiver) in [("xdp", "udp"), ("udp", "xdp"), ("xdp", "xdp")] {
        let root = dir.path().join(format!("root-{sender}-{receiver}"));
        std::fs::create_dir_all(&root).unwrap();
        let mut server = serve(&net, &net.b, &ip_b, &root, &["--net", receiver], &[], &[]);
        let push = spawn_push(&net, &net.a, &ip_b, &src, &["--net", sender, "--rate", "2G"], &[]);
        if receiver == "xdp" {
            // While the program is attached: ICMP and a fresh TCP connection (to a second server) still work.
            wait_until(Duration::from_secs(20), "the XDP program", || has_xdp(&net, &net.b, VETH));
            let other = dir.path().join("other-root");
            std::fs::create_dir_all(&other).unwrap();
            let listen = format!("{ip_b}:{}", PORT + 1);
            let mut second = KillOnDrop(
                net.command(
                    &net.b,
                    &[
                        MOVER,
                        "serve",
                        "--insecure-no-auth",
                        "--net",
                        "udp",
                        "--listen",
                        &listen,
                        "--root",
                        other.to_str().unwrap(),
                    ],
                )
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
            );
            let ping = net.exec(&net.a, &["ping", "-c", "3", "-i", "0.2", "-W", "2", &ip_b]);
            assert!(ping.is_ok(), "ping with the XDP program attached: {ping:?}");
            let tcp = format!(
                "for i in $(seq 50); do exec 3<>/dev/tcp/{ip_b}/{} && exit 0; sleep 0.1; done; exit 1",
                PORT + 1
            );
            let tcp = net.exec(&net.a, &["bash", "-c", &tcp]);
            assert!(tcp.is_ok(), "TCP connect with the XDP program attached: {tcp:?}");
            let _ = second.0.kill();
        }
        let (ok, out, err) = finish(push);
        let log = server.wait_ok();
        assert!(ok, "{sender} -> {receiver}: push failed\n{out}\n{err}\nserver: {log}");
        eprintln!("{sender} -> {receiver}: {out}\nserver: {log}");
        assert_eq!(json_bool(&out, "verified"), Some(true), "{out}");
        assert_eq!(json_raw(&out, "net"), Some(format!("\"{sender}\"").as_str()), "{out}");
        if sender == "xdp" {
            assert_eq!(json_raw(&out, "xdp_mode"), Some("\"copy\""), "veth has no zero-copy: {out}");
            assert_eq!(json_raw(&out, "xdp_interface"), Some(format!("\"{VETH}\"").as_str()), "{out}");
        }
        let expect_net = if receiver == "xdp" { format!("net xdp ({VETH}, copy, native") } else { "net udp".into() };
        assert!(log.contains(&expect_net), "serve log lacks '{expect_net}': {log}");
        assert_eq!(hash_file(&root.join("in/big.bin")), want, "{sender} -> {receiver}: received file differs");
        assert!(!has_xdp(&net, &net.b, VETH), "program still attached after serve exited");
        std::fs::remove_dir_all(&root).unwrap();
    }
}

/// Three namespaces: sender a -- router r -- receiver b, so that nftables in the router's forward chain can
/// drop packets that AF_XDP sends and receives past the end hosts' own netfilter hooks.
struct Routed {
    net: NetnsPair,
    r: String,
    ip_b: String,
}

impl Routed {
    fn new() -> Routed {
        // The pair gives a and b; re-wire: move b's veth end into a router namespace and add a second link.
        let net = NetnsPair::new(None).expect("namespaces");
        let r = format!("{}-r", net.a);
        let run = |argv: &[&str]| {
            let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
            assert!(out.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(&["ip", "netns", "add", &r]);
        let sub = net.ip_a.octets()[2].to_string();
        // a's link now ends in r: delete the old pair, make a<->r and r<->b.
        net.exec(&net.a, &["ip", "link", "del", VETH]).unwrap();
        run(&["ip", "link", "add", VETH, "netns", &net.a, "type", "veth", "peer", "name", "ra", "netns", &r]);
        run(&["ip", "link", "add", VETH, "netns", &net.b, "type", "veth", "peer", "name", "rb", "netns", &r]);
        let a_ip = format!("10.78.{sub}.1/24");
        let b_ip = format!("10.79.{sub}.2/24");
        let ra = format!("10.78.{sub}.254/24");
        let rb = format!("10.79.{sub}.254/24");
        for (ns, dev, ip) in [(&net.a, VETH, &a_ip), (&net.b, VETH, &b_ip), (&r, "ra", &ra), (&r, "rb", &rb)] {
            net.exec(ns, &["ip", "addr", "add", ip, "dev", dev]).unwrap();
            net.exec(ns, &["ip", "link", "set", dev, "up"]).unwrap();
            net.exec(ns, &["ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off"]).unwrap();
        }
        net.exec(&r, &["ip", "link", "set", "lo", "up"]).unwrap();
        net.exec(&net.a, &["ip", "route", "add", "default", "via", &ra[..ra.len() - 3]]).unwrap();
        net.exec(&net.b, &["ip", "route", "add", "default", "via", &rb[..rb.len() - 3]]).unwrap();
        net.exec(&r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]).unwrap();
        Routed { net, r, ip_b: b_ip[..b_ip.len() - 3].to_string() }
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.r]).status();
    }
}

#[test]
fn xdp_to_xdp_repairs_two_percent_loss_through_a_router() {
    if skip_unless_root("xdp_to_xdp_repairs_two_percent_loss_through_a_router") {
        return;
    }
    let path = Routed::new();
    let (net, r) = (&path.net, &path.r);
    net.exec(r, &["nft", "add", "table", "inet", "moverloss"]).unwrap();
    net.exec(r, &["nft", "add", "chain", "inet", "moverloss", "lossy", "{ type filter hook forward priority 0; }"])
        .unwrap();
    net.exec(
        r,
        &[
            "nft",
            "add",
            "rule",
            "inet",
            "moverloss",
            "lossy",
            "meta",
            "l4proto",
            "udp",
            "numgen",
            "random",
            "mod",
            "100",
            "lt",
            "2",
            "counter",
            "drop",
        ],
    )
    .unwrap();
    let dir = TempDir::new("xdp-loss");
    let src = dir.path().join("r.bin");
    let len = 128u64 << 20;
    write_random_file(&src, len, 0x1055);
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let mut server = serve(net, &net.b, &path.ip_b, &root, &["--net", "xdp"], &[], &[]);
    let (ok, out, err) = finish(spawn_push(net, &net.a, &path.ip_b, &src, &["--net", "xdp", "--rate", "1G"], &[]));
    let log = server.wait_ok();
    assert!(ok, "push failed\n{out}\n{err}\nserver: {log}");
    eprintln!("through the router with 2% loss: {out}\nserver: {log}");
    assert_eq!(json_bool(&out, "verified"), Some(true), "{out}");
    assert_eq!(json_raw(&out, "net"), Some("\"xdp\""), "{out}");
    assert!(log.contains("net xdp ("), "{log}");
    assert!(json_u64(&out, "packets_retransmitted").unwrap() > 0, "no retransmissions: {out}");
    let listing = net.exec(r, &["nft", "list", "chain", "inet", "moverloss", "lossy"]).unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(!listing.contains("counter packets 0 "), "nothing dropped: {listing}");
    assert_eq!(hash_file(&root.join("in/r.bin")), hash_file(&src));
}

#[test]
fn xdp_program_goes_away_after_kill_9_ctrl_c_and_a_stale_one_is_replaced() {
    if skip_unless_root("xdp_program_goes_away_after_kill_9_ctrl_c_and_a_stale_one_is_replaced") {
        return;
    }
    let net = NetnsPair::new(None).expect("namespaces");
    let dir = TempDir::new("xdp-kill");
    let src = dir.path().join("slow.bin");
    write_random_file(&src, 256 << 20, 9);
    let small = dir.path().join("small.bin");
    write_random_file(&small, 1 << 20, 10);
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let ip_b = net.ip_b.to_string();
    // (attach mode, how the server dies, whether the program may outlive it)
    for (mode, signal, stays) in [("link", "KILL", false), ("netlink", "INT", false), ("netlink", "KILL", true)] {
        let env = [("MOVER_XDP_ATTACH", mode)];
        let server = serve(&net, &net.b, &ip_b, &root, &["--net", "xdp"], &[], &env);
        let push = spawn_push(&net, &net.a, &ip_b, &src, &["--net", "udp", "--rate", "200M"], &[]);
        wait_until(Duration::from_secs(20), "the XDP program", || has_xdp(&net, &net.b, VETH));
        let pid = server.proc.0.id().to_string();
        // `ip netns exec` execs mover in place, so the child's pid is mover's.
        Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
        let mut server = server;
        let _ = server.proc.wait_timeout(Duration::from_secs(10));
        drop(push);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            has_xdp(&net, &net.b, VETH),
            stays,
            "{mode} attach, SIG{signal}: {}",
            link_details(&net, &net.b, VETH)
        );
    }
    // The stale netlink-attached program of the last round is recognised and replaced; after the session
    // nothing is left.
    let mut server = serve(&net, &net.b, &ip_b, &root, &["--net", "xdp"], &[], &[]);
    let (ok, out, err) = finish(spawn_push(&net, &net.a, &ip_b, &small, &["--net", "udp"], &[]));
    let log = server.wait_ok();
    assert!(ok, "{out}\n{err}\n{log}");
    assert!(log.contains("removed a stale XDP program of mover's"), "{log}");
    assert!(!has_xdp(&net, &net.b, VETH), "{}", link_details(&net, &net.b, VETH));
    assert_eq!(hash_file(&root.join("in/small.bin")), hash_file(&small));
}

/// Attaches an XDP program that is not mover's (`XDP_PASS`, named "other_tool") to the veth in `ns`,
/// through netlink, from a thread that enters the namespace.
fn attach_foreign_program(ns: &str) {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        use std::os::fd::{AsFd, AsRawFd};
        // Safety: setns on this thread only, with a valid namespace descriptor.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let pass = [mover_ebpf::insn::Insn::mov64_imm(mover_ebpf::insn::Reg::R0, 2), mover_ebpf::insn::Insn::exit()];
        let prog = mover_ebpf::sys::prog_load_xdp(&pass, "other_tool", None).unwrap();
        let ifindex = mover::net::netlink::ifindex_of(VETH).unwrap();
        mover::net::netlink::xdp_attach(ifindex, prog.as_fd().as_raw_fd(), 2, None).unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn xdp_refuses_with_a_clear_reason() {
    if skip_unless_root("xdp_refuses_with_a_clear_reason") {
        return;
    }
    let dir = TempDir::new("xdp-refuse");
    let small = dir.path().join("small.bin");
    write_random_file(&small, 1 << 20, 11);
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();

    // Missing capabilities: serve refuses at start, push before it sends anything.
    let net = NetnsPair::new(None).expect("namespaces");
    let ip_b = net.ip_b.to_string();
    let nocaps = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"];
    let mut argv = nocaps.to_vec();
    let listen = format!("{ip_b}:{PORT}");
    argv.extend([
        MOVER,
        "serve",
        "--insecure-no-auth",
        "--net",
        "xdp",
        "--listen",
        &listen,
        "--root",
        root.to_str().unwrap(),
    ]);
    let out = net.exec(&net.b, &argv).unwrap_err();
    assert!(out.contains("CAP_NET_ADMIN") && out.contains("CAP_BPF"), "{out}");
    let mut udp_server = serve(&net, &net.b, &ip_b, &root, &["--net", "udp"], &[], &[]);
    let (ok, _, err) = finish(spawn_push(&net, &net.a, &ip_b, &small, &["--net", "xdp"], &nocaps));
    assert!(!ok && err.contains("--net xdp: needs CAP_NET_ADMIN"), "{err}");
    let _ = udp_server.proc.0.kill();

    // Locked-memory limit: without CAP_IPC_LOCK, a 64 KiB limit cannot hold the receiver's frames.
    let memlock = ["prlimit", "--memlock=65536:65536", "setpriv", "--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock"];
    let mut server = serve(&net, &net.b, &ip_b, &root, &["--net", "xdp"], &memlock, &[]);
    let (ok, _, err) = finish(spawn_push(&net, &net.a, &ip_b, &small, &["--net", "udp"], &[]));
    assert!(!ok && err.contains("locked-memory limit"), "{err}\n{}", server.log());
    let _ = server.proc.wait_timeout(Duration::from_secs(10));

    // Another tool's program: `xdp` refuses and leaves it; `auto` falls back to UDP and leaves it.
    attach_foreign_program(&net.b);
    let before = link_details(&net, &net.b, VETH);
    assert!(before.contains("prog/xdp"), "{before}");
    let mut server = serve(&net, &net.b, &ip_b, &root, &["--net", "xdp"], &[], &[]);
    let (ok, _, err) = finish(spawn_push(&net, &net.a, &ip_b, &small, &["--net", "udp"], &[]));
    assert!(!ok && err.contains("interface busy: another XDP program ('other_tool'"), "{err}");
    let _ = server.proc.wait_timeout(Duration::from_secs(10));
    let mut server = serve(&net, &net.b, &ip_b, &root, &[], &[], &[]);
    let (ok, out, err) = finish(spawn_push(&net, &net.a, &ip_b, &small, &["--net", "udp"], &[]));
    let log = server.wait_ok();
    assert!(ok, "{out}\n{err}\n{log}");
    assert!(log.contains("using UDP sockets for data") && log.contains("net udp"), "{log}");
    assert_eq!(link_details(&net, &net.b, VETH), before, "the other program was touched");

    // Datagrams larger than a frame (MTU 9000 on a UDP sender) are refused by an XDP receiver.
    let jumbo = NetnsPair::new(Some(9000)).expect("namespaces");
    let ip_j = jumbo.ip_b.to_string();
    let mut server = serve(&jumbo, &jumbo.b, &ip_j, &root, &["--net", "xdp"], &[], &[]);
    // `--overwrite always`: an earlier case left `small` current in `root`, and an unchanged file would
    // be skipped without any data path.
    let always = ["--overwrite", "always"];
    let (ok, _, err) = finish(spawn_push(
        &jumbo,
        &jumbo.a,
        &ip_j,
        &small,
        &["--net", "udp", "--mtu", "9000", always[0], always[1]],
        &[],
    ));
    assert!(!ok && err.contains("do not fit an AF_XDP frame") && err.contains("--mtu 3798"), "{err}");
    let _ = server.proc.wait_timeout(Duration::from_secs(10));
    // The XDP sender sizes its datagrams to the frame itself, and generic mode carries them at MTU 9000.
    let mut server = serve(&jumbo, &jumbo.b, &ip_j, &root, &["--net", "xdp"], &[], &[]);
    let (ok, out, err) = finish(spawn_push(
        &jumbo,
        &jumbo.a,
        &ip_j,
        &small,
        &["--net", "xdp", "--mtu", "9000", always[0], always[1]],
        &[],
    ));
    let log = server.wait_ok();
    assert!(ok, "{out}\n{err}\n{log}");
    assert!(json_u64(&out, "datagram_bytes").unwrap() <= 3770, "{out}");
    assert!(log.contains("generic"), "native XDP on a veth needs the peer's MTU <= 3506: {log}");
}

#[test]
fn auto_takes_udp_on_a_copy_mode_veth_and_says_why() {
    if skip_unless_root("auto_takes_udp_on_a_copy_mode_veth_and_says_why") {
        return;
    }
    let net = NetnsPair::new(None).expect("namespaces");
    let dir = TempDir::new("h6-xdp-auto");
    let src = dir.path().join("auto.bin");
    write_random_file(&src, 8 << 20, 21);
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let ip_b = net.ip_b.to_string();
    let copy_only = format!("AF_XDP on {VETH} is copy mode only (no zero-copy); UDP sockets are faster there");

    // Both ends on the default (auto): a veth binds AF_XDP in copy mode only, so both take UDP sockets,
    // say why in --json, --stats and the daemon's log, and attach no program.
    let mut server = serve(&net, &net.b, &ip_b, &root, &["--stats"], &[], &[]);
    let (ok, out, err) = finish(spawn_push(&net, &net.a, &ip_b, &src, &["--stats"], &[]));
    let log = server.wait_ok();
    assert!(ok, "{out}\n{err}\n{log}");
    assert_eq!(json_raw(&out, "net"), Some("\"udp\""), "{out}");
    assert!(out.contains(&format!(r#""net_reason":"udp: {copy_only}""#)), "{out}");
    assert!(err.contains(&format!("data path (push): udp: {copy_only}")), "--stats lacks the reason: {err}");
    assert!(!err.contains("using UDP sockets for data"), "a choice is not a failure to report: {err}");
    assert!(log.contains(&format!("net udp ({copy_only})")), "serve log lacks the reason: {log}");
    assert!(log.contains(&format!("data path (serve): udp: {copy_only}")), "{log}");
    assert!(!has_xdp(&net, &net.b, VETH));
    assert_eq!(hash_file(&root.join("in/auto.bin")), hash_file(&src));

    // --net xdp still forces AF_XDP, on both ends, and says it was forced.
    let mut server = serve(&net, &net.b, &ip_b, &root, &["--net", "xdp"], &[], &[]);
    let always = ["--overwrite", "always"];
    let (ok, out, err) = finish(spawn_push(&net, &net.a, &ip_b, &src, &["--net", "xdp", always[0], always[1]], &[]));
    let log = server.wait_ok();
    assert!(ok, "{out}\n{err}\n{log}");
    assert_eq!(json_raw(&out, "net"), Some("\"xdp\""), "{out}");
    let forced = format!(r#""net_reason":"xdp: --net xdp (AF_XDP on {VETH}, copy mode)""#);
    assert!(out.contains(&forced), "{out}");
    assert!(log.contains(&format!("net xdp ({VETH}, copy, native")), "{log}");
    assert_eq!(hash_file(&root.join("in/auto.bin")), hash_file(&src));
}
