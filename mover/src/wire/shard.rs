//! Which shard of a job a run moves (`--shard I/N`): a value the `Pull` and `ThirdParty` messages carry, so
//! that the side that scans (the daemon, for a pull) keeps the shard. The cut itself is `files::shard`.

/// Which shard of how many this run moves: `index` in `0..count`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This run's shard, from 0.
    pub index: u32,
    /// How many shards the work is cut into (at least 1).
    pub count: u32,
}

/// The most shards a job may be cut into: far more nodes than any site runs one job on, and small enough
/// that a typo (`--shard 3/30000`) is caught.
pub const MAX_SHARDS: u32 = 10_000;

impl Shard {
    /// The whole set: one shard of one.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Whether this is the whole set.
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }

    /// Parses `--shard`: `I/N` (I from 0), `auto` (a Slurm array task: `SLURM_ARRAY_TASK_ID` relative to
    /// `SLURM_ARRAY_TASK_MIN` and `SLURM_ARRAY_TASK_STEP`, of `SLURM_ARRAY_TASK_COUNT`), or `auto/N` (the
    /// index from Slurm or from a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX`, the count given).
    /// `env` looks up an environment variable (a parameter so that tests need not set the process's).
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, String> {
        let (what, count) = match text.split_once('/') {
            Some((what, n)) => (what, Some(parse_count(n, text)?)),
            None => (text, None),
        };
        let shard = if what == "auto" {
            auto(env, count)?
        } else {
            let count = count.ok_or_else(|| format!("--shard '{text}': use I/N (for example 0/4), auto or auto/N"))?;
            let index = what
                .parse::<u32>()
                .map_err(|_| format!("--shard '{text}': the index '{what}' is not a number (use I/N, I from 0)"))?;
            Shard { index, count }
        };
        if shard.index >= shard.count {
            return Err(format!(
                "--shard {}/{}: the index must be below the count (shards are numbered from 0)",
                shard.index, shard.count
            ));
        }
        Ok(shard)
    }
}

impl Default for Shard {
    fn default() -> Shard {
        Shard::WHOLE
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

fn parse_count(n: &str, text: &str) -> Result<u32, String> {
    match n.parse::<u32>() {
        Ok(n) if (1..=MAX_SHARDS).contains(&n) => Ok(n),
        _ => Err(format!("--shard '{text}': the count '{n}' must be a number from 1 to {MAX_SHARDS}")),
    }
}

/// The index (and count) a scheduler gave this task.
fn auto(env: &dyn Fn(&str) -> Option<String>, count: Option<u32>) -> Result<Shard, String> {
    let number = |name: &str| -> Result<Option<u64>, String> {
        match env(name) {
            None => Ok(None),
            Some(v) => {
                v.trim().parse::<u64>().map(Some).map_err(|_| format!("--shard auto: {name}='{v}' is not a number"))
            }
        }
    };
    if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
        let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        let slurm_count = number("SLURM_ARRAY_TASK_COUNT")?;
        let index = id
            .checked_sub(min)
            .map(|d| d / step)
            .ok_or_else(|| format!("--shard auto: SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"))?;
        let count = match (count, slurm_count) {
            (Some(given), Some(s)) if u64::from(given) != s => {
                return Err(format!(
                    "--shard auto/{given}: the Slurm array has {s} tasks (SLURM_ARRAY_TASK_COUNT); use --shard auto"
                ))
            }
            (Some(given), _) => given,
            (None, Some(s)) => u32::try_from(s)
                .ok()
                .filter(|s| (1..=MAX_SHARDS).contains(s))
                .ok_or_else(|| format!("--shard auto: SLURM_ARRAY_TASK_COUNT {s} is not from 1 to {MAX_SHARDS}"))?,
            (None, None) => {
                return Err("--shard auto: SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT; give the \
                            count: --shard auto/N"
                    .into())
            }
        };
        let index = u32::try_from(index).map_err(|_| format!("--shard auto: task index {index} is too large"))?;
        return Ok(Shard { index, count });
    }
    if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let count = count.ok_or(
            "--shard auto: a Kubernetes Indexed Job gives JOB_COMPLETION_INDEX but not the count; use --shard \
             auto/N with N = the Job's completions",
        )?;
        let index =
            u32::try_from(index).map_err(|_| format!("--shard auto: JOB_COMPLETION_INDEX {index} is too large"))?;
        return Ok(Shard { index, count });
    }
    Err("--shard auto: no scheduler index in the environment (SLURM_ARRAY_TASK_ID from a Slurm array job, or \
         JOB_COMPLETION_INDEX from a Kubernetes Indexed Job); use --shard I/N"
        .into())
}

/// A file larger than this is cut into ranges of [`piece_bytes`] that may go to different shards. Shards
/// balance to within one unit, so the range size bounds the imbalance: with 64 MiB (until 2026-12-03) the
/// largest of 4 shards of a 1.5 GiB tree was 13% above the mean (decision 0036).
pub const SPLIT_ABOVE_BYTES: u64 = 16 << 20;

/// The range size of a file of `size` bytes: 16 MiB, or a 1024th of the file (rounded up to a MiB) for files
/// over 16 GiB, so no file has more than 1024 ranges (each range is a manifest entry and a journal on the
/// receiver). A function of the file's size alone, so every node cuts a file the same way; a receiver refuses
/// ranges of another size ([`Piece::is_on_layout`]), so a sharded job's nodes and receiver run versions that
/// agree on it.
pub fn piece_bytes(size: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    let base = SPLIT_ABOVE_BYTES;
    base.max(size.div_ceil(1024).div_ceil(MIB) * MIB)
}

/// One range of a file split between shards: the manifest entry's `size` is the range's length, and these
/// say where it lies in the whole file (PROTOCOL.md §3.2).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The range's first byte in the file: a multiple of [`piece_bytes`] of `file_size`.
    pub offset: u64,
    /// The whole file's size.
    pub file_size: u64,
}

impl Piece {
    /// Whether a range of `len` bytes at this offset is one of the ranges [`piece_bytes`] cuts the file
    /// into: the receiver assembles a file from exactly these, so any other range is refused.
    pub fn is_on_layout(&self, len: u64) -> bool {
        let p = piece_bytes(self.file_size);
        self.file_size > SPLIT_ABOVE_BYTES
            && self.offset % p == 0
            && self.offset < self.file_size
            && len == p.min(self.file_size - self.offset)
    }

    /// How many ranges the file has.
    pub fn count(&self) -> u64 {
        self.file_size.div_ceil(piece_bytes(self.file_size))
    }
}
