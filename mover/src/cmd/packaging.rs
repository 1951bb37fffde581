//! `mover completions SHELL` and `mover man [--dir DIR]`: shell completions and man pages generated from
//! the command-line definition itself, so they can never drift from the flags `mover` accepts
//! (docs/decisions/0017-packaging.md). `main.rs` passes its `clap::Command`; nothing here knows the flags.
//! Also how output to a closed stdout ends (`mover ... | head`): quietly, never with a panic.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The shells `mover completions` writes for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    /// GNU bash (load with `source <(mover completions bash)`).
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

/// Arguments of `mover completions`.
#[derive(clap::Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for (on stdout).
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Arguments of `mover man`.
#[derive(clap::Args, Debug, Clone)]
pub struct ManArgs {
    /// Write one page per command into DIR (mover.1, mover-push.1, mover-bench-net.1, ...), created if
    /// missing; without it, mover.1 alone goes to stdout (`mover man | man -l -`).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Writes the completion script for `args.shell` of the command `cmd` (named `mover`) on stdout.
pub fn completions(mut cmd: clap::Command, args: &CompletionsArgs) -> Result<(), String> {
    let mut out = Vec::new();
    write_completions(&mut cmd, args.shell, &mut out);
    write_stdout(&out)
}

/// The completion script for `shell` of `cmd`, appended to `out`.
pub fn write_completions(cmd: &mut clap::Command, shell: Shell, out: &mut Vec<u8>) {
    let name = cmd.get_name().to_string();
    match shell {
        Shell::Bash => clap_complete::generate(clap_complete::Shell::Bash, cmd, name, out),
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, cmd, name, out),
        Shell::Fish => clap_complete::generate(clap_complete::Shell::Fish, cmd, name, out),
    }
}

/// Writes the man pages of `cmd`: all of them into `--dir` (naming each file on stderr), or the top page on
/// stdout.
pub fn man(cmd: clap::Command, args: &ManArgs) -> Result<(), String> {
    match &args.dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out).map_err(|e| format!("cannot render the man page: {e}"))?;
            write_stdout(&out)
        }
        Some(dir) => {
            for page in write_man_pages(cmd, dir)? {
                eprintln!("{}", page.display());
            }
            Ok(())
        }
    }
}

/// Writes one man page per command and subcommand of `cmd` (hidden ones excepted) into `dir`, creating it
/// if missing; returns the files written, the top page first.
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let cant = |e: std::io::Error| {
        format!("cannot write man pages into {}: {e}: give --dir a directory you may write", dir.display())
    };
    std::fs::create_dir_all(dir).map_err(cant)?;
    // Building the command gives each subcommand its display name (`mover-bench-net`), which names its page.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    let mut pending = vec![cmd];
    while let Some(cmd) = pending.pop() {
        pending.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        pages.push(clap_mangen::Man::new(cmd).generate_to(dir).map_err(cant)?);
    }
    Ok(pages)
}

/// Writes `bytes` on stdout; a closed pipe (`mover man | head`) is not an error worth a message.
fn write_stdout(bytes: &[u8]) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("cannot write to stdout: {e}")),
    }
}

/// Restores the default action of SIGPIPE, so a command whose stdout reader went away (`| head`) ends
/// quietly instead of panicking in `println!`. Only for commands that write to no pipe of their own (no ssh
/// child): a session must see `EPIPE` as an error it can report and retry.
pub fn die_quietly_on_closed_stdout() {
    // SAFETY: setting a signal's disposition to its default is async-signal-safe and touches no memory.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Writes `text` and a newline to stdout; a reader that went away (`| head`) is not an error of the
/// transfer, whose exit status stands.
pub fn print_stdout_line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}
