//! The `mover` command line.

use clap::{Args, CommandFactory, Parser, Subcommand};
use mover::cmd::args::{
    AdmissionArgs, ClientAuthArgs, FilesFromArgs, LimitArgs, RateCapArgs, ServerAuthArgs, SyncArgs,
};
use mover::cmd::{
    bench_cipher, bench_disk, bench_e2e, bench_net, demo, doctor, foreign_flags, packaging, pull, push, serve,
    serve_config,
};
use mover::connect::{ClientAuth, ConnectError, ServerAuth, SshOptions};
use mover::exit::{ExitClass, Failed, EXIT_CODES_HELP};
use mover::files::FilesError;
use mover::net::xdp_path::NetChoice;
use mover::pipeline::topology::{available_cores, CorePlan, Side, Topology};
use mover::proto::policy::Policy;
use mover::rate::{parse_rate_bps, parse_size_bytes, NO_CEILING_BPS};
use mover::session;
use mover::wire::Cipher;

/// `--rate` under `--policy fixed` when none is given.
const DEFAULT_FIXED_RATE_BPS: u64 = 1_000_000_000;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// mover: bulk data over rate-paced UDP, verified end to end.
#[derive(Parser, Debug)]
#[command(name = "mover", version, about, after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A daemon that accepts pushes into --root and serves pulls from it (or, with --stdio, one session for
    /// ssh).
    #[command(args_override_self = true)]
    Serve(ServeArgs),
    /// Send files and directory trees to a `mover serve` daemon (mover://HOST[:PORT]/DIR) or over SSH
    /// ([user@]host:DIR).
    #[command(after_help = EXIT_CODES_HELP)]
    Push(PushArgs),
    /// Fetch a file or directory tree from a `mover serve` daemon (mover://HOST[:PORT]/PATH) or over SSH
    /// ([user@]host:PATH) into a local directory.
    #[command(after_help = EXIT_CODES_HELP)]
    Pull(PullArgs),
    /// Copy between any two ends: a local path, mover://HOST[:PORT]/PATH or [user@]host:PATH. With one local
    /// end it is a push or a pull; with two remote ends this host only directs: the sending end pushes
    /// straight to the receiving daemon with a one-time delegation, and no file data passes through here.
    #[command(after_help = EXIT_CODES_HELP)]
    Copy(CopyArgs),
    /// Run many pushes from a TOML job file: each [[transfer]] sends its sources to one or more
    /// destinations with its own flags (inheriting the file's defaults), at most `concurrency` at once,
    /// with retries and resume; one progress view, then a summary table (and --json). --dry-run lists
    /// what would move and why, changing nothing.
    #[command(after_help = mover::cmd::job::JOB_EXIT_HELP)]
    Job(mover::cmd::job::JobArgs),
    /// A relay for striped pushes (`push --via`): holds transfers' sealed blocks in a bounded spool, which
    /// it cannot read, and serves each batch once to the receiver, then deletes it.
    #[command(args_override_self = true)]
    Relay(RelayArgs),
    /// How a striped transfer (`push --via`) is doing at its receiving daemon: running, done or failed (the
    /// end of a `push --detach`).
    Status(mover::cmd::status::StatusArgs),
    /// The embedded default: a local server and a push of a generated data set over loopback, at the rate
    /// this host achieves; prints goodput, time and what limited it.
    Demo(DemoArgs),
    /// Make a token for `mover serve --tokens`: prints the token (give it to the user, for --token-file or
    /// MOVER_TOKEN) on stdout and the line for the tokens file on stderr.
    Token(TokenArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Check this host for a fast transfer: measures disk, cipher and UDP (and --peer's path), reads the
    /// network, CPU and memory settings, prints each finding's fix and the bottleneck. Changes nothing.
    Doctor(doctor::DoctorArgs),
    /// Print the shell completion script for bash, zsh or fish on stdout.
    Completions(packaging::CompletionsArgs),
    /// Write the man pages (one per command) into --dir, or mover.1 on stdout.
    Man(packaging::ManArgs),
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Raw UDP blast with the same socket code and no protocol: the ceiling of a path.
    Net(bench_net::BenchNetArgs),
    /// One file through the disk reader engine alone (io_uring or pread; MOVER_DISK chooses).
    Disk(bench_disk::BenchDiskArgs),
    /// Sealing and opening speed of each --cipher on one core.
    Cipher(bench_cipher::BenchCipherArgs),
    /// End to end, disk -> network -> disk: one verified push on loopback (a daemon in this process) or to
    /// a running `mover serve` (--to).
    E2e(bench_e2e::BenchE2eArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on for control connections.
    #[arg(long, default_value = "0.0.0.0:7400")]
    listen: SocketAddr,
    /// Directory every destination lies below (with --stdio: default none, as scp: absolute paths as they
    /// are, relative ones from $HOME).
    #[arg(long, required_unless_present_any = ["show_topology", "stdio"])]
    root: Option<PathBuf>,
    /// Serve one session over stdin/stdout, as started by `mover push/pull` through ssh; no listening port.
    #[arg(long)]
    stdio: bool,
    /// Exit after one session, with its status.
    #[arg(long)]
    once: bool,
    /// fsync each file before renaming it into place (durable commits; slower).
    #[arg(long)]
    fsync: bool,
    /// Refuse to send third-party copies (`mover copy mover://THIS/... mover://OTHER/...`): this daemon then
    /// never connects out on a client's behalf. Receiving them (delegations) is unaffected.
    #[arg(long)]
    no_third_party: bool,
    /// Remove partial files (kept for resume) older than this under the root, at start and hourly: 7d, 12h,
    /// 30m or 3600s.
    #[arg(long, default_value = "7d", value_parser = mover::files::partials::parse_max_age)]
    partial_max_age: std::time::Duration,
    /// Pin the receiver's stages: auto, none, a core list (0,1 or 0-3, given to stages in table order) or
    /// stage=core pairs (recv=0,writer=1).
    #[arg(long, default_value = "auto", value_parser = CorePlan::parse)]
    cores: CorePlan,
    /// Print each session's per-stage table (items, busy and stall times, write latency) on stderr.
    #[arg(long)]
    stats: bool,
    /// Print the receiver's stages, rings and cores, and exit.
    #[arg(long)]
    show_topology: bool,
    /// Data path: auto (AF_XDP where it binds zero-copy, else UDP sockets; net_reason says why), xdp (AF_XDP
    /// in any mode, or fail), udp.
    #[arg(long, default_value = "auto")]
    net: NetChoice,
    /// Writes in flight in the writer stage (1-32).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=32))]
    queue_depth: u32,
    #[command(flatten)]
    auth: ServerAuthArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    admission: AdmissionArgs,
    #[command(flatten)]
    rate_caps: RateCapArgs,
    #[command(flatten)]
    service: serve_config::ServiceArgs,
}

#[derive(Args, Debug)]
struct RelayArgs {
    /// Address to listen on for control connections.
    #[arg(long, default_value = "0.0.0.0:7400")]
    listen: SocketAddr,
    /// Directory that holds the blocks in transit (created if missing).
    #[arg(long)]
    spool: PathBuf,
    /// Most bytes the spool holds, stored and being stored (binary suffixes: 512M, 20G); a push that does
    /// not fit is refused until the receivers have collected enough, and its sender waits or goes elsewhere.
    #[arg(long, value_parser = parse_size_bytes)]
    spool_max: u64,
    /// Pin the receiving stages: auto, none, a core list or stage=core pairs.
    #[arg(long, default_value = "auto", value_parser = CorePlan::parse)]
    cores: CorePlan,
    /// Data path: auto (AF_XDP where it binds zero-copy, else UDP sockets), xdp, udp.
    #[arg(long, default_value = "auto")]
    net: NetChoice,
    #[command(flatten)]
    auth: ServerAuthArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    admission: AdmissionArgs,
}

/// `mover push --via`: striping through relays (the Fast Send Protocol).
#[derive(Args, Debug)]
struct StripeArgs {
    /// Stripe the push through these relays (`mover relay`), comma-separated mover://HOST[:PORT]: the push
    /// is done once every block is held by a relay (or the receiver, with --direct), and the receiver
    /// collects the blocks from them. Relays see sealed blocks only.
    #[arg(long, value_delimiter = ',', value_name = "URLS")]
    via: Vec<String>,
    /// With --via: the receiver takes blocks in the striping phase too.
    #[arg(long, requires = "via")]
    direct: bool,
    /// With --via: how blocks are dealt to the relays: fcfs (faster relays take more), cyclic (round
    /// robin) or partitioned (an equal contiguous share of each file).
    #[arg(long, default_value = "fcfs", requires = "via")]
    stripe: session::StripeMode,
    /// With --via: the receiver collects only once striping is done (default: while it goes on).
    #[arg(long, requires = "via")]
    no_overlap: bool,
    /// With --via: return once every block is held by a relay or the receiver; the receiver finishes on
    /// its own.
    #[arg(long, requires = "via")]
    detach: bool,
    /// With --via: plaintext bytes per sealed block (64K to 64M).
    #[arg(long, default_value = "4M", value_parser = parse_size_bytes, requires = "via")]
    block_size: u64,
    /// With --via auto: the candidate relays, one mover://HOST[:PORT] per line (# comments).
    #[arg(long, value_name = "FILE", requires = "via")]
    relays: Option<PathBuf>,
    /// With --via auto: the round-trip time from the sender to a relay it may use, in milliseconds.
    #[arg(long, value_name = "MS", requires = "relays")]
    max_rtt_sender: Option<f64>,
    /// With --via auto: the round-trip time from the receiver to a relay it may use, in milliseconds.
    #[arg(long, value_name = "MS", requires = "relays")]
    max_rtt_receiver: Option<f64>,
    /// With --via auto: the most relays to stripe through (those within both RTTs, nearest first).
    #[arg(long, value_name = "N", default_value_t = 4, requires = "relays")]
    max_relays: usize,
}

impl StripeArgs {
    /// No striping (`mover copy` with a local source).
    fn none() -> StripeArgs {
        StripeArgs {
            via: Vec::new(),
            direct: false,
            stripe: session::StripeMode::Fcfs,
            no_overlap: false,
            detach: false,
            block_size: mover::wire::stripe::DEFAULT_BLOCK_BYTES as u64,
            relays: None,
            max_rtt_sender: None,
            max_rtt_receiver: None,
            max_relays: 4,
        }
    }

    fn options(self) -> Result<Option<session::StripeOptions>, Usage> {
        if self.via.is_empty() {
            return Ok(None);
        }
        let auto = self.via == ["auto"];
        let auto = match (auto, &self.relays) {
            (true, Some(file)) => {
                let text =
                    std::fs::read_to_string(file).map_err(|e| Usage(format!("--relays '{}': {e}", file.display())))?;
                let candidates = session::relay_choice::parse_relays_file(&text)
                    .map_err(|e| Usage(format!("--relays '{}': {e}", file.display())))?;
                for (flag, v) in
                    [("--max-rtt-sender", self.max_rtt_sender), ("--max-rtt-receiver", self.max_rtt_receiver)]
                {
                    if v.is_some_and(|v| !(v > 0.0 && v < 1e6)) {
                        return Err(Usage(format!("{flag} must be a positive number of milliseconds")));
                    }
                }
                Some(session::AutoChoice {
                    candidates,
                    max_rtt_sender_ms: self.max_rtt_sender,
                    max_rtt_receiver_ms: self.max_rtt_receiver,
                    max_relays: self.max_relays.max(1),
                })
            }
            (true, None) => return Err(Usage("--via auto chooses among --relays FILE: pass it".into())),
            (false, Some(_)) => return Err(Usage("--relays is for --via auto".into())),
            (false, None) => None,
        };
        let (lo, hi) = (mover::wire::stripe::MIN_BLOCK_BYTES, mover::wire::stripe::MAX_BLOCK_BYTES);
        if !(u64::from(lo)..=u64::from(hi)).contains(&self.block_size) {
            return Err(Usage(format!("--block-size {} is outside 64K..64M", self.block_size)));
        }
        Ok(Some(session::StripeOptions {
            direct: self.direct,
            mode: self.stripe,
            overlap: !self.no_overlap,
            detach: self.detach,
            block_bytes: self.block_size as u32,
            via: if auto.is_some() { Vec::new() } else { self.via },
            auto,
        }))
    }
}

#[derive(Args, Debug)]
struct TokenArgs {
    /// The user the token is for.
    #[arg(long)]
    user: String,
}

/// The flags push and pull share: how the sending side (local for push, remote for pull) paces and seals
/// the transfer, and how the summary is printed.
#[derive(Args, Debug)]
struct TransferArgs {
    /// Rate policy of the sending side: fair (find the bottleneck and share it), low (a scavenger that yields
    /// to other traffic) or fixed (hold --rate whatever happens).
    #[arg(long, default_value = "fair")]
    policy: Policy,
    /// Sending rate in bits/s with SI suffix (500M, 2G, 10G): the rate under --policy fixed (default 1G),
    /// a ceiling never exceeded under fair and low (default: none).
    #[arg(long, value_parser = parse_rate_bps)]
    rate: Option<u64>,
    /// The lowest rate fair and low go down to, in bits/s (default: none).
    #[arg(long, value_parser = parse_rate_bps)]
    min_rate: Option<u64>,
    /// Print one JSON object with the summary on stdout.
    #[arg(long)]
    json: bool,
    /// Path MTU in bytes; the sender sizes datagrams to fit it and tries nothing larger. Default for push:
    /// the route's MTU towards the receiver (at most 9000), confirmed by the first data, with a fallback
    /// to 1500 when full-size datagrams vanish on the way (a path MTU black hole); for pull: 1500.
    #[arg(long)]
    mtu: Option<usize>,
    /// Receive window (bytes in flight beyond the cumulative ACK), e.g. 512M.
    #[arg(long, value_parser = parse_size_bytes)]
    window: Option<u64>,
    /// Seconds to wait for the daemon's TCP connection.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// How data and feedback datagrams are sealed: aes256gcm, chacha20poly1305, or none (no encryption and
    /// no authentication: only an integrity check against corruption).
    #[arg(long, default_value = "aes256gcm")]
    cipher: Cipher,
    /// Seconds a silent path (no datagram and no control message from the peer: a partition, a stalled
    /// peer) is tolerated; sending pauses meanwhile and resumes without resending what arrived. Past it:
    /// exit code 5, and the same command again resumes.
    #[arg(long, value_name = "SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// Times to dial again and resume when the network breaks the session (connection refused or dropped,
    /// a silent path past --timeout), waiting 1 s, 2 s, 4 s, ... (at most 30 s) in between; 0 for none.
    #[arg(long, value_name = "N", default_value_t = 3)]
    retries: u32,
    /// Move one shard of the work, so that N runs (one per node) together move everything exactly once:
    /// I/N (I from 0), auto (a Slurm array task's SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT) or auto/N
    /// (the index from Slurm or a Kubernetes Indexed Job's JOB_COMPLETION_INDEX, N shards). Shards are
    /// balanced by bytes and the same on every node; directories go with every shard.
    #[arg(long, value_name = "I/N|auto[/N]")]
    shard: Option<String>,
    #[command(flatten)]
    progress: mover::cmd::progress::ProgressArgs,
}

impl TransferArgs {
    /// `--shard`, with `auto` read from this process's environment.
    fn shard(&self) -> Result<mover::files::Shard, Usage> {
        match &self.shard {
            None => Ok(mover::files::Shard::WHOLE),
            Some(text) => mover::files::Shard::parse(text, &|name| std::env::var(name).ok()).map_err(Usage),
        }
    }
}

#[derive(Args, Debug)]
struct PushArgs {
    #[command(flatten)]
    transfer: TransferArgs,
    #[command(flatten)]
    sync: SyncArgs,
    #[command(flatten)]
    files_from: FilesFromArgs,
    /// Pin the sender's stages: auto, none, a core list (0,1 or 0-3, given to stages in table order) or
    /// stage=core pairs (pacer=1,packetizer=0).
    #[arg(long, default_value = "auto", value_parser = CorePlan::parse)]
    cores: CorePlan,
    /// Print a per-stage table at the end (items, busy and stall times, latency quantiles) on stderr.
    #[arg(long)]
    stats: bool,
    /// Read files through the page cache instead of with O_DIRECT.
    #[arg(long)]
    buffered: bool,
    /// Reads in flight in the reader stage (1-32).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=32))]
    queue_depth: u32,
    /// Data path: auto (AF_XDP where it binds zero-copy, else UDP sockets; net_reason says why), xdp (AF_XDP
    /// in any mode, or fail), udp.
    #[arg(long, default_value = "auto")]
    net: NetChoice,
    /// Print the sender's stages, rings and cores, and exit.
    #[arg(long)]
    show_topology: bool,
    #[command(flatten)]
    auth: ClientAuthArgs,
    #[command(flatten)]
    ssh: SshArgs,
    #[command(flatten)]
    stripe: StripeArgs,
    /// Send to this destination too (repeatable): with --to, every operand is a source, and the sources go
    /// to each --to destination at once, read from disk once (a fan-out; each destination is its own session,
    /// verified and retried on its own).
    #[arg(long = "to", value_name = "DEST")]
    to: Vec<String>,
    /// With several --to: how far apart the destinations may drift (bytes of read-ahead kept for the slower
    /// ones) and still share every read; one further behind reads on its own. Below twice a session's
    /// 32 MiB read-ahead the readers may race apart at the start and share little.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size_bytes)]
    fan_out_buffer: u64,
    /// Files and directories to send, then the destination mover://HOST[:PORT]/DIR or [user@]host:DIR (with
    /// --to: only sources).
    #[arg(required_unless_present = "show_topology", num_args = 1.., value_name = "SRC... DEST")]
    paths: Vec<String>,
}

/// How a `[user@]host:PATH` operand is reached.
#[derive(Args, Debug)]
struct SshArgs {
    /// The ssh command, split into words as a shell does (e.g. "ssh -p 2222 -o 'ProxyCommand nc %h %p'").
    #[arg(long, value_name = "COMMAND")]
    ssh: Option<String>,
    /// Path of mover on the remote host, when it is not on the remote PATH.
    #[arg(long, value_name = "PATH")]
    remote_mover: Option<String>,
    /// Confine the remote side to this directory (passed as serve --stdio --root DIR; a relative DIR is
    /// relative to the remote home). Default: none, as scp: absolute paths as they are, relative ones from
    /// the remote home.
    #[arg(long, value_name = "DIR")]
    remote_root: Option<String>,
}

impl SshArgs {
    fn options(self) -> SshOptions {
        SshOptions { ssh: self.ssh, remote_mover: self.remote_mover, remote_root: self.remote_root }
    }
}

#[derive(Args, Debug)]
struct CopyArgs {
    #[command(flatten)]
    transfer: TransferArgs,
    #[command(flatten)]
    sync: SyncArgs,
    /// Pin this side's stages (a copy with one local end): auto, none, a core list or stage=core pairs.
    #[arg(long, default_value = "auto", value_parser = CorePlan::parse)]
    cores: CorePlan,
    /// Print a per-stage table at the end on stderr (a copy with one local end).
    #[arg(long)]
    stats: bool,
    /// Data path of this side (a copy with one local end): auto, xdp, udp.
    #[arg(long, default_value = "auto")]
    net: NetChoice,
    #[command(flatten)]
    auth: ClientAuthArgs,
    #[command(flatten)]
    ssh: SshArgs,
    /// Sources, then the destination. Two remote ends: one source, mover://HOST[:PORT]/PATH or
    /// [user@]host:PATH (which must reach the destination), and a mover:// destination daemon with --tokens.
    #[arg(num_args = 2.., value_name = "SRC... DEST")]
    paths: Vec<String>,
}

#[derive(Args, Debug)]
struct PullArgs {
    #[command(flatten)]
    transfer: TransferArgs,
    #[command(flatten)]
    sync: SyncArgs,
    /// Pin this side's receiving stages: auto, none, a core list or stage=core pairs (recv=0,writer=1).
    #[arg(long, default_value = "auto", value_parser = CorePlan::parse)]
    cores: CorePlan,
    /// Print a per-stage table at the end on stderr.
    #[arg(long)]
    stats: bool,
    /// fsync each file before renaming it into place.
    #[arg(long)]
    fsync: bool,
    /// Writes in flight in the writer stage (1-32).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=32))]
    queue_depth: u32,
    /// Data path: auto (AF_XDP where it binds zero-copy, else UDP sockets; net_reason says why), xdp (AF_XDP
    /// in any mode, or fail), udp.
    #[arg(long, default_value = "auto")]
    net: NetChoice,
    #[command(flatten)]
    auth: ClientAuthArgs,
    #[command(flatten)]
    ssh: SshArgs,
    /// The source mover://HOST[:PORT]/PATH or [user@]host:PATH.
    source: String,
    /// Local directory the source lands in under its own name (created if missing).
    dest: PathBuf,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Size of the generated data set (binary suffixes: 256M, 1G).
    #[arg(long, default_value = demo::DEFAULT_SIZE, value_parser = parse_size_bytes)]
    size: u64,
    /// A ceiling for the sending rate in bits/s with SI suffix (default: none; the fair policy finds what
    /// this host achieves).
    #[arg(long, value_parser = parse_rate_bps)]
    rate: Option<u64>,
    /// MTU of the simulated path (loopback itself allows 64 KiB).
    #[arg(long, default_value_t = 9000)]
    mtu: usize,
    /// Directory for the generated and received trees (default: the system temp directory).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Keep the generated and received trees.
    #[arg(long)]
    keep: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// How datagrams are sealed: aes256gcm, chacha20poly1305 or none.
    #[arg(long, default_value = "aes256gcm")]
    cipher: Cipher,
}

/// Any layer's error, for the one `mover: error: ...` line: each prints its own `Display`, and
/// [`exit_class`] finds its exit code.
type CliError = Box<dyn std::error::Error>;

/// A flag's value that parses but makes no sense (clap's own errors exit 2 as well).
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The exit code's class of any layer's error; an error of no known layer is a plain failure.
fn exit_class(e: &CliError) -> ExitClass {
    if let Some(f) = e.downcast_ref::<Failed>() {
        f.class
    } else if e.is::<Usage>() {
        ExitClass::Usage
    } else if let Some(e) = e.downcast_ref::<session::SessionError>() {
        e.exit_class()
    } else if let Some(e) = e.downcast_ref::<ConnectError>() {
        e.exit_class()
    } else if let Some(e) = e.downcast_ref::<FilesError>() {
        e.exit_class()
    } else {
        ExitClass::Failure
    }
}

fn main() -> ExitCode {
    // `serve --config FILE` becomes flags before the command line's own (cmd/serve_config.rs).
    let argv = match serve_config::with_config_file(&Cli::command(), std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(e) => {
            eprintln!("mover: error: {e}");
            return ExitCode::from(e.class.code());
        }
    };
    // Unknown flags typed from scp/rsync habit get mover's answer instead of clap's '-- ARG' tip.
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| foreign_flags::exit(e));
    let runs_sessions = matches!(
        cli.command,
        Command::Serve(_)
            | Command::Relay(_)
            | Command::Push(_)
            | Command::Pull(_)
            | Command::Copy(_)
            | Command::Job(_)
    );
    if runs_sessions {
        // A receiver bounds its claims by this limit (files::claims): the higher, the fewer reopens.
        let _ = mover::files::raise_open_files_limit();
    } else {
        // `mover demo --json | head` should end quietly, as any Unix tool does, not panic in println!.
        // Sessions keep Rust's SIGPIPE-ignored default: a dead ssh child must be an error they can retry.
        packaging::die_quietly_on_closed_stdout();
    }
    let result = match cli.command {
        Command::Serve(a) => run_serve(a, &argv),
        Command::Relay(a) => run_relay(a),
        Command::Status(a) => mover::cmd::status::run(&a).map_err(CliError::from),
        Command::Push(a) => run_push(a),
        Command::Job(a) => run_job(a),
        Command::Pull(a) => run_pull(a),
        Command::Copy(a) => run_copy(a),
        Command::Demo(a) => run_demo(a),
        Command::Token(a) => run_token(&a),
        Command::Bench(BenchCommand::Net(a)) => bench_net::run(&a).map_err(CliError::from),
        Command::Bench(BenchCommand::Disk(a)) => bench_disk::run(&a).map_err(CliError::from),
        Command::Bench(BenchCommand::Cipher(a)) => bench_cipher::run(&a).map_err(CliError::from),
        Command::Doctor(a) => doctor::run(&a).map_err(CliError::from),
        Command::Completions(a) => packaging::completions(Cli::command(), &a).map_err(CliError::from),
        Command::Man(a) => packaging::man(Cli::command(), &a).map_err(CliError::from),
        Command::Bench(BenchCommand::E2e(a)) => bench_e2e::run(&a).map_err(CliError::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mover: error: {e}");
            ExitCode::from(exit_class(&e).code())
        }
    }
}

fn show_topology(side: Side, plan: &CorePlan) -> Result<(), CliError> {
    let cores = available_cores();
    let t = Topology::new(side, plan, &cores)?;
    println!("cores available: {cores:?}");
    print!("{}", t.render());
    Ok(())
}

fn run_serve(a: ServeArgs, argv: &[std::ffi::OsString]) -> Result<(), CliError> {
    if a.service.check_config {
        // Whatever fails here is the configuration's fault: the usage code.
        let settings = serve_config::effective_settings(Cli::command(), argv)?;
        let usage = |e: CliError| Failed { class: ExitClass::Usage, message: e.to_string() };
        let (opts, _) = serve_options(a).map_err(usage)?;
        return Ok(serve_config::check_config(&opts, &settings)?);
    }
    if a.show_topology {
        return show_topology(Side::Receiver, &a.cores);
    }
    let (opts, stdio) = serve_options(a)?;
    Ok(serve::run(&opts, stdio)?)
}

/// The daemon's options from its flags (authentication loaded: TLS files and tokens are read here), and
/// under `--stdio` the rule for the paths the client names.
fn serve_options(a: ServeArgs) -> Result<(session::ServeOptions, Option<session::PathRule>), CliError> {
    let (root, stdio) = serve::root_and_rule(a.root, a.stdio)?;
    // Under --stdio, ssh has authenticated the user and carries the channel; the daemon's own TLS and
    // credentials are for --listen.
    let auth = if a.stdio { ServerAuth::Insecure } else { a.auth.resolve()? };
    let opts = session::ServeOptions {
        listen: a.listen,
        root,
        once: a.once,
        fsync: a.fsync,
        cores: a.cores,
        stats: a.stats,
        queue_depth: a.queue_depth,
        net: a.net,
        auth,
        limits: a.limits.limits(),
        admission: a.admission.limits(),
        partial_max_age: a.partial_max_age,
        memory: a.limits.memory_budget(),
        metrics: a.service.metrics,
        log_format: a.service.log_format,
        registry: session::registry::SessionRegistry::new(),
        log_sessions: true,
        relay: None,
        no_third_party: a.no_third_party,
        governor: session::governor::Governor::new(a.rate_caps.caps()),
    };
    Ok((opts, stdio))
}

fn run_relay(a: RelayArgs) -> Result<(), CliError> {
    std::fs::create_dir_all(&a.spool)
        .map_err(|e| Usage(format!("cannot create the spool '{}': {e}", a.spool.display())))?;
    let mut opts = session::ServeOptions::new(a.listen, a.spool);
    opts.cores = a.cores;
    opts.net = a.net;
    opts.auth = a.auth.resolve_relay(&opts.root)?;
    opts.limits = a.limits.limits();
    opts.admission = a.admission.limits();
    opts.memory = a.limits.memory_budget();
    opts.relay = Some(session::RelaySpool::new(a.spool_max));
    Ok(session::serve(&opts)?)
}

/// The rate and floor from `--policy`, `--rate` and `--min-rate`.
fn rates(policy: Policy, rate: Option<u64>, min_rate: Option<u64>) -> Result<(u64, u64), Usage> {
    let rate_bps = match (policy, rate) {
        (_, Some(r)) => r,
        (Policy::Fixed, None) => DEFAULT_FIXED_RATE_BPS,
        (_, None) => NO_CEILING_BPS,
    };
    let min_rate_bps = min_rate.unwrap_or(0);
    if min_rate_bps > rate_bps {
        return Err(Usage(format!("--min-rate {min_rate_bps} is above --rate {rate_bps}: lower --min-rate")));
    }
    Ok((rate_bps, min_rate_bps))
}

fn connect_timeout(seconds: f64) -> Result<Duration, Usage> {
    if !(seconds > 0.0 && seconds < 1e6) {
        return Err(Usage("--connect-timeout must be a positive number of seconds".into()));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn run_push(a: PushArgs) -> Result<(), CliError> {
    if a.show_topology {
        return show_topology(Side::Sender, &a.cores);
    }
    let (retries, stats, json, progress) = (a.transfer.retries, a.stats, a.transfer.json, a.transfer.progress.clone());
    let buffer = a.fan_out_buffer;
    let mut pushes = push_options_each(a)?;
    if pushes.len() == 1 {
        return Ok(push::run(&pushes[0], retries, stats, json, &progress)?);
    }
    let name = pushes[0].sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ");
    for p in &mut pushes {
        // Each destination's own counters, for its line of the progress view.
        p.live = mover::pipeline::live::Live::new();
    }
    let transfer = mover::cmd::job::JobTransfer { name, pushes, retries, fan_out_buffer: buffer };
    Ok(mover::cmd::job::run::run(&[transfer], 1, json, &progress)?)
}

/// The session's options for `push`'s flags, one per destination: the last operand, or each `--to` (a
/// fan-out, whose operands are all sources).
fn push_options_each(mut a: PushArgs) -> Result<Vec<session::PushOptions>, CliError> {
    let to = std::mem::take(&mut a.to);
    if to.is_empty() {
        if a.paths.len() < 2 {
            return Err(Usage("mover push needs SRC... DEST, or SRC... --to DEST [--to DEST ...]".into()).into());
        }
        return Ok(vec![push_options(a)?]);
    }
    if let Some(d) = a.paths.iter().find(|p| p.starts_with("mover://")) {
        return Err(Usage(format!(
            "with --to every operand is a source, and '{d}' is a destination: give it as --to {d}"
        ))
        .into());
    }
    if to.len() > session::MAX_DESTINATIONS {
        return Err(Usage(format!("at most {} --to destinations in one push", session::MAX_DESTINATIONS)).into());
    }
    if to.len() > 1 && !a.stripe.via.is_empty() {
        return Err(
            Usage("--via stripes one destination's push: give one --to, or run a push per destination".into()).into()
        );
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(d) = to.iter().find(|d| !seen.insert(d.as_str())) {
        return Err(Usage(format!("--to '{d}' is given twice: each destination once")).into());
    }
    let (first, others) = to.split_first().expect("to is not empty");
    let auth_args = a.auth.clone();
    a.paths.push(first.clone());
    let base = push_options(a)?;
    // The credentials are read once (token file, certificate and key) and shared by every daemon.
    let mut daemon_auth = first.starts_with("mover://").then(|| base.auth.clone());
    let mut pushes = vec![base.clone()];
    for d in others {
        let auth = if !d.starts_with("mover://") {
            ClientAuth::Insecure
        } else if let Some(auth) = &daemon_auth {
            auth.clone()
        } else {
            daemon_auth.insert(auth_args.resolve()?).clone()
        };
        pushes.push(session::PushOptions { url: d.clone(), auth, ..base.clone() });
    }
    Ok(pushes)
}

/// The session's options for `push`'s flags (`mover copy` between two remote ends takes them too: the
/// sending end's push is this one, to the last path).
fn push_options(a: PushArgs) -> Result<session::PushOptions, CliError> {
    let mut paths = a.paths;
    let url = paths.pop().expect("push_options_each checked for a destination");
    let connect_timeout = connect_timeout(a.transfer.connect_timeout)?;
    let (rate_bps, min_rate_bps) = rates(a.transfer.policy, a.transfer.rate, a.transfer.min_rate)?;
    // Credentials are for mover:// daemons; an SSH destination is authenticated by ssh.
    let auth = if url.starts_with("mover://") { a.auth.resolve()? } else { ClientAuth::Insecure };
    let shard = a.transfer.shard()?;
    let opts = session::PushOptions {
        sources: paths.into_iter().map(PathBuf::from).collect(),
        url,
        rate_bps,
        policy: a.transfer.policy,
        min_rate_bps,
        mtu: a.transfer.mtu,
        window_bytes: a.transfer.window,
        connect_timeout,
        cores: a.cores,
        direct: !a.buffered,
        queue_depth: a.queue_depth,
        net: a.net,
        cipher: a.transfer.cipher,
        auth,
        ssh: a.ssh.options(),
        options: a.sync.options(),
        files_from: a.files_from.read()?,
        timeout: Duration::from_secs(a.transfer.timeout),
        live: mover::pipeline::live::Live::new(),
        stripe: a.stripe.options()?,
        shard,
        shared_reads: None,
    };
    Ok(opts)
}

/// `mover job FILE`: the file read into push flags (`cmd::job::file`), each transfer x destination parsed
/// by push's own definition and turned into its options as `mover push` would, then the job run or, with
/// `--dry-run`, asked about.
fn run_job(a: mover::cmd::job::JobArgs) -> Result<(), CliError> {
    use mover::cmd::job::{dry_run, file, run, JobTransfer};
    let shown = a.file.display().to_string();
    let text =
        std::fs::read_to_string(&a.file).map_err(|e| Usage(format!("cannot read the job file '{shown}': {e}")))?;
    let overrides: Vec<(&str, String)> = a.shard.iter().map(|s| ("shard", s.clone())).collect();
    let cli = Cli::command();
    let push_command = cli.find_subcommand("push").expect("mover has a push subcommand");
    let job = file::parse_job(push_command, &text, &shown, &overrides)?;
    let mut transfers = Vec::with_capacity(job.transfers.len());
    for t in &job.transfers {
        let mut pushes = Vec::with_capacity(t.to.len());
        let mut retries = 0;
        let mut fan_out_buffer = session::DEFAULT_FAN_OUT_BUFFER;
        for to in &t.to {
            // Whatever fails here is the file's: named with it and the transfer, with its own class.
            let at = |e: &dyn std::fmt::Display| format!("{shown}: {}: {e}", t.label());
            let args = JobPush::try_parse_from(t.push_argv(to)).map_err(|e| {
                let text = e.render().to_string();
                Usage(at(&text.lines().next().unwrap_or("invalid flags").trim_start_matches("error: ")))
            })?;
            retries = args.push.transfer.retries;
            fan_out_buffer = args.push.fan_out_buffer;
            if !args.push.to.is_empty() {
                return Err(Usage(at(&"`--to` is not a key of a transfer: list the destinations in `to`")).into());
            }
            let opts = push_options(args.push).map_err(|e| Failed { class: exit_class(&e), message: at(&e) })?;
            pushes.push(opts);
        }
        transfers.push(JobTransfer { name: t.name.clone(), pushes, retries, fan_out_buffer });
    }
    if a.dry_run {
        return Ok(dry_run::run(&transfers, job.concurrency, a.json)?);
    }
    Ok(run::run(&transfers, job.concurrency, a.json, &a.progress)?)
}

/// One push of a job, parsed from the flags its transfer stands for.
#[derive(Parser, Debug)]
#[command(name = "mover job")]
struct JobPush {
    #[command(flatten)]
    push: PushArgs,
}

fn run_token(a: &TokenArgs) -> Result<(), CliError> {
    let (token, line) = mover::connect::new_token(&a.user)?;
    println!("{token}");
    // A valid token-file fragment: `mover token --user NAME 2>>TOKENS` appends it.
    eprintln!("# mover token: the line for the file given to `mover serve --tokens`:\n{line}");
    Ok(())
}

fn run_pull(a: PullArgs) -> Result<(), CliError> {
    let (rate_bps, min_rate_bps) = rates(a.transfer.policy, a.transfer.rate, a.transfer.min_rate)?;
    // Credentials are for mover:// daemons; an SSH source is authenticated by ssh.
    let auth = if a.source.starts_with("mover://") { a.auth.resolve()? } else { ClientAuth::Insecure };
    let opts = session::PullOptions {
        source: a.source,
        dest: a.dest,
        rate_bps,
        policy: a.transfer.policy,
        min_rate_bps,
        mtu: a.transfer.mtu.unwrap_or(1500),
        window_bytes: a.transfer.window,
        connect_timeout: connect_timeout(a.transfer.connect_timeout)?,
        cores: a.cores,
        queue_depth: a.queue_depth,
        net: a.net,
        cipher: a.transfer.cipher,
        fsync: a.fsync,
        ssh: a.ssh.options(),
        auth,
        options: a.sync.options(),
        timeout: Duration::from_secs(a.transfer.timeout),
        live: mover::pipeline::live::Live::new(),
        shard: a.transfer.shard()?,
    };
    Ok(pull::run(&opts, a.transfer.retries, a.stats, a.transfer.json, &a.transfer.progress)?)
}

/// `mover copy`: a push, a pull, or (two remote ends) a third-party copy this host only directs.
fn run_copy(mut a: CopyArgs) -> Result<(), CliError> {
    let mut paths = std::mem::take(&mut a.paths);
    let dest = paths.pop().expect("clap requires at least two paths");
    let remote = |p: &str| !matches!(mover::connect::Location::parse(p), Ok(mover::connect::Location::Local(_)));
    let remote_sources = paths.iter().filter(|p| remote(p)).count();
    // A push of `sources` to `dest` with copy's flags: the local push itself, or what a sending end runs.
    let push_args = |sources: Vec<String>, dest: String, a: CopyArgs| PushArgs {
        transfer: a.transfer,
        sync: a.sync,
        files_from: FilesFromArgs::default(),
        cores: a.cores,
        stats: a.stats,
        buffered: false,
        queue_depth: mover::pipeline::send::READ_QUEUE_DEPTH,
        net: a.net,
        show_topology: false,
        auth: a.auth,
        ssh: a.ssh,
        stripe: StripeArgs::none(),
        to: Vec::new(),
        fan_out_buffer: session::DEFAULT_FAN_OUT_BUFFER,
        paths: sources.into_iter().chain([dest]).collect(),
    };
    match (remote_sources, remote(&dest)) {
        (0, true) => run_push(push_args(paths, dest, a)),
        (0, false) => Err(Usage(
            "both ends are local: mover copy moves data between hosts (mover://HOST/PATH or host:PATH); use cp or \
             rsync for a local copy"
                .into(),
        )
        .into()),
        (n, _) if n != paths.len() => {
            Err(Usage("the sources mix local and remote paths: copy from one side at a time".into()).into())
        }
        (n, _) if n > 1 => Err(Usage(
            "a copy from a remote end takes one source (a file or directory): run one copy per source".into(),
        )
        .into()),
        (_, false) => {
            let pull = PullArgs {
                transfer: a.transfer,
                sync: a.sync,
                cores: a.cores,
                stats: a.stats,
                fsync: false,
                queue_depth: mover::pipeline::recv::WRITE_QUEUE_DEPTH,
                net: a.net,
                auth: a.auth,
                ssh: a.ssh,
                source: paths.pop().expect("one source"),
                dest: PathBuf::from(dest),
            };
            run_pull(pull)
        }
        (_, true) => {
            let source = paths.pop().expect("one source");
            let (json, progress) = (a.transfer.json, a.transfer.progress.clone());
            let push = push_options(push_args(Vec::new(), dest, a))?;
            let opts = session::CopyOptions { source, push };
            Ok(mover::cmd::copy::run(&opts, json, &progress)?)
        }
    }
}

fn run_demo(a: DemoArgs) -> Result<(), CliError> {
    let opts = demo::DemoOptions {
        size_bytes: a.size,
        rate_bps: a.rate,
        mtu: a.mtu,
        workdir: a.workdir,
        keep: a.keep,
        cipher: a.cipher,
    };
    let result = demo::run(&opts)?;
    if a.json {
        println!("{}", demo::to_json(&result));
    } else {
        println!("{}", demo::describe(&result));
    }
    Ok(())
}
