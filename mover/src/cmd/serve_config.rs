//! `mover serve --config FILE`, `--check-config`, `--metrics` and `--log-format`: the daemon as a service.
//!
//! A config file is TOML whose keys are `serve`'s long flag names (`listen`, `root`, `max-sessions`; `_`
//! may stand for `-`). It is read before clap parses the command line and becomes flags inserted right
//! after `serve` (`key = "v"` -> `--key=v`, `key = true` -> `--key`, `false` -> nothing, an array -> the
//! flag once per element, and for a flag whose values are `NAME=VALUE` pairs a table -> the flag once per
//! entry: `[user-max-rate]` with `alice = "200M"` is `--user-max-rate=alice=200M`), so every flag has a key
//! by construction and clap checks every value the same way. `serve` overrides repeated flags with the later one, so the command line wins over the file
//! (decision 0018). What a key may not be set to is reported with the file, its line and the key.

use crate::exit::{ExitClass, Failed};
use crate::session::daemon_log::LogFormat;
use crate::session::{check_serve, ServeOptions};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use toml::de::{DeTable, DeValue};

/// `mover serve`'s service flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ServiceArgs {
    /// Read settings from this TOML file: each key is a long flag's name (listen = "0.0.0.0:7400",
    /// root = "/srv/mover", max-sessions = 8, insecure-no-auth = false); flags given here override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the flags and --config file as the daemon would at start (the root, TLS files, tokens,
    /// addresses), print the effective settings as TOML, and exit without listening.
    #[arg(long)]
    pub check_config: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9400): bytes, files, sessions,
    /// packets, drops, per-session rates, admission and memory.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Log lines on stderr as text, or as json: one object per line with ts, level, event, message and
    /// the event's fields (every line on stderr, then, is JSON).
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// Flags a config file may not set: the file itself, the check, and clap's own.
pub const NOT_IN_FILE: &[&str] = &["config", "check-config", "help", "version"];

fn usage(message: String) -> Failed {
    Failed { class: ExitClass::Usage, message }
}

/// The `serve` subcommand of the whole command line's definition.
pub fn serve_command(cli: &Command) -> &Command {
    cli.find_subcommand("serve").expect("mover has a serve subcommand")
}

/// The keys a config file may hold: every long flag of `serve` but [`NOT_IN_FILE`], in definition order.
pub fn config_keys(serve: &Command) -> Vec<&str> {
    serve.get_arguments().filter_map(Arg::get_long).filter(|l| !NOT_IN_FILE.contains(l)).collect()
}

/// The command line with the flags of `serve --config FILE` inserted right after `serve` (the command line
/// as it is when there is no `serve` or no `--config`).
pub fn with_config_file(cli: &Command, argv: Vec<OsString>) -> Result<Vec<OsString>, Failed> {
    // The subcommand is the first word that is not a flag (mover's own flags take no values).
    let Some(at) = argv.iter().skip(1).position(|a| !a.to_string_lossy().starts_with('-')).map(|i| i + 1) else {
        return Ok(argv);
    };
    if argv[at] != "serve" {
        return Ok(argv);
    }
    let mut file = None;
    let mut rest = argv[at + 1..].iter();
    while let Some(a) = rest.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        } else if a == "--config" {
            file = rest.next().map(|f| PathBuf::from(f.clone()));
        } else if let Some(f) = a.strip_prefix("--config=") {
            file = Some(PathBuf::from(f));
        }
    }
    // Without a value clap says what is missing.
    let Some(file) = file else { return Ok(argv) };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| usage(format!("--config {}: cannot read it: {e}", file.display())))?;
    let flags = flags_from_toml(serve_command(cli), &text, &file.display().to_string())?;
    let mut out = argv[..=at].to_vec();
    out.extend(flags);
    out.extend_from_slice(&argv[at + 1..]);
    Ok(out)
}

