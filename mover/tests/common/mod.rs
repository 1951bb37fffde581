//! Helpers shared by the integration tests that drive the real `mover` binary.

#![allow(dead_code)] // each test file uses its own subset

pub mod certs;
pub mod netns;
pub mod netns_star;
pub mod slurm;
pub mod tokens;

/// Skips a test that lacks a capability (root, sshd, a network namespace, a tmpfs): prints `SKIPPED <test>:
/// <why>` and returns, so the caller returns too; under `MOVER_REQUIRE_CAPS=1` (set by `.ci/run`) it panics
/// instead, so CI proves the privileged tests ran. The rule is the library's, shared with its unit tests.
pub use mover::testing::skip_or_fail;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The text right after `"key":` in a flat or nested JSON object (the first occurrence), up to the next `,` or
/// `}`. Enough for the numbers and booleans of `mover ... --json`; no dependency.
pub fn json_raw<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\":");
    let start = json.find(&needle)? + needle.len();
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// An unsigned integer field of a JSON object.
pub fn json_u64(json: &str, key: &str) -> Option<u64> {
    json_raw(json, key)?.parse().ok()
}

/// A number field of a JSON object.
pub fn json_f64(json: &str, key: &str) -> Option<f64> {
    json_raw(json, key)?.parse().ok()
}

/// A boolean field of a JSON object.
pub fn json_bool(json: &str, key: &str) -> Option<bool> {
    json_raw(json, key)?.parse().ok()
}

/// The objects of a JSON array value `"key":[{...},{...}]` (flat enough for mover's output), as text.
pub fn json_objects<'a>(json: &'a str, key: &str) -> Vec<&'a str> {
    let start = json.find(&format!("\"{key}\":[")).unwrap_or_else(|| panic!("no {key} in {json}")) + key.len() + 4;
    let (mut depth, mut from, mut out, mut in_str, mut esc) = (0, 0, Vec::new(), false, false);
    for (i, c) in json[start..].char_indices() {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' | '[' => {
                if depth == 0 {
                    from = i;
                }
                depth += 1;
            }
            '}' | ']' if depth == 0 => break,
            '}' | ']' => {
                depth -= 1;
                if depth == 0 {
                    out.push(&json[start + from..start + i + 1]);
                }
            }
            _ => {}
        }
    }
    out
}

/// A string value `"key":"..."` (without escapes) of flat JSON.
pub fn json_str<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\":\"");
    let start = json.find(&needle)? + needle.len();
    Some(&json[start..start + json[start..].find('"')?])
}

/// A child process that is killed and reaped when dropped, so a failing assertion leaves nothing running.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Waits for the child to exit, at most `limit`; on timeout it is killed and the error says so.
    pub fn wait_timeout(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().map_err(|e| e.to_string())? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                return Err(format!("still running after {limit:?}: killed"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// A directory under the system temp dir, removed with everything in it on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `<tmp>/mover-<tag>-<pid>`, emptied first if a previous run left it behind.
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("mover-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `len` pseudo-random bytes (splitmix64: incompressible, and fast unlike /dev/urandom) to `path`.
pub fn write_random_file(path: &Path, len: u64, seed: u64) {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create file"));
    let mut state = seed;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        out.write_all(&buf[..n]).expect("write file");
        left -= n as u64;
    }
    out.flush().expect("flush file");
}

/// xxh3-128 of a whole file, read in 1 MiB pieces.
pub fn hash_file(path: &Path) -> u128 {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read file");
        if n == 0 {
            return h.digest128();
        }
        h.update(&buf[..n]);
    }
}

/// The binary under test.
pub fn mover() -> Command {
    // MOVER_TEST_BIN runs a test's measurements with another build (benches/run-governance.sh: the release
    // binary, where tests use the ci profile's, whose debug assertions cost CPU).
    match std::env::var_os("MOVER_TEST_BIN") {
        Some(bin) => Command::new(bin),
        None => Command::new(env!("CARGO_BIN_EXE_mover")),
    }
}

/// A `mover serve` process killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// Every line the server printed on stderr after its listening line.
    pub lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `mover serve --listen 127.0.0.1:0 --root ROOT [extra]` and waits for its listening line;
    /// `--insecure-no-auth` is added unless `extra` configures TLS (`--tls-cert`).
    pub fn start(root: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(root, extra, &[])
    }

    /// Like [`Server::start`], with extra environment variables.
    pub fn start_with_env(root: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_command(mover(), root, extra, env)
    }

    /// Like [`Server::start`], with the server's open-files limit (soft and hard) set to `nofile`.
    pub fn start_with_nofile(root: &Path, extra: &[&str], nofile: u64) -> Server {
        Server::start_command(with_nofile(mover(), nofile), root, extra, &[])
    }

    fn start_command(mut cmd: Command, root: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let insecure: &[&str] = if extra.contains(&"--tls-cert") { &[] } else { &["--insecure-no-auth"] };
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(root)
            .args(insecure)
            .args(extra)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mover serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        // Lines before the listening line (the --insecure-no-auth warning) are kept too.
        let mut before = Vec::new();
        let addr = loop {
            let line = lines.next().unwrap_or_else(|| panic!("serve exited before listening: {before:?}")).unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split(',').next().unwrap().to_string();
            }
            before.push(line);
        };
        // Keep draining stderr so the server never blocks on a full pipe; echo it for failing tests.
        let kept = std::sync::Arc::new(std::sync::Mutex::new(before));
        let k = kept.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                eprintln!("[serve] {l}");
                k.lock().unwrap().push(l);
            }
        });
        Server { child, addr, lines: kept }
    }

    /// Waits for the server to exit (with `--once`), up to `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cmd` with its open-files limit, soft and hard, set to `nofile` in the child before it runs (as
/// `prlimit --nofile=N:N` would): the process cannot raise it again.
pub fn with_nofile(mut cmd: Command, nofile: u64) -> Command {
    use std::os::unix::process::CommandExt;
    // Safety: the closure runs in the forked child before exec and only calls setrlimit, which is
    // async-signal-safe, on a struct on its own stack.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit { rlim_cur: nofile, rlim_max: nofile };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Runs a command to completion with a time limit, killing it if it overruns.
pub fn run_with_limit(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "command overran {limit:?}: {cmd:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn is_root() -> bool {
    // Safety: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Lists every path under `dir` (relative), for "nothing was written" checks.
pub fn list_tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(base, &p, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields_are_found() {
        let j = r#"{"files":1,"goodput_bps":1.5e9,"verified":true,"receiver":{"files":1,"duplicates":3}}"#;
        assert_eq!(json_u64(j, "files"), Some(1));
        assert_eq!(json_f64(j, "goodput_bps"), Some(1.5e9));
        assert_eq!(json_bool(j, "verified"), Some(true));
        assert_eq!(json_u64(j, "duplicates"), Some(3));
        assert_eq!(json_u64(j, "missing"), None);
    }
}
