//! `mover man` and `mover completions` (issue 17 item 6): the pages and scripts are generated from the clap
//! definition, so these tests compare them with what the binary itself says in `--help`, which is read
//! independently of the generators: every command has a page, every page names every flag of its command,
//! `man -l` renders each page, and bash's completion loads and completes subcommands and flags.

mod common;

use common::{mover, skip_or_fail, TempDir};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

/// `mover ARGS`, which must succeed; its stdout.
fn stdout_of(args: &[&str]) -> String {
    let out = mover().args(args).output().expect("run mover");
    assert!(out.status.success(), "mover {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The subcommands listed under `Commands:` in a `--help` text (clap's own `help` left out).
fn subcommands(help: &str) -> Vec<String> {
    let Some(start) = help.find("Commands:\n") else { return Vec::new() };
    help[start + "Commands:\n".len()..]
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The long flags an option line of `--help` starts with (`  -h, --help`, `      --listen <LISTEN>`).
fn long_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split([' ', ',', '=', '<', '[']).find(|t| t.starts_with("--")).map(str::to_string))
        .collect()
}

/// Every command path (`[]`, `["push"]`, `["bench", "net"]`, ...) reachable from `mover --help`.
fn command_paths() -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut pending = vec![Vec::<String>::new()];
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        for sub in subcommands(&stdout_of(&args)) {
            let mut child = path.clone();
            child.push(sub);
            pending.push(child);
        }
        found.push(path);
    }
    found
}

/// A page's roff source with its escaped hyphens (`\-\-rate`) made plain.
fn page_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())).replace("\\-", "-")
}

#[test]
fn man_pages_cover_every_command_and_flag() {
    let dir = TempDir::new("h3-man");
    let out = mover().args(["man", "--dir"]).arg(dir.path()).output().expect("run mover man");
    assert!(out.status.success(), "mover man --dir: {}", String::from_utf8_lossy(&out.stderr));

    let paths = command_paths();
    assert!(paths.len() >= 10, "expected the top command and its subcommands, found {paths:?}");
    let expected: BTreeSet<String> = paths
        .iter()
        .map(|p| std::iter::once("mover".to_string()).chain(p.iter().cloned()).collect::<Vec<_>>())
        .map(|names| format!("{}.1", names.join("-")))
        .collect();
    let written: BTreeSet<String> = std::fs::read_dir(dir.path())
        .expect("read man dir")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written, expected, "one page per command, named mover-SUB.1");
    // What `--dir` reports on stderr is the list it wrote.
    let reported: BTreeSet<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| Path::new(l).file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    assert_eq!(reported, expected);

    for path in &paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let flags = long_flags(&stdout_of(&args));
        assert!(flags.contains("--help"), "{args:?} lists no --help: parsing the help text failed");
        if path == &["push"] {
            assert!(flags.contains("--rate") && flags.contains("--remote-root") && flags.len() > 25, "{flags:?}");
        }
        let page = dir.path().join(format!("mover{}.1", path.iter().map(|s| format!("-{s}")).collect::<String>()));
        let text = page_text(&page);
        for flag in &flags {
            assert!(text.contains(flag.as_str()), "{} does not mention {flag}", page.display());
        }
    }
    // A flag of each kind, checked by name: the parsing above found real flags, not nothing.
    assert!(page_text(&dir.path().join("mover-push.1")).contains("--remote-root"));
    assert!(page_text(&dir.path().join("mover-serve.1")).contains("--max-sessions"));
    assert!(page_text(&dir.path().join("mover-bench-net.1")).contains("--seconds"));
}

#[test]
fn man_pages_render_with_man() {
    if Command::new("man").arg("--version").output().is_err() {
        skip_or_fail("man_pages_render_with_man", "man is not installed (apt-get install man-db)");
        return;
    }
    let dir = TempDir::new("h3-man-render");
    let out = mover().args(["man", "--dir"]).arg(dir.path()).output().expect("run mover man");
    assert!(out.status.success());
    for page in ["mover.1", "mover-push.1", "mover-pull.1", "mover-serve.1", "mover-bench-disk.1"] {
        let rendered = render(&dir.path().join(page));
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(rendered.status.success(), "man -l {page}: {}", String::from_utf8_lossy(&rendered.stderr));
        assert!(text.contains("NAME") && text.contains("SYNOPSIS") && text.contains("OPTIONS"), "{page}:\n{text}");
    }
    let push = String::from_utf8_lossy(&render(&dir.path().join("mover-push.1")).stdout).into_owned();
    assert!(push.contains("--policy") && push.contains("--ssh"), "rendered mover-push.1:\n{push}");
    // Without --dir, the top page goes to stdout and renders the same way.
    let top = dir.path().join("stdout.1");
    std::fs::write(&top, stdout_of(&["man"])).expect("write page");
    let text = String::from_utf8_lossy(&render(&top).stdout).into_owned();
    for sub in ["mover-push(1)", "mover-serve(1)", "mover-completions(1)"] {
        assert!(text.contains(sub), "mover man lacks {sub}:\n{text}");
    }
}

