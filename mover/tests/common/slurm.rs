//! A private Slurm cluster for tests (issue 21 item 3): its own munged, one slurmctld and one slurmd on this
//! machine, configured in a temporary directory, started by the test and killed, with every job it ran, when
//! dropped.
//!
//! It uses Debian's slurm-wlm and munge (`./test.sh` installs them when root) and runs everything as root:
//! the daemons and the jobs. There are no cgroups (proctrack/linuxproc, task/none) and no accounting, so it
//! needs neither systemd nor a writable cgroup file system, and the packages' own services stay untouched.
//! The ports are free ones picked at start, and the munge key and socket are private, so it can run beside
//! a site's Slurm or another test process's cluster.
//!
//! Nothing outlives it. slurmd starts each job's slurmstepd detached (a double fork, a new session), and a
//! slurmstepd outlives a killed slurmd by design, so killing the daemons alone would leak the running jobs.
//! Instead slurmctld and slurmd each run as the first process of their own PID namespace (`unshare --pid
//! --fork --kill-child --mount-proc`): when it dies the kernel kills everything else in the namespace. Every
//! daemon also gets SIGKILL when the thread that started it exits (`PR_SET_PDEATHSIG`), so a test binary
//! killed mid-run leaves nothing behind either.

use super::{is_root, skip_or_fail, KillOnDrop, TempDir};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The programs the cluster runs, all from slurm-wlm and munge except `unshare` (util-linux).
const PROGRAMS: [&str; 9] =
    ["munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "squeue", "scancel", "unshare"];

/// The one node's name, given to slurmd with `-N` so it need not match this machine's host name.
pub const NODE: &str = "mover-node";

/// How long the daemons may take to come up. It takes about a second; a loaded CI machine may be slower.
const START_LIMIT: Duration = Duration::from_secs(30);

/// How long the processes of a killed cluster may take to be gone.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// How often the state of the cluster or of a job is asked for while waiting.
const POLL: Duration = Duration::from_millis(100);

/// One cluster at a time per test process: tests in a file run in parallel threads, and two clusters would
/// only compete for the machine's two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Numbers each cluster's directory, so a cluster never reuses a directory a previous one is removing.
static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

/// A running cluster of one controller and one node; see the module documentation.
///
/// Keep it on the thread that started it: its daemons die when that thread exits.
pub struct Slurm {
    /// munged, slurmctld, slurmd, in the order they were started.
    daemons: Vec<Daemon>,
    /// The PID namespaces of slurmctld and slurmd (`pid:[INODE]`), whose processes are the cluster's.
    namespaces: Vec<String>,
    programs: BTreeMap<&'static str, PathBuf>,
    conf: PathBuf,
    /// Numbers the scripts and output files of each submission.
    arrays: AtomicUsize,
    dir: TempDir,
    /// Dropped last, once the daemons are gone and the directory removed.
    _turn: MutexGuard<'static, ()>,
}

/// An array job as submitted: its id and where each task's output goes.
#[derive(Debug, Clone)]
pub struct ArrayJob {
    /// The array's job id (`SLURM_ARRAY_JOB_ID`).
    pub id: u32,
    /// Each task's stdout and stderr, by task index (0..tasks).
    pub outputs: Vec<PathBuf>,
}

/// How one task of an array ended.
#[derive(Debug, Clone)]
pub struct TaskEnd {
    /// Its index in the array (`SLURM_ARRAY_TASK_ID`).
    pub index: u32,
    /// Slurm's final job state: `COMPLETED`, `FAILED`, `CANCELLED`, `TIMEOUT`...
    pub state: String,
    /// Slurm's `EXIT:SIGNAL` of the batch script, `0:0` for success.
    pub exit_code: String,
    /// Its stdout and stderr.
    pub output: PathBuf,
}

impl TaskEnd {
    /// Whether the task's script ran and exited 0.
    pub fn succeeded(&self) -> bool {
        self.state == "COMPLETED" && self.exit_code == "0:0"
    }

    /// What the task printed (empty if it printed nothing or never ran).
    pub fn output_text(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }
}

impl Slurm {
    /// Starts munged, slurmctld and slurmd and returns once the node is idle. When not root, or a program is
    /// missing, it calls [`skip_or_fail`] for `test` and returns `None`.
    pub fn start(test: &str) -> Option<Slurm> {
        if !is_root() {
            skip_or_fail(test, "a Slurm cluster needs root (its daemons and jobs run as root)");
            return None;
        }
        let programs = match find_programs() {
            Ok(programs) => programs,
            Err(missing) => {
                let why = format!("{missing} is not installed (apt-get install slurm-wlm munge; ./test.sh does)");
                skip_or_fail(test, &why);
                return None;
            }
        };
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        let dir = TempDir::new(&format!("slurm{}", CLUSTERS.fetch_add(1, Ordering::Relaxed)));
        for sub in ["log", "state", "spool", "jobs"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create cluster dir");
        }
        // munged refuses a socket or key in a directory others may write to, and warns unless all may enter it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod cluster dir");
        write_munge_key(&dir.path().join("munge.key"));
        let conf = dir.path().join("slurm.conf");
        std::fs::write(&conf, slurm_conf(dir.path(), free_ports())).expect("write slurm.conf");
        let mut slurm = Slurm {
            daemons: Vec::new(),
            namespaces: Vec::new(),
            programs,
            conf,
            arrays: AtomicUsize::new(0),
            dir,
            _turn: turn,
        };
        slurm.start_daemons();
        eprintln!("{test}: the Slurm cluster in {} is up in {:?}", slurm.dir.path().display(), started.elapsed());
        Some(slurm)
    }

    /// A command for one of the cluster's programs (`sbatch`, `scontrol`...), pointed at its configuration.
    pub fn command(&self, program: &str) -> Command {
        let path = self.programs.get(program).unwrap_or_else(|| panic!("{program} is not a Slurm program"));
        let mut cmd = Command::new(path);
        cmd.env("SLURM_CONF", &self.conf);
        cmd
    }

    /// Submits `script` (a `/bin/sh` script body) as an array of `tasks` tasks, 0 to `tasks - 1`, with this
    /// process's environment. Each task runs in the cluster's `jobs` directory.
    pub fn submit_array(&self, tasks: u32, script: &str) -> ArrayJob {
        assert!(tasks > 0, "an array has at least one task");
        let n = self.arrays.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("jobs/array{n}.sh"));
        let text = format!("#!/bin/sh\n#SBATCH --array=0-{}\n#SBATCH --job-name=mover-array{n}\n{script}\n", tasks - 1);
        std::fs::write(&path, text).expect("write job script");
        self.submit_script(&path, tasks, &[])
    }

    /// Submits the batch script at `script`, whose `#SBATCH --array` makes `tasks` tasks numbered from 0, with
    /// this process's environment and `env`. Each task runs in the cluster's `jobs` directory and its output
    /// goes to the cluster's files, whatever the script's `#SBATCH --output` says.
    pub fn submit_script(&self, script: &Path, tasks: u32, env: &[(&str, &str)]) -> ArrayJob {
        let n = self.arrays.fetch_add(1, Ordering::Relaxed);
        let jobs = self.dir.path().join("jobs");
        let out = self
            .command("sbatch")
            .args(["--parsable", "--export=ALL"])
            .arg(format!("--chdir={}", jobs.display()))
            .arg(format!("--output={}", jobs.join(format!("job{n}-%a.out")).display()))
            .arg(script)
            .envs(env.iter().copied())
            .output()
            .expect("run sbatch");
        let stdout = String::from_utf8_lossy(&out.stdout);
        // --parsable prints `ID` or `ID;CLUSTER`.
        let id = stdout.trim().split(';').next().and_then(|id| id.parse().ok());
        let Some(id) = id.filter(|_| out.status.success()) else {
            panic!(
                "sbatch {} failed ({}): {stdout}{}\n{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.diagnostics()
            );
        };
        let outputs = (0..tasks).map(|i| jobs.join(format!("job{n}-{i}.out"))).collect();
        ArrayJob { id, outputs }
    }

    /// Waits until every task of `job` has ended, at most `limit`, and returns how each ended, by index. On
    /// timeout it cancels the job and panics with the tasks' states and the daemons' logs.
    pub fn wait(&self, job: &ArrayJob, limit: Duration) -> Vec<TaskEnd> {
        let states = self.wait_for(job, limit, "ended", is_final);
        states
            .into_iter()
            .zip(&job.outputs)
            .enumerate()
            .map(|(index, ((state, exit_code), output))| TaskEnd {
                index: index as u32,
                state,
                exit_code,
                output: output.clone(),
            })
            .collect()
    }

    /// Waits until every task of `job` is running, at most `limit` (panics as [`Slurm::wait`] does).
    pub fn wait_running(&self, job: &ArrayJob, limit: Duration) {
        self.wait_for(job, limit, "running", |state| state == "RUNNING");
    }

    /// The cluster's live processes (pid, command line): every process in slurmctld's and slurmd's PID
    /// namespaces (the daemons, each job's slurmstepd and whatever its script started) and munged.
    pub fn processes(&self) -> Vec<(u32, String)> {
        let munged = self.daemons.first().map(|d| d.child.0.id());
        let mut found = Vec::new();
        for pid in all_pids() {
            let ours = Some(pid) == munged || pid_namespace(pid).is_some_and(|ns| self.namespaces.contains(&ns));
            if ours && is_alive(pid) {
                found.push((pid, command_line(pid)));
            }
        }
        found
    }

    /// Kills every daemon and waits until no process of the cluster is left, which it returns as an error
    /// otherwise. Dropping the cluster does the same and panics on leftovers.
    pub fn shutdown(mut self) -> Result<(), String> {
        self.stop()
    }

    /// The last lines of every daemon's log and output, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut text = String::from("--- the Slurm cluster's logs ---\n");
        let log = self.dir.path().join("log");
        let Ok(entries) = std::fs::read_dir(&log) else { return text };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let content = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = content.lines().collect();
            text += &format!("== {} (last 25 lines)\n", path.display());
            for line in &lines[lines.len().saturating_sub(25)..] {
                text += &format!("{line}\n");
            }
        }
        text
    }

    fn start_daemons(&mut self) {
        let dir = self.dir.path().to_path_buf();
        let socket = dir.join("munge.sock");
        let munged = self.spawn("munged", false, |cmd| {
            cmd.args(["--foreground", "--force"])
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--key-file={}", dir.join("munge.key").display()))
                .arg(format!("--pid-file={}", dir.join("munged.pid").display()))
                .arg(format!("--log-file={}", dir.join("log/munged.log").display()))
                .arg(format!("--seed-file={}", dir.join("munged.seed").display()));
        });
        self.daemons.push(munged);
        self.until("munged made its socket", || std::fs::metadata(&socket).is_ok_and(|m| m.file_type().is_socket()));
        let conf = self.conf.clone();
        // -c: no state to recover; the directory is new.
        let slurmctld = self.spawn("slurmctld", true, |cmd| {
            cmd.args(["-D", "-c", "-f"]).arg(&conf);
        });
        self.daemons.push(slurmctld);
        // slurmd registers with the controller as it starts: once the controller answers, that first
        // registration succeeds, and the node's readiness does not hang on slurmd's retries.
        self.until("slurmctld answers", || {
            let out = self.command("scontrol").arg("ping").output();
            out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(" is UP"))
        });
        let slurmd = self.spawn("slurmd", true, |cmd| {
            cmd.args(["-D", "-N", NODE, "-f"]).arg(&conf);
        });
        self.daemons.push(slurmd);
        self.until("the node is idle", || {
            let out = self.command("sinfo").args(["-h", "-n", NODE, "-o", "%T"]).output();
            out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
        });
        for daemon in &mut self.daemons[1..] {
            let inner = child_of(daemon.child.0.id()).unwrap_or_else(|| panic!("{} has no process", daemon.name));
            let ns = pid_namespace(inner).unwrap_or_else(|| panic!("{}'s PID namespace is unreadable", daemon.name));
            self.namespaces.push(ns);
            daemon.inner = Some(inner);
        }
    }

    /// Starts `program` (one of [`PROGRAMS`]) with its output in `log/NAME.out`, in a PID namespace of its
    /// own if `in_namespace`, killed when this thread exits.
    fn spawn(&self, name: &'static str, in_namespace: bool, args: impl FnOnce(&mut Command)) -> Daemon {
        let output = self.dir.path().join(format!("log/{name}.out"));
        let file = File::create(&output).expect("create daemon output file");
        let mut cmd = if in_namespace {
            let mut cmd = Command::new(&self.programs["unshare"]);
            cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc"]).arg(&self.programs[name]);
            cmd
        } else {
            Command::new(&self.programs[name])
        };
        args(&mut cmd);
        cmd.env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone output file"))
            .stderr(file);
        die_with_this_thread(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Daemon { name, child: KillOnDrop(child), inner: None }
    }

    /// Polls `ready` until it holds; panics with the logs if a daemon exits or [`START_LIMIT`] passes.
    fn until(&self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if ready() {
                return;
            }
            // An exited daemon is a zombie until its drop reaps it (an `unshare` exits with its daemon).
            if let Some(daemon) = self.daemons.iter().find(|d| !is_alive(d.child.0.id())) {
                panic!("{} exited before {what}\n{}", daemon.name, self.diagnostics());
            }
            if Instant::now() > deadline {
                panic!("the Slurm cluster did not start: not {what} after {START_LIMIT:?}\n{}", self.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls until every task of `job` is in a state `done` accepts; returns (state, exit code) by index.
    fn wait_for(&self, job: &ArrayJob, limit: Duration, what: &str, done: fn(&str) -> bool) -> Vec<(String, String)> {
        let tasks = job.outputs.len() as u32;
        let deadline = Instant::now() + limit;
        loop {
            let states = self.task_states(job.id);
            if let Some(index) = states.keys().find(|&&i| i >= tasks) {
                panic!("array job {}: task {index}, but {tasks} tasks were expected: {states:?}", job.id);
            }
            if (0..tasks).all(|i| states.get(&i).is_some_and(|(state, _)| done(state))) {
                return states.into_values().take(tasks as usize).collect();
            }
            if Instant::now() > deadline {
                let _ = self.command("scancel").arg(job.id.to_string()).status();
                panic!(
                    "array job {}: not every task {what} after {limit:?}: {states:?}\n{}",
                    job.id,
                    self.diagnostics()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Each task's (state, exit code) by index, from `scontrol -o show job ID` (one line per task; a pending
    /// remainder of the array shows as one line with a range of indices, which is left out).
    fn task_states(&self, id: u32) -> BTreeMap<u32, (String, String)> {
        let Ok(out) = self.command("scontrol").args(["-o", "show", "job"]).arg(id.to_string()).output() else {
            return BTreeMap::new();
        };
        let mut states = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let field = |key: &str| line.split_whitespace().find_map(|f| f.strip_prefix(key)).map(str::to_string);
            let index = field("ArrayTaskId=").and_then(|i| i.parse::<u32>().ok());
            if let (Some(index), Some(state), Some(exit)) = (index, field("JobState="), field("ExitCode=")) {
                states.insert(index, (state, exit));
            }
        }
        states
    }

    fn stop(&mut self) -> Result<(), String> {
        if self.daemons.is_empty() {
            return Ok(());
        }
        let before = self.processes();
        // slurmd first, so no job is left waiting for it; then the controller; munged last, which both use.
        while let Some(daemon) = self.daemons.pop() {
            daemon.stop();
        }
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            let mut left: Vec<(u32, String)> = before.iter().filter(|(pid, _)| is_alive(*pid)).cloned().collect();
            let newer: Vec<(u32, String)> = self.processes().into_iter().filter(|p| !left.contains(p)).collect();
            left.extend(newer);
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "processes of the Slurm cluster still alive {STOP_LIMIT:?} after it was killed: {left:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        let Err(leftovers) = self.stop() else { return };
        if std::thread::panicking() {
            eprintln!("{leftovers}");
        } else {
            panic!("{leftovers}");
        }
    }
}

/// A daemon this cluster started: munged itself, or the `unshare` whose only child is slurmctld or slurmd.
struct Daemon {
    name: &'static str,
    /// SIGKILL on drop; for `unshare`, `--kill-child` passes it on to the daemon, whose namespace then dies.
    child: KillOnDrop,
    /// The daemon under `unshare` (the first process of its PID namespace), once the cluster is up.
    inner: Option<u32>,
}

impl Daemon {
    /// Kills the daemon and reaps it. The daemon under `unshare` is killed first, so that `unshare` reaps it
    /// and exits: killing `unshare` first would leave the daemon a zombie of this machine's init, which in
    /// some VMs reaps late.
    fn stop(mut self) {
        let Some(inner) = self.inner else { return };
        // Only while it is still `unshare`'s child: then its pid cannot have been reused.
        let parent = self.child.0.id().to_string();
        if stat_fields(inner).is_some_and(|f| f.get(1) == Some(&parent)) {
            // Safety: kill has no memory preconditions; `inner` is our grandchild, checked just above.
            unsafe { libc::kill(inner as libc::pid_t, libc::SIGKILL) };
        }
        // It kills `unshare` if it has not exited by then; dropping `self` reaps it either way.
        let _ = self.child.wait_timeout(Duration::from_secs(5));
    }
}

/// Whether a job state is one a job does not leave (`COMPLETING` is not: its processes may still run).
fn is_final(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "CANCELLED"
            | "TIMEOUT"
            | "NODE_FAIL"
            | "PREEMPTED"
            | "BOOT_FAIL"
            | "DEADLINE"
            | "OUT_OF_MEMORY"
    )
}

/// The configuration; `ports` are slurmctld's and slurmd's.
fn slurm_conf(dir: &Path, ports: [u16; 2]) -> String {
    let d = dir.display();
    let [ctld_port, slurmd_port] = ports;
    format!(
        "# A private test cluster (mover/tests/common/slurm.rs).
ClusterName=movertest
# slurmctld accepts `localhost` as its own name, whatever this machine is called.
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
# slurmd listens on its NodeAddr only, not on every address.
CommunicationParameters=NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={d}/munge.sock
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
# No cgroups, accounting or mail: nothing outside this directory is needed.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
MpiDefault=none
SwitchType=switch/none
# The builtin scheduler starts jobs as they are submitted; backfill would wait for its next pass.
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# Finished jobs stay visible to scontrol for five minutes, long enough to read how each task ended.
MinJobAge=300
KillWait=2
InactiveLimit=0
# The node claims 32 CPUs whatever the machine has, so that every task of an array runs at once on a CI
# machine's 2 cores: the 8 tasks of 4 CPUs of dist/examples/shard-array.sbatch too.
SlurmdParameters=config_overrides
NodeName={NODE} NodeAddr=127.0.0.1 CPUs=32 State=UNKNOWN
PartitionName=test Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"
    )
}

/// Each program's path, from `PATH` and the sbin directories (not on every user's `PATH`), or the name of
/// the first one missing.
fn find_programs() -> Result<BTreeMap<&'static str, PathBuf>, &'static str> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]).collect();
    let mut found = BTreeMap::new();
    for name in PROGRAMS {
        let program = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()).ok_or(name)?;
        found.insert(name, program);
    }
    Ok(found)
}

/// Two distinct ports free on loopback now. Another process may take one before the daemons bind it; the
/// start then fails with the daemon's log saying so, which is rare enough for a test.
fn free_ports() -> [u16; 2] {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    // Both listeners are held until both ports are known, so the two differ.
    let (a, b) = (bind(), bind());
    [a.local_addr().unwrap().port(), b.local_addr().unwrap().port()]
}

/// A fresh random munge key, readable by root only (munged refuses any other).
fn write_munge_key(path: &Path) {
    let mut key = [0u8; 1024];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key)).expect("read /dev/urandom");
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).expect("key");
    std::io::Write::write_all(&mut file, &key).expect("write munge key");
}

/// Makes `cmd`'s process get SIGKILL when the thread that spawns it exits.
fn die_with_this_thread(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // Safety: the closure runs in the forked child before exec and only calls prctl, which is
    // async-signal-safe, with integer arguments.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Every process id in /proc.
fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

/// The fields of /proc/PID/stat after the command name (which may hold spaces): state, ppid, ...
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_string).collect())
}

/// Whether `pid` is a process that has not exited (a zombie has: it only waits to be reaped).
fn is_alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|state| state != "Z" && state != "X"))
}

/// The first process whose parent is `parent`, waiting briefly for it: `unshare --fork` forks at once.
fn child_of(parent: u32) -> Option<u32> {
    let parent = parent.to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let child = all_pids().into_iter().find(|&pid| stat_fields(pid).is_some_and(|f| f.get(1) == Some(&parent)));
        if child.is_some() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// The PID namespace of a process, as `pid:[INODE]`.
fn pid_namespace(pid: u32) -> Option<String> {
    Some(std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?.to_string_lossy().into_owned())
}

/// A process's command line, arguments joined by spaces.
fn command_line(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> =
        raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into()).collect();
    args.join(" ")
}