/// The 1-based line of byte offset `at` in `text`.
pub(crate) fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The flags a config file's text stands for, each as `--key=value` or `--key`; `file` names it in errors.
pub fn flags_from_toml(serve: &Command, text: &str, file: &str) -> Result<Vec<OsString>, Failed> {
    let table = DeTable::parse(text).map_err(|e| {
        let line = e.span().map_or(String::new(), |s| format!(" line {}", line_of(text, s.start)));
        usage(format!("{file}{line}: not valid TOML: {}", e.message().trim_end()))
    })?;
    let keys = config_keys(serve);
    let mut seen: Vec<String> = Vec::new();
    let mut flags = Vec::new();
    for (key, value) in table.get_ref().iter() {
        let line = line_of(text, key.span().start);
        let given: &str = key.get_ref();
        let name = given.replace('_', "-");
        let at = format!("{file} line {line}");
        if NOT_IN_FILE.contains(&name.as_str()) {
            return Err(usage(format!(
                "{at}: '{given}' cannot be set in a config file: give --{name} on the command line"
            )));
        }
        let Some(arg) = serve.get_arguments().find(|a| a.get_long() == Some(name.as_str())) else {
            return Err(usage(unknown_key(&at, given, &keys)));
        };
        if seen.contains(&name) {
            return Err(usage(format!("{at}: '{given}' is set twice ('_' and '-' name the same key)")));
        }
        seen.push(name.clone());
        let value = value.get_ref();
        if !arg.get_action().takes_values() {
            match value {
                DeValue::Boolean(true) => flags.push(OsString::from(format!("--{name}"))),
                DeValue::Boolean(false) => {}
                other => {
                    return Err(usage(format!(
                        "{at}: '{given}' is a switch: write {name} = true or false, not a {}",
                        other.type_str()
                    )))
                }
            }
            continue;
        }
        let values: Vec<String> = match value {
            DeValue::Array(items) => items.iter().map(|v| scalar(v.get_ref(), &at, given)).collect::<Result<_, _>>()?,
            DeValue::Table(entries) if takes_pairs(arg) => entries
                .iter()
                .map(|(k, v)| Ok(format!("{}={}", k.get_ref(), scalar(v.get_ref(), &at, given)?)))
                .collect::<Result<_, Failed>>()?,
            v => vec![scalar(v, &at, given)?],
        };
        for v in values {
            check_value(arg, &v).map_err(|why| usage(format!("{at}: {name} = {}: {why}", toml_value(&v))))?;
            flags.push(OsString::from(format!("--{name}={v}")));
        }
    }
    Ok(flags)
}

/// Whether the flag's values are `NAME=VALUE` pairs (its value name says so), which a table may give.
fn takes_pairs(arg: &Arg) -> bool {
    arg.get_value_names().is_some_and(|names| names.iter().any(|n| n.as_str().contains('=')))
}

/// A value that stands for one flag value: a string, a number.
pub(crate) fn scalar(v: &DeValue, at: &str, key: &str) -> Result<String, Failed> {
    match v {
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            i128::from_str_radix(digits.trim_start_matches('+'), i.radix())
                .map(|n| n.to_string())
                .map_err(|e| usage(format!("{at}: '{key}': {e}")))
        }
        DeValue::Float(f) => Ok(f.as_str().replace('_', "")),
        other => Err(usage(format!(
            "{at}: '{key}' takes a value (a string or a number), not a {}: write {key} = \"...\"",
            other.type_str()
        ))),
    }
}

/// Runs the flag's own value parser on `value`, alone, so a bad value is reported with the file and line
/// (the whole command line's parse would name only the flag).
pub(crate) fn check_value(arg: &Arg, value: &str) -> Result<(), String> {
    // Positional, since clap's long names are static strings: the value is the only word.
    let probe = Command::new("mover serve").no_binary_name(true).arg(
        Arg::new(arg.get_id().clone())
            .action(ArgAction::Set)
            .allow_hyphen_values(true)
            .value_parser(arg.get_value_parser().clone()),
    );
    match probe.try_get_matches_from([value]) {
        Ok(_) => Ok(()),
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid value").trim_start_matches("error: ");
            // The probe's name for the argument means nothing to the reader: the key is named already.
            let id = format!(" for '[{}]'", arg.get_id());
            Err(first.replacen(&id, "", 1))
        }
    }
}