/// `man -l PAGE` as plain ASCII text, wide enough that no flag is hyphenated across lines.
fn render(page: &Path) -> Output {
    Command::new("man")
        .arg("-l")
        .arg(page)
        .env("LC_ALL", "C")
        .env("MANWIDTH", "250")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .expect("run man")
}

#[test]
fn man_into_an_unwritable_dir_is_one_clear_error() {
    let dir = TempDir::new("h3-man-file");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").expect("write file");
    let out = mover().args(["man", "--dir"]).arg(file.join("sub")).output().expect("run mover man");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("mover: error: cannot write man pages into "), "{stderr}");
    assert!(stderr.contains("--dir"), "the error names the fix: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// Runs `script` in bash with the completion of `mover` loaded; its stdout.
fn bash_with_completion(script: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source <(\"$MOVER\" completions bash) || exit 9\n{script}"))
        .env("MOVER", env!("CARGO_BIN_EXE_mover"))
        .output()
        .expect("run bash");
    assert!(out.status.success(), "bash: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// What bash completes for the words `line` (the cursor after the last word).
fn bash_complete(line: &[&str]) -> Vec<String> {
    let words = line.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" ");
    let script = format!(
        "COMP_WORDS=({words}); COMP_CWORD={}; COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}\n\
         _mover mover \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        line.len() - 1
    );
    bash_with_completion(&script).lines().map(str::to_string).collect()
}

#[test]
fn bash_completion_loads_and_completes() {
    let registered = bash_with_completion("complete -p mover");
    assert!(registered.contains("-F _mover") && registered.trim_end().ends_with(" mover"), "{registered}");

    let subs = bash_complete(&["mover", "pu"]);
    assert!(subs.contains(&"push".to_string()) && subs.contains(&"pull".to_string()), "{subs:?}");
    assert!(!subs.contains(&"serve".to_string()), "only words starting with pu: {subs:?}");
    let flags = bash_complete(&["mover", "push", "--remote-"]);
    assert!(flags.contains(&"--remote-root".to_string()) && flags.contains(&"--remote-mover".to_string()), "{flags:?}");
    let nested = bash_complete(&["mover", "bench", ""]);
    for sub in ["net", "disk", "cipher"] {
        assert!(nested.contains(&sub.to_string()), "bench completes {sub}: {nested:?}");
    }
    let shells = bash_complete(&["mover", "completions", ""]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.contains(&shell.to_string()), "{shells:?}");
    }
}

/// The zsh and fish scripts name every subcommand; where the shell is installed it also parses the script.
#[test]
fn zsh_and_fish_completions_name_the_subcommands() {
    let dir = TempDir::new("h3-completions");
    let commands = subcommands(&stdout_of(&["--help"]));
    for (shell, check) in [("zsh", ["-n"]), ("fish", ["--no-execute"])] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.len() > 1000, "{shell}: {} bytes", script.len());
        for sub in &commands {
            assert!(script.contains(sub.as_str()), "the {shell} script lacks {sub}");
        }
        let file = dir.path().join(format!("mover.{shell}"));
        std::fs::write(&file, &script).expect("write script");
        match Command::new(shell).args(check).arg(&file).output() {
            Ok(out) => assert!(out.status.success(), "{shell} {check:?}: {}", String::from_utf8_lossy(&out.stderr)),
            // Optional shells: their scripts are checked above by content; the syntax check needs the shell.
            Err(_) => eprintln!("note: {shell} is not installed: its completion script was not parsed"),
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = mover().args(["completions", "tcsh"]).output().expect("run mover");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bash, zsh, fish"), "the error lists the shells: {stderr}");
}
