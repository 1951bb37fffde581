//! The daemon's log: every line `mover serve` writes on stderr, as text (`mover serve: ...`, the default) or,
//! under `--log-format json`, as one JSON object per line with `ts`, `level`, `event`, `message` and the
//! event's fields.
//!
//! The format is process-wide ([`set_format`], once at the daemon's start): a process runs one daemon, and
//! its log lines come from many places (admission, the partial sweep, session threads). Lines that lower
//! floors print with `eprintln!` (a data-path fallback, an io_uring warning) cannot know the format, so in
//! JSON mode [`capture_stderr`] sends file descriptor 2 through a pipe and wraps every line that is not
//! already one of ours: every line on stderr is then valid JSON.

use crate::json::JsonObject;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `mover serve: <message> key=value ...`, for people.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("--log-format takes text or json, not '{s}'")),
        }
    }
}

impl LogFormat {
    /// Its name, as `--log-format` spells it.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// How serious a line is (the JSON `level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Normal operation: a session started or ended, the daemon listens.
    Info,
    /// Something the operator may want to look at (serving without authentication, a refused session).
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// Its name in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One field's value.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    /// A string (quoted in text when it holds a space).
    Str(&'a str),
    /// A count.
    U64(u64),
    /// A measurement.
    F64(f64),
}

static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Sets the format of every later line of this process.
pub fn set_format(format: LogFormat) {
    FORMAT.store(format as u8, Ordering::Relaxed);
}

/// The format lines are written in now.
pub fn format() -> LogFormat {
    if FORMAT.load(Ordering::Relaxed) == LogFormat::Json as u8 {
        LogFormat::Json
    } else {
        LogFormat::Text
    }
}

/// Writes one line on stderr in the process's format.
pub fn log(level: Level, event: &str, message: &str, fields: &[(&str, Value)]) {
    eprintln!("{}", line(format(), level, event, message, fields, SystemTime::now()));
}

/// [`log`] with `fields` only in JSON: for lines whose text already says everything.
pub fn log_json_fields(level: Level, event: &str, message: &str, fields: &[(&str, Value)]) {
    log(level, event, message, if format() == LogFormat::Json { fields } else { &[] });
}

/// [`log`] at [`Level::Info`] without fields.
pub fn info(event: &str, message: &str) {
    log(Level::Info, event, message, &[]);
}

/// [`log`] at [`Level::Warn`] without fields.
pub fn warn(event: &str, message: &str) {
    log(Level::Warn, event, message, &[]);
}

/// One line's text (without the newline). Text: `mover serve: <message>` and ` key=value` per field;
/// JSON: `{"ts":..,"level":..,"event":..,"message":.., fields...}`.
pub fn line(
    format: LogFormat,
    level: Level,
    event: &str,
    message: &str,
    fields: &[(&str, Value)],
    at: SystemTime,
) -> String {
    match format {
        LogFormat::Text => {
            let mut out = format!("mover serve: {message}");
            for (k, v) in fields {
                let v = match v {
                    Value::Str(s) if s.is_empty() || s.contains([' ', '"', '=']) => format!("{s:?}"),
                    Value::Str(s) => s.to_string(),
                    Value::U64(n) => n.to_string(),
                    // Rates in whole bits per second, durations to the millisecond.
                    Value::F64(x) if x.abs() >= 1000.0 => format!("{x:.0}"),
                    Value::F64(x) => format!("{x:.3}"),
                };
                out.push_str(&format!(" {k}={v}"));
            }
            out
        }
        LogFormat::Json => {
            let mut j = JsonObject::new()
                .str("ts", &timestamp(at))
                .str("level", level.name())
                .str("event", event)
                .str("message", message);
            for (k, v) in fields {
                j = match v {
                    Value::Str(s) => j.str(k, s),
                    Value::U64(n) => j.u64(k, *n),
                    Value::F64(x) => j.f64(k, *x),
                };
            }
            j.finish()
        }
    }
}

/// `2026-12-02T12:14:34.123Z`: RFC 3339 in UTC, milliseconds.
pub fn timestamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = crate::net::tls_words::civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The JSON form of a line some other part of the process printed (not one of ours): `event` "stderr",
/// the line as its `message`, and a level guessed from its words.
pub fn wrap_foreign(text: &str, at: SystemTime) -> String {
    let lower = text.to_ascii_lowercase();
    let level = if lower.contains("error") || lower.contains("panicked") {
        Level::Error
    } else if lower.contains("warning") {
        Level::Warn
    } else {
        Level::Info
    };
    line(LogFormat::Json, level, "stderr", text, &[], at)
}

/// True for a line this logger wrote in JSON mode.
fn is_ours(text: &str) -> bool {
    text.starts_with("{\"ts\":") && text.ends_with('}')
}

static CAPTURED: AtomicBool = AtomicBool::new(false);
/// Set by the pipe's reader once it has written everything (the write end is closed at exit).
static DRAINED: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());
/// The real stderr, kept while fd 2 is the pipe, so that the exit handler can put it back.
static REAL_STDERR: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// In JSON mode, makes every line on stderr JSON: fd 2 becomes a pipe whose reader thread passes our
/// lines through and wraps the others ([`wrap_foreign`]) onto the real stderr. At exit (a return from
/// `main` or `process::exit`) the real stderr is put back and the reader drained, so the last lines (the
/// `mover: error:` of a failed `--once`) are not lost. Idempotent; does nothing in text mode.
pub fn capture_stderr() -> std::io::Result<()> {
    if format() != LogFormat::Json || CAPTURED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let mut fds = [0; 2];
    // Safety: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Safety: both descriptors were just created and are owned here.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Safety: fcntl on fd 2, which every process has (or fails with EBADF).
    let real = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
    if real < 0 {
        return Err(std::io::Error::last_os_error());
    }
    REAL_STDERR.store(real, Ordering::SeqCst);
    // Safety: dup2 of a descriptor we own onto fd 2; `write` is closed when dropped, fd 2 keeps the pipe.
    if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&write), 2) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    drop(write);
    std::thread::Builder::new().name("log-stderr".into()).spawn(move || {
        // Safety: `real` is our duplicate of the original stderr, closed only by this thread's end.
        let mut out = unsafe { std::fs::File::from_raw_fd(real) };
        for text in BufReader::new(std::fs::File::from(read)).lines().map_while(Result::ok) {
            let text = if is_ours(&text) { text } else { wrap_foreign(&text, SystemTime::now()) };
            let _ = writeln!(out, "{text}");
        }
        let (lock, cv) = &DRAINED;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        std::mem::forget(out);
    })?;
    // Safety: registers a plain `extern "C" fn()` that runs at exit.
    unsafe { libc::atexit(restore_stderr_at_exit) };
    Ok(())
}

