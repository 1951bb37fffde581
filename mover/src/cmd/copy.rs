//! `mover copy` between two remote ends: what it prints around
//! [`session::copy_third_party`](crate::session::copy_third_party). With one local end `main` runs a push or a
//! pull instead.

use super::progress::event::End;
use super::progress::ProgressArgs;
use crate::exit::{ExitClass, Failed};
use crate::session::{copy_third_party, CopyOptions};

/// Runs the copy and prints: the transfer's id on stderr as soon as it is known (unless `quiet`), the
/// progress the sending end reports, its summary line, and with `json` its report with `transfer` first.
pub fn run(opts: &CopyOptions, json: bool, progress: &ProgressArgs) -> Result<(), Failed> {
    let display = progress.start(opts.push.live.clone(), End::Receiving)?;
    let summary = display.prints_summary();
    let announce = |transfer: &str| {
        if summary {
            display.pause();
            eprintln!(
                "mover copy: transfer {transfer}: the sending end pushes straight to {}; `mover status {transfer} \
                 --server {}` follows it from anywhere",
                opts.push.url,
                server_of_dest(&opts.push.url)
            );
            display.resume();
        }
    };
    match copy_third_party(opts, &announce) {
        Ok(out) => {
            let failed = (out.exit_code != 0).then(|| out.summary.clone());
            display.end(failed.as_deref().map_or(Ok(()), Err));
            if out.exit_code == 0 && summary {
                eprintln!("mover copy: {}", out.summary);
            }
            if json {
                let body = out.json.strip_prefix('{').unwrap_or(&out.json);
                let sep = if body.starts_with('}') { "" } else { "," };
                super::packaging::print_stdout_line(&format!("{{\"transfer\":\"{}\"{sep}{body}", out.transfer));
            }
            match failed {
                None => Ok(()),
                Some(message) => Err(Failed { class: ExitClass::from_code(out.exit_code), message }),
            }
        }
        Err(e) => {
            let message = e.to_string();
            display.end(Err(&message));
            Err(Failed { class: e.exit_class(), message })
        }
    }
}

fn server_of_dest(dest: &str) -> String {
    match crate::connect::MoverUrl::parse(dest) {
        Ok(u) => crate::session::server_of(&u),
        Err(_) => dest.to_string(),
    }
}