/// An unknown key's error: the closest key if one is close, else every key.
fn unknown_key(at: &str, given: &str, keys: &[&str]) -> String {
    let name = given.replace('_', "-");
    let closest = keys.iter().map(|k| (edit_distance(&name, k), *k)).min();
    match closest {
        Some((d, k)) if d <= 3 => format!("{at}: unknown key '{given}': did you mean '{k}'?"),
        _ => format!("{at}: unknown key '{given}'; the keys are the long flags of `mover serve`: {}", keys.join(", ")),
    }
}

/// Levenshtein distance, for "did you mean".
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A value as TOML: a plain decimal number bare, anything else a quoted string.
pub(crate) fn toml_value(v: &str) -> String {
    let plain_number = !v.is_empty()
        && v.bytes().all(|b| b.is_ascii_digit())
        && (v == "0" || !v.starts_with('0'))
        && v.parse::<i64>().is_ok();
    if plain_number {
        return v.to_string();
    }
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The effective settings of `serve` for `argv` (already expanded by [`with_config_file`]): every key =
/// value, one a line, as TOML that `--config` reads back; unset ones as comments, defaults marked.
pub fn effective_settings(cli: Command, argv: &[OsString]) -> Result<String, Failed> {
    let matches = cli.clone().try_get_matches_from(argv).map_err(|e| usage(e.to_string()))?;
    let Some(("serve", m)) = matches.subcommand() else {
        return Err(usage("--check-config is a flag of `mover serve`".into()));
    };
    let mut out = String::from("# mover serve: effective settings\n");
    for arg in serve_command(&cli).get_arguments() {
        let Some(key) = arg.get_long().filter(|l| !NOT_IN_FILE.contains(l)) else { continue };
        let id = arg.get_id().as_str();
        let default = if m.value_source(id) == Some(ValueSource::DefaultValue) { "  # default" } else { "" };
        if !arg.get_action().takes_values() {
            out.push_str(&format!("{key} = {}\n", m.get_flag(id)));
            continue;
        }
        let values: Vec<String> = match m.get_raw(id) {
            Some(raw) => raw.map(|v| toml_value(&v.to_string_lossy())).collect(),
            None => Vec::new(),
        };
        match values.as_slice() {
            [] => out.push_str(&format!("# {key} is not set\n")),
            [one] => out.push_str(&format!("{key} = {one}{default}\n")),
            many => out.push_str(&format!("{key} = [{}]{default}\n", many.join(", "))),
        }
    }
    Ok(out)
}

/// `serve --check-config`: what [`crate::session::serve`] checks before it listens, on `opts` (whose
/// authentication was already loaded); then `settings` on stdout. Any failure is a usage error.
pub fn check_config(opts: &ServeOptions, settings: &str) -> Result<(), Failed> {
    check_serve(opts).map_err(|e| usage(e.to_string()))?;
    print!("{settings}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser, Debug)]
    struct Demo {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Sub {
        #[command(args_override_self = true)]
        Serve {
            #[arg(long, default_value = "0.0.0.0:7400")]
            listen: SocketAddr,
            #[arg(long, value_parser = clap::value_parser!(u64).range(1..=9))]
            max_sessions: Option<u64>,
            #[arg(long)]
            once: bool,
            #[arg(long, value_name = "NAME=RATE")]
            cap: Vec<String>,
            #[command(flatten)]
            service: ServiceArgs,
        },
    }

    fn cli() -> Command {
        <Demo as clap::CommandFactory>::command()
    }

    fn flags(text: &str) -> Result<Vec<String>, String> {
        flags_from_toml(serve_command(&cli()), text, "f.toml")
            .map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
            .map_err(|e| e.message)
    }

    #[test]
    fn keys_become_flags() {
        assert_eq!(
            flags("listen = \"1.2.3.4:5\"\nmax_sessions = 0x3\nonce = true\n").unwrap(),
            ["--listen=1.2.3.4:5", "--max-sessions=3", "--once"]
        );
        assert_eq!(flags("once = false").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn bad_keys_and_values_name_the_file_line_and_key() {
        let e = flags("\nmax-sesions = 3").unwrap_err();
        assert!(e.starts_with("f.toml line 2: unknown key 'max-sesions': did you mean 'max-sessions'?"), "{e}");
        let e = flags("zzzzzzzzzz = 1").unwrap_err();
        assert!(e.contains("listen, max-sessions, once, cap, metrics, log-format"), "{e}");
        let e = flags("max-sessions = 10").unwrap_err();
        assert_eq!(e, "f.toml line 1: max-sessions = 10: invalid value '10': 10 is not in 1..=9");
        assert!(flags("once = \"yes\"").unwrap_err().contains("is a switch"));
        assert!(flags("listen = true").unwrap_err().contains("takes a value"));
        assert!(flags("config = \"x\"").unwrap_err().contains("cannot be set in a config file"));
        assert!(flags("once = true\nonce = true").unwrap_err().contains("not valid TOML"));
        assert!(flags("once = true\n[users]\na = 1").unwrap_err().contains("unknown key 'users'"));
    }

    /// A flag of NAME=VALUE pairs takes an array of them or a table; other flags take no table.
    #[test]
    fn a_table_gives_a_pairs_flag_once_per_entry() {
        assert_eq!(flags("cap = [\"a=1M\", \"b=2M\"]").unwrap(), ["--cap=a=1M", "--cap=b=2M"]);
        assert_eq!(flags("[cap]\nalice = \"200M\"\nbob = 5").unwrap(), ["--cap=alice=200M", "--cap=bob=5"]);
        assert!(flags("[listen]\na = 1").unwrap_err().contains("takes a value"));
        assert!(flags("[cap]\na = true").unwrap_err().contains("takes a value"));
    }

    #[test]
    fn the_command_line_wins_and_settings_read_back() {
        let dir = crate::testing::TempDir::new("h4-config");
        let file = dir.path().join("serve.toml");
        std::fs::write(&file, "listen = \"1.2.3.4:5\"\nmax-sessions = 3\n").unwrap();
        let argv: Vec<OsString> = ["mover", "serve", "--max-sessions", "7", "--config"]
            .iter()
            .map(OsString::from)
            .chain([file.into()])
            .collect();
        let expanded = with_config_file(&cli(), argv).unwrap();
        let settings = effective_settings(cli(), &expanded).unwrap();
        assert!(settings.contains("\nlisten = \"1.2.3.4:5\"\n"), "{settings}");
        assert!(settings.contains("\nmax-sessions = 7\n"), "{settings}");
        assert!(settings.contains("\nonce = false\n") && settings.contains("# metrics is not set"), "{settings}");
        assert!(settings.contains("log-format = \"text\"  # default"), "{settings}");
        // What --check-config prints is a config file that gives the same settings.
        let back = flags(&settings).unwrap();
        let mut again = vec![OsString::from("mover"), OsString::from("serve")];
        again.extend(back.into_iter().map(OsString::from));
        assert_eq!(
            effective_settings(cli(), &again).unwrap().replace("  # default", ""),
            settings.replace("  # default", "")
        );
    }

    #[test]
    fn toml_values_quote_what_is_not_a_plain_number() {
        assert_eq!(toml_value("16"), "16");
        assert_eq!(toml_value("007"), "\"007\"");
        assert_eq!(toml_value("a\"b\\"), "\"a\\\"b\\\\\"");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