/// At exit: fd 2 goes back to the real stderr (closing the pipe's last write end), then waits (at most a
/// second) for the reader to write what was still in the pipe.
extern "C" fn restore_stderr_at_exit() {
    let real = REAL_STDERR.load(Ordering::SeqCst);
    if real < 0 {
        return;
    }
    // Safety: dup2 of the saved stderr back onto fd 2.
    unsafe { libc::dup2(real, 2) };
    let (lock, cv) = &DRAINED;
    let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
    let _ = cv.wait_timeout_while(guard, Duration::from_secs(1), |done| !*done);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_keep_the_old_prefix_and_quote_what_needs_it() {
        let l = line(
            LogFormat::Text,
            Level::Info,
            "session_start",
            "session 3 started",
            &[("peer", Value::Str("127.0.0.1:5")), ("dest", Value::Str("a b")), ("bytes", Value::U64(7))],
            UNIX_EPOCH,
        );
        assert_eq!(l, "mover serve: session 3 started peer=127.0.0.1:5 dest=\"a b\" bytes=7");
    }

    #[test]
    fn json_lines_have_ts_level_event_and_fields() {
        let at = UNIX_EPOCH + Duration::from_millis(1_764_677_674_123);
        let l = line(LogFormat::Json, Level::Warn, "e", "m \"q\"", &[("x", Value::F64(1.5))], at);
        assert_eq!(l, r#"{"ts":"2025-12-02T12:14:34.123Z","level":"warn","event":"e","message":"m \"q\"","x":1.5}"#);
        assert!(is_ours(&l));
        let w = wrap_foreign("mover: warning: io_uring unavailable", at);
        assert!(is_ours(&w) && w.contains(r#""level":"warn","event":"stderr""#), "{w}");
    }

    #[test]
    fn formats_parse_by_name() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>().map(LogFormat::name), Ok("text"));
        assert!("yaml".parse::<LogFormat>().unwrap_err().contains("text or json"));
    }
}
