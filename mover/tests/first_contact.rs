//! Issue 17, first contact: what a person new to mover meets, through the real binary. A URL of another
//! scheme, a TLS/plain mismatch, an unwritable destination, an unbalanced `--ssh` quote and the flags scp
//! and rsync users type out of habit each get one `mover: error:` line in the user's terms (no frame
//! lengths, no "file id 0", no clap tip that turns a flag into a file name); `--help` of every subcommand
//! names no code path; `bench disk` says when it read from the page cache. Each case also checks that it
//! provoked the failure it is named for.

mod common;

use common::certs;
use common::{is_root, mover, run_with_limit, Server, TempDir};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// The one `mover: error:` line of a failed run, after checking its exit code.
fn error_line(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "exit code: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("mover: error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected in: {stderr}");
    lines[0].to_string()
}

fn run(args: &[&str]) -> Output {
    run_with_limit(mover().args(args), LIMIT)
}

#[test]
fn a_url_of_another_scheme_is_not_an_ssh_host() {
    let tmp = TempDir::new("h6-first-url");
    let f = tmp.path().join("f");
    fs::write(&f, b"x").unwrap();
    for url in ["http://host/x", "https://example.org/data", "s3://bucket/key"] {
        let line = error_line(&run(&["push", f.to_str().unwrap(), url]), 2);
        let scheme = url.split("://").next().unwrap();
        assert!(line.contains(&format!("{scheme}:// is not a mover URL")), "{url}: {line}");
        assert!(line.contains("mover://HOST[:PORT]/DIR") && line.contains("[user@]host:DIR"), "{line}");
        assert!(!line.contains("ssh to"), "taken for an ssh host: {line}");
    }
    let line = error_line(&run(&["pull", "http://host/x", tmp.path().to_str().unwrap()]), 2);
    assert!(line.contains("http:// is not a mover URL"), "{line}");
}

#[test]
fn tls_and_plain_mismatches_are_said_in_words() {
    let tmp = TempDir::new("h6-first-tls");
    let d = tmp.path();
    let certs_dir = d.join("certs");
    fs::create_dir(&certs_dir).unwrap();
    let c = certs::make(&certs_dir);
    let token = run(&["token", "--user", "alice"]);
    assert!(token.status.success());
    fs::write(d.join("alice.token"), &token.stdout).unwrap();
    fs::write(d.join("tokens"), &token.stderr).unwrap();
    let root = d.join("root");
    fs::create_dir(&root).unwrap();
    let f = d.join("f");
    fs::write(&f, b"x").unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let tls_args = [
        "--tls-cert".to_string(),
        s(&c.server_cert),
        "--tls-key".into(),
        s(&c.server_key),
        "--tokens".into(),
        s(&d.join("tokens")),
    ];
    let tls = Server::start(&root, &tls_args.iter().map(String::as_str).collect::<Vec<_>>());
    let plain = Server::start(&root, &[]);

    // A plain client against a TLS daemon: the mismatch and the flags that fix it, no frame length.
    let url = format!("mover://{}/x", tls.addr);
    let line = error_line(&run(&["push", "--insecure-no-auth", &s(&f), &url]), 1);
    assert!(line.contains("is a TLS daemon") && line.contains("drop --insecure-no-auth"), "{line}");
    assert!(line.contains("--ca FILE") && !line.contains("frame length"), "{line}");
    let line = error_line(&run(&["pull", "--insecure-no-auth", &url, &s(&d.join("p"))]), 1);
    assert!(line.contains("is a TLS daemon") && !line.contains("frame length"), "{line}");

    // A TLS client against a plain daemon: it does not speak TLS, and what to pass.
    let url = format!("mover://{}/x", plain.addr);
    let tls_client = ["--ca", &s(&c.ca), "--token-file", &s(&d.join("alice.token")), "--user", "alice"];
    let mut args = vec!["push"];
    args.extend(tls_client);
    let (src, u) = (s(&f), url.clone());
    args.extend([src.as_str(), u.as_str()]);
    // Exit 4, like every failed authentication: the settings do not match.
    let line = error_line(&run(&args), 4);
    assert!(line.contains("does not speak TLS") && line.contains("--insecure-no-auth"), "{line}");
    assert!(!line.contains("frame length"), "{line}");
    assert!(fs::read_dir(&root).unwrap().next().is_none(), "a mismatched session wrote something");
    // The daemons' own log lines say it in words too.
    drop((tls, plain));
}

