//! `mover status ID --server mover://HOST[:PORT]`: the state of a striped transfer at its receiving daemon,
//! once or until it ends (`--wait`).

use super::args::ClientAuthArgs;
use crate::exit::{ExitClass, Failed};
use crate::json::JsonObject;
use crate::rate::format_bytes;
use crate::session::transfer_status;
use crate::wire::control::{transfer_state, TransferStatus};
use std::time::Duration;

/// `mover status`'s flags.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The transfer's id, as `push --via` printed it (`transfer` in its JSON).
    pub id: String,
    /// The receiving daemon, mover://HOST[:PORT].
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// Ask again every second until the transfer has ended.
    #[arg(long)]
    pub wait: bool,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// How to authenticate to the daemon.
    #[command(flatten)]
    pub auth: ClientAuthArgs,
}

/// The state's name in the text and the JSON.
pub fn state_name(state: u8) -> &'static str {
    match state {
        transfer_state::RUNNING => "running",
        transfer_state::DONE => "done",
        transfer_state::FAILED => "failed",
        _ => "unknown",
    }
}

/// Asks, prints, and fails (exit 1) when the transfer failed or is unknown to the daemon.
pub fn run(a: &StatusArgs) -> Result<(), Failed> {
    let fail = |class: ExitClass, message: String| Failed { class, message };
    let auth = a.auth.resolve().map_err(|e| fail(e.exit_class(), e.to_string()))?;
    let s = loop {
        let s = transfer_status(&a.server, &auth, &a.id, Duration::from_secs(10))
            .map_err(|e| fail(e.exit_class(), e.to_string()))?;
        if !a.wait || s.state != transfer_state::RUNNING {
            break s;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    if a.json {
        super::packaging::print_stdout_line(&to_json(&a.id, &s));
    } else if s.state != transfer_state::UNKNOWN {
        println!("{}", describe(&a.id, &s));
    }
    match s.state {
        transfer_state::FAILED => Err(fail(ExitClass::Failure, format!("transfer {} failed: {}", a.id, s.message))),
        transfer_state::UNKNOWN => Err(fail(
            ExitClass::Failure,
            format!(
                "{} knows no transfer {} (a daemon forgets ended transfers when it restarts): check the id and --server",
                a.server, a.id
            ),
        )),
        _ => Ok(()),
    }
}

/// One line for a person.
pub fn describe(id: &str, s: &TransferStatus) -> String {
    let progress = format!(
        "{}/{} files, {} of {}",
        s.files_done,
        s.files_total,
        format_bytes(s.bytes_done),
        format_bytes(s.bytes_total)
    );
    match s.state {
        transfer_state::DONE => format!("transfer {id}: done: {progress}, verified and committed"),
        transfer_state::RUNNING => format!("transfer {id}: running: {progress} verified and committed so far"),
        transfer_state::FAILED => format!("transfer {id}: failed after {progress}: {}", s.message),
        _ => format!("transfer {id}: unknown"),
    }
}

/// The `--json` object.
pub fn to_json(id: &str, s: &TransferStatus) -> String {
    let j = JsonObject::new()
        .str("transfer", id)
        .str("state", state_name(s.state))
        .u64("files_done", s.files_done)
        .u64("files_total", s.files_total)
        .u64("bytes_done", s.bytes_done)
        .u64("bytes_total", s.bytes_total);
    let j = if s.message.is_empty() { j } else { j.str("error", &s.message) };
    j.finish()
}
