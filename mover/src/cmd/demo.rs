//! `mover demo`: the embedded default job. Generates a data set, starts a server on loopback in this process,
//! pushes the data set to it, checks the received tree byte for byte, and prints the goodput.

use crate::connect::ClientAuth;
use crate::rate::{format_bytes, format_rate_bps};
use crate::session::{cipher_note, push, serve_on, PushOptions, Report};
use crate::sim::dataset::{compare_trees, generate_dataset};
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `mover demo` was asked to do.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Total bytes in the generated data set.
    pub size_bytes: u64,
    /// Sending rate, bits per second.
    pub rate_bps: u64,
    /// Path MTU for the push.
    pub mtu: usize,
    /// Where to put the data set and the received copy (a fresh directory is made inside).
    pub workdir: Option<PathBuf>,
    /// Keep the files afterwards.
    pub keep: bool,
    /// How the push seals its datagrams.
    pub cipher: crate::wire::Cipher,
}

/// Runs the demo and returns the push report (verified against the source tree).
pub fn run(opts: &DemoOptions) -> Result<Report, String> {
    let base = opts.workdir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("mover-demo-{}", std::process::id()));
    let result = run_in(&dir, opts);
    if !opts.keep {
        let _ = fs::remove_dir_all(&dir);
    }
    result
}

fn run_in(dir: &Path, opts: &DemoOptions) -> Result<Report, String> {
    let src = dir.join("src").join("dataset");
    let dst_root = dir.join("dst");
    fs::create_dir_all(&dst_root).map_err(|e| format!("creating {}: {e}", dst_root.display()))?;
    eprintln!("mover demo: generating {} in {}", format_bytes(opts.size_bytes), src.display());
    generate_dataset(&src, opts.size_bytes).map_err(|e| format!("generating the data set: {e}"))?;

    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("listening on loopback: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let root = dst_root.clone();
    // In-process on 127.0.0.1 only: no authentication on either side (`serve_on` and `ClientAuth::Insecure`),
    // as with --insecure-no-auth; nothing outside this host can reach the listener.
    let server = std::thread::spawn(move || serve_on(listener, &root, true, false));
    let mut push_opts = PushOptions::new(vec![src.clone()], format!("mover://127.0.0.1:{port}/demo"), opts.rate_bps);
    push_opts.auth = ClientAuth::Insecure;
    push_opts.mtu = opts.mtu;
    push_opts.cipher = opts.cipher;
    // Loopback: nothing for AF_XDP to bypass, and no reason to say so on every demo.
    push_opts.net = crate::net::xdp_path::NetChoice::Udp;
    push_opts.connect_timeout = Duration::from_secs(5);
    let report = push(&push_opts);
    if let Some(e) = &report.error {
        return Err(e.clone());
    }
    server.join().map_err(|_| "the server thread panicked".to_string())?.map_err(|e| e.to_string())?;
    let received = dst_root.join("demo").join("dataset");
    compare_trees(&src, &received)?;
    Ok(report)
}

/// Prints the demo's result line.
pub fn describe(r: &Report) -> String {
    format!(
        "mover demo: moved {} files ({}) over loopback in {:.2} s: goodput {} ({} packets, {} retransmitted), verified byte for byte; {}",
        r.files,
        format_bytes(r.bytes),
        r.seconds,
        format_rate_bps(r.goodput_bps),
        r.packets_sent,
        r.packets_retransmitted,
        cipher_note(r.cipher)
    )
}