/// A read-only bind mount of `dir` over itself (root), or mode 0555 (others), undone on drop.
struct ReadOnly(PathBuf, bool);

impl ReadOnly {
    fn make(dir: &Path) -> ReadOnly {
        if is_root() {
            assert!(Command::new("mount").arg("--bind").arg(dir).arg(dir).status().unwrap().success());
            let ro = Command::new("mount").args(["-o", "remount,bind,ro"]).arg(dir).status().unwrap();
            assert!(ro.success(), "remount read-only");
            ReadOnly(dir.to_path_buf(), true)
        } else {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
            ReadOnly(dir.to_path_buf(), false)
        }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.1 {
            let _ = Command::new("umount").arg(&self.0).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o755));
        }
    }
}

#[test]
fn an_unwritable_destination_is_named_with_its_fix() {
    let tmp = TempDir::new("h6-first-ro");
    let d = tmp.path();
    let (ro_root, src_root, ro_dest) = (d.join("ro-root"), d.join("src-root"), d.join("ro-dest"));
    for p in [&ro_root, &src_root, &ro_dest] {
        fs::create_dir(p).unwrap();
    }
    fs::write(src_root.join("x"), b"pulled").unwrap();
    let f = d.join("f");
    fs::write(&f, b"pushed").unwrap();
    let _ro = (ReadOnly::make(&ro_root), ReadOnly::make(&ro_dest));
    let fix = "the destination is not writable: make it writable";

    // The daemon's root itself: refused before any data, by name, never as "file id 0".
    let server = Server::start(&ro_root, &[]);
    let line =
        error_line(&run(&["push", "--insecure-no-auth", f.to_str().unwrap(), &format!("mover://{}/", server.addr)]), 1);
    assert!(line.contains("destination root '.'") && line.contains(fix), "{line}");
    assert!(!line.contains("file id") && !line.contains(&ro_root.display().to_string()), "{line}");

    // A pull into a local directory that cannot be written: named as the user gave it.
    let server = Server::start(&src_root, &[]);
    let url = format!("mover://{}/x", server.addr);
    let line = error_line(&run(&["pull", "--insecure-no-auth", &url, ro_dest.to_str().unwrap()]), 1);
    assert!(line.contains(&format!("cannot write into '{}'", ro_dest.display())) && line.contains(fix), "{line}");
    assert!(!line.contains("file id"), "{line}");
}

