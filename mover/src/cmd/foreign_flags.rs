//! Flags that users of scp and rsync type out of habit (`-r`, `-a`, `-P`, `-z`, ...), met where clap finds
//! an unknown argument: instead of clap's tip (`to pass '-r' as a value, use '-- -r'`, which would make the
//! flag a file name), one `mover: error:` line that says what mover does instead. Any other unknown
//! argument gets clap's message without that tip.

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Resuming, for the flags that ask for it.
const RESUME: &str = "resume is automatic: an interrupted transfer keeps its partial files, and running the same \
                      command again sends only what is missing";
/// Metadata, for the flags that ask to keep it.
const METADATA: &str = "mover keeps modes, modification times, symlinks, hard links and sparse files by default; \
                        --preserve owner adds owners and groups, --xattrs extended attributes";

/// What mover does instead of the scp or rsync flag `flag` (as clap reports it: `-r`, `--archive`), if it
/// is one.
pub fn instead_of(flag: &str) -> Option<String> {
    let said = match flag {
        "-r" | "-R" | "--recursive" => "directories are always sent whole, with everything in them: drop it".into(),
        "-a" | "--archive" | "-p" | "--perms" | "-t" | "--times" | "-l" | "--links" | "-H" | "--hard-links" => {
            format!("{METADATA}: drop it")
        }
        "-P" => format!(
            "{RESUME}; for an SSH port (scp's -P) use --ssh 'ssh -p PORT'; for a mover daemon's port, \
             mover://HOST:PORT/DIR"
        ),
        "--partial" | "--append" | "--append-verify" | "--inplace" => format!("{RESUME}: drop it"),
        "-z" | "--compress" | "-C" => {
            "mover sends data as it is, without compression (at the rates it runs at, compressing costs more \
             time than it saves): drop it"
                .into()
        }
        "-e" | "--rsh" | "-i" | "-o" | "-F" | "-J" => {
            "ssh options go in --ssh, quoted as in a shell: --ssh \"ssh -p 2222 -i KEY -o 'ProxyJump jump'\"".into()
        }
        "--bwlimit" => "--rate sets the ceiling, in bits/s (500M, 2G)".into(),
        "-u" | "--update" => "--overwrite if-newer replaces only files whose source is newer".into(),
        "-c" => "--checksum compares content hashes instead of size and modification time".into(),
        "-v" | "--verbose" => "mover prints a summary at the end; --stats adds a per-stage table, --json one JSON \
                               object"
            .into(),
        _ => return None,
    };
    Some(format!("{flag} is an scp/rsync flag that mover does not take: {said}"))
}

/// Prints a command-line error and exits: the habit flags of [`instead_of`] in mover's words (exit 2,
/// usage), any other unknown argument as clap says it without the `'-- ARG'` tip, everything else
/// (`--help`, `--version` and the other errors) as clap prints it.
pub fn exit(error: clap::Error) -> ! {
    if error.kind() != ErrorKind::UnknownArgument {
        error.exit();
    }
    let arg = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => error.exit(),
    };
    // `-avz` is reported as its first unknown letter; `--bwlimit=1000` with its value.
    let flag = arg.split('=').next().unwrap_or(&arg);
    if let Some(said) = instead_of(flag) {
        eprintln!("mover: error: {said}");
        std::process::exit(crate::exit::ExitClass::Usage.code().into());
    }
    let text = error.render().to_string();
    let kept: Vec<&str> = text.lines().filter(|l| !(l.contains("tip:") && l.contains("'--"))).collect();
    eprintln!("{}", kept.join("\n").replace("\n\n\n", "\n\n"));
    std::process::exit(error.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn habit_flags_are_answered_in_words() {
        for (flag, words) in [
            ("-r", "always sent whole"),
            ("-a", "keeps modes, modification times"),
            ("-P", "resume is automatic"),
            ("-P", "--ssh 'ssh -p PORT'"),
            ("--partial", "resume is automatic"),
            ("-z", "without compression"),
            ("-e", "--ssh"),
            ("--bwlimit", "--rate"),
        ] {
            let said = instead_of(flag).unwrap_or_else(|| panic!("{flag} not known"));
            assert!(said.starts_with(&format!("{flag} is an scp/rsync flag")) && said.contains(words), "{said}");
        }
        assert_eq!(instead_of("--frobnicate"), None);
        assert_eq!(instead_of("-x"), None);
    }
}