#[test]
fn the_ssh_command_splits_like_a_shell_and_an_unbalanced_quote_is_refused() {
    let tmp = TempDir::new("h6-first-ssh");
    let f = tmp.path().join("f");
    fs::write(&f, b"x").unwrap();
    let line = error_line(&run(&["push", "--ssh", "ssh -o 'ProxyCommand nc %h %p", f.to_str().unwrap(), "h:x"]), 1);
    assert!(line.contains("--ssh has an unbalanced quote"), "{line}");
    // Split as a shell does, the quoted option reaches ssh as one word: ssh itself then complains about
    // the (deliberately bad) value, not about a stray `'ProxyCommand` or `%p'` word.
    let out = run(&["push", "--ssh", "ssh -F /dev/null -o 'BadOptionForTheTest yes'", f.to_str().unwrap(), "h:x"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let said = stderr.to_lowercase();
    assert!(said.contains("option: badoptionforthetest"), "ssh did not see the option as one word: {stderr}");
    assert!(!said.contains("'badoptionforthetest"), "the quote reached ssh: {stderr}");
}

#[test]
fn scp_and_rsync_habit_flags_are_answered_in_movers_terms() {
    for (args, words) in [
        (&["push", "-r", "dir", "host:x"][..], "directories are always sent whole"),
        (&["push", "-avz", "dir", "host:x"][..], "keeps modes, modification times"),
        (&["pull", "-P", "host:x", "."][..], "resume is automatic"),
        (&["push", "-z", "dir", "host:x"][..], "without compression"),
        (&["push", "--partial", "dir", "host:x"][..], "resume is automatic"),
        (&["push", "--bwlimit=1000", "dir", "host:x"][..], "--rate"),
    ] {
        let out = run(args);
        let line = error_line(&out, 2);
        assert!(line.contains("is an scp/rsync flag that mover does not take") && line.contains(words), "{line}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("'-- "), "clap's tip is still there: {line}");
    }
    // Any other unknown flag: clap's message, without the tip that would make it a file name.
    let out = run(&["push", "-x", "dir", "host:x"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unexpected argument '-x'") && !stderr.contains("'-- -x'"), "{stderr}");
}

/// The subcommand names listed under "Commands:" in `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.split("Commands:")
        .nth(1)
        .unwrap_or("")
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

/// A Rust item path in `text` (`crate::x`, `rate::parse`), if any: an identifier, `::`, an identifier.
/// IPv6 addresses (`[::1]`, `fe80::1`) and `mover://` are not.
fn code_path(text: &str) -> Option<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices("::").find_map(|(i, _)| {
        let word = text[..i].rsplit(|c: char| !ident(c)).next().unwrap_or("");
        let next = text[i + 2..].chars().next()?;
        let is_path = word.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && (next.is_ascii_alphabetic() || next == '_');
        is_path.then(|| text[i - word.len()..(i + 20).min(text.len())].to_string())
    })
}

#[test]
fn no_help_text_leaks_a_code_path() {
    assert!(code_path("parse with crate::rate::parse_rate_bps").is_some_and(|p| p.starts_with("crate::rate::")));
    assert_eq!(code_path("listen on [::1]:7400 or fe80::1 via mover://h:1/x"), None);
    let top = String::from_utf8(run(&["--help"]).stdout).unwrap();
    let mut commands: Vec<Vec<String>> = vec![vec![]];
    for c in subcommands(&top) {
        let help = String::from_utf8(run(&[&c, "--help"]).stdout).unwrap();
        let nested = subcommands(&help);
        commands.push(vec![c.clone()]);
        commands.extend(nested.into_iter().map(|n| vec![c.clone(), n]));
    }
    assert!(commands.iter().any(|c| c == &["push"]) && commands.iter().any(|c| c == &["bench", "net"]), "{commands:?}");
    for c in &commands {
        let mut args: Vec<&str> = c.iter().map(String::as_str).collect();
        args.push("--help");
        let out = run(&args);
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(!help.contains("crate::"), "{args:?} names a code path: {help}");
        assert_eq!(code_path(&help), None, "{args:?} names a code path");
    }
}

#[test]
fn bench_disk_says_when_it_read_from_the_page_cache() {
    let tmp = TempDir::new("h6-first-disk");
    let file = tmp.path().join("cached.bin");
    // Just written, so in the page cache; read buffered.
    fs::write(&file, vec![5u8; 8 << 20]).unwrap();
    let out = run(&["bench", "disk", "--json", "--file", file.to_str().unwrap()]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "one JSON object on stdout: {stdout}");
    assert!(stdout.contains("\"from_page_cache\":true"), "{stdout}");
    assert!(stderr.contains("was in the page cache before the read: this measured memory, not the disk"), "{stderr}");
    assert!(stderr.contains("--direct"), "no next step: {stderr}");
}

#[test]
fn the_demo_prints_a_short_clear_result_at_the_rate_this_host_achieves() {
    let tmp = TempDir::new("h6-first-demo");
    let out = run_with_limit(mover().args(["demo", "--size", "32M", "--workdir"]).arg(tmp.path()), LIMIT);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    for line in ["goodput:", "fair policy, no rate cap", "time:", "verified: yes", "data:", "limit:"] {
        assert!(stdout.contains(line), "'{line}' missing: {stdout}");
    }
    // The path in words, and no line about AF_XDP frames and MTUs on either stream.
    assert!(stdout.contains("UDP sockets (loopback"), "{stdout}");
    for noise in ["--mtu", "AF_XDP frame", "mover serve:"] {
        assert!(!stdout.contains(noise) && !stderr.contains(noise), "'{noise}' shown: {stdout}{stderr}");
    }
    let out = run_with_limit(mover().args(["demo", "--size", "32M", "--json", "--workdir"]).arg(tmp.path()), LIMIT);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json.lines().count(), 1, "{json}");
    for key in [r#""verified":true"#, r#""policy":"fair""#, r#""rate_bps":400000000000"#, r#""cpu_cores_used":"#] {
        assert!(json.contains(key), "{key} missing: {json}");
    }
    assert!(json.contains(r#""busiest_stage":{"side":"#), "{json}");
    assert!(common::list_tree(tmp.path()).is_empty(), "demo cleans up after itself");
}

/// The demo says how close it came to what this machine can do at all (issue 18): its goodput as a share of
/// the raw UDP ceiling of loopback, a number a reader can trust: positive, consistent with the goodput and
/// the ceiling it prints, and not far above 100% (the push seals and writes files; the ceiling does neither).
#[test]
fn the_demo_reports_its_share_of_this_machines_ceiling() {
    let tmp = TempDir::new("i18-demo-share");
    let out = run_with_limit(mover().args(["demo", "--size", "32M", "--workdir"]).arg(tmp.path()), LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let share_line = stdout.lines().find(|l| l.trim_start().starts_with("share:")).unwrap_or_else(|| {
        panic!("no share line: {stdout}");
    });
    assert!(share_line.contains("% of this machine's ceiling (") && share_line.contains("limited by"), "{share_line}");
    let percent: f64 =
        share_line.trim_start()["share:".len()..].trim_start().split('%').next().unwrap().parse().unwrap();
    assert!(percent > 0.0 && percent <= 150.0, "share {percent}% is not a sane share: {share_line}");
    // The goodput line comes first: the share comes after what it is a share of.
    let goodput_at = stdout.find("goodput:").expect("goodput line");
    assert!(goodput_at < stdout.find("share:").unwrap(), "{stdout}");

    let out = run_with_limit(mover().args(["demo", "--size", "32M", "--json", "--workdir"]).arg(tmp.path()), LIMIT);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let goodput = common::json_f64(&json, "goodput_bps").expect("goodput_bps");
    let ceiling = common::json_f64(&json, "ceiling_bps").expect("ceiling_bps");
    let share = common::json_f64(&json, "ceiling_share").expect("ceiling_share");
    assert_eq!(common::json_u64(&json, "ceiling_datagram_bytes"), Some(9000 - 28), "the push's datagram size: {json}");
    // Loopback moves at least 100 Mbit/s of UDP on any machine that runs this suite.
    assert!(ceiling > 1e8, "ceiling {ceiling} bit/s: {json}");
    assert!(share > 0.0 && share <= 1.5, "share {share}: {json}");
    assert!((share - goodput / ceiling).abs() <= 1e-6 * share.max(1.0), "share {share} != {goodput} / {ceiling}");
}

/// A reader that goes away (`mover ... | head`) ends the command quietly, as with any Unix tool: no panic
/// from `println!` (seen with `mover demo --json | head -c 600`).
#[test]
fn a_closed_stdout_ends_the_command_without_a_panic() {
    let bin = env!("CARGO_BIN_EXE_mover");
    let dir = TempDir::new("first-closed-stdout");
    let script = format!("'{bin}' demo --json --size 16M --workdir '{}' | true", dir.path().display());
    let out = Command::new("sh").arg("-c").arg(&script).output().expect("sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "demo into a closed pipe panicked: {stderr}");
    assert!(!stderr.contains("Broken pipe"), "demo into a closed pipe complained: {stderr}");
}
