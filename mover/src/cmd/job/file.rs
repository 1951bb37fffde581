//! The job file (`mover job FILE.toml`, decision 0038): TOML whose top-level keys are job-wide defaults
//! (any long flag of `mover push`: `rate = "2G"`, `overwrite = "if-newer"`, `retries = 5`) and the job's
//! own settings (`concurrency`), and whose `[[transfer]]` tables each name `sources` (an array of paths),
//! `to` (a destination URL, or an array of them), an optional `name`, and any push flag that overrides the
//! default for that transfer.
//!
//! As `serve --config` does (cmd/serve_config.rs), every key becomes a long flag (`key = "v"` ->
//! `--key=v`, `key = true` -> `--key`, an array -> the flag once per element) and its value is checked by
//! the flag's own parser at once, so a bad value is one line naming the file, the line, the transfer and
//! the key. Each transfer x destination then becomes the argument list of one push (`--flags -- SRC...
//! DEST`), which `main` parses with push's own clap definition: every key is a push flag by construction.

use super::super::serve_config::{check_value, edit_distance, line_of, scalar};
use crate::connect::Location;
use crate::exit::{ExitClass, Failed};
use clap::{Arg, Command};
use std::ffi::OsString;
use std::ops::Range;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The job's own keys, beside push's flags (top level only).
pub const JOB_KEYS: &[&str] = &["concurrency"];
/// The keys of a `[[transfer]]` table beside push's flags.
pub const TRANSFER_KEYS: &[&str] = &["name", "sources", "to"];
/// Transfers run at once when the file does not say (`concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 2;
/// The most transfers a job runs at once: each runs a sender pipeline (several threads, its buffers).
pub const MAX_CONCURRENCY: usize = 64;
/// Push flags a job file may not set: what the job itself decides for every transfer (its output, its
/// progress display), and clap's own.
pub const NOT_IN_JOB: &[&str] = &["json", "progress", "quiet", "stats", "show-topology", "help", "version"];

/// A job file, read and checked: its settings and its transfers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobFile {
    /// Transfers (x destinations) that run at once.
    pub concurrency: usize,
    /// In file order.
    pub transfers: Vec<PlannedTransfer>,
}

/// One `[[transfer]]`: its name, destinations and the push flags it runs with (defaults merged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedTransfer {
    /// 1-based place in the file, for errors.
    pub index: usize,
    /// `name`, or one made from the sources' names.
    pub name: String,
    /// Its sources, as given.
    pub sources: Vec<String>,
    /// Its destinations (`to`), at least one.
    pub to: Vec<String>,
    /// Push's flags for it: the file's defaults, then the transfer's own keys in their place (never a
    /// flag twice); `--key=value` or `--key`.
    pub flags: Vec<OsString>,
}

impl PlannedTransfer {
    /// How errors name the transfer: `[[transfer]] 2 ('logs')`.
    pub fn label(&self) -> String {
        format!("[[transfer]] {} ('{}')", self.index, self.name)
    }

    /// The argument list of the push to destination `to`: flags, `--`, the sources, the destination.
    pub fn push_argv(&self, to: &str) -> Vec<OsString> {
        let mut argv = vec![OsString::from("mover job")];
        argv.extend(self.flags.iter().cloned());
        argv.push("--".into());
        argv.extend(self.sources.iter().map(OsString::from));
        argv.push(to.into());
        argv
    }
}

fn usage(message: String) -> Failed {
    Failed { class: ExitClass::Usage, message }
}

/// One key's flags, with where it was set (for "set twice" and for errors).
struct KeyFlags {
    name: String,
    flags: Vec<OsString>,
}

/// Reads a job file's `text` (`file` names it in errors) against `push`, the push subcommand's definition;
/// `overrides` are `(key, value)` pairs from `mover job`'s own command line (`--shard`) that win over every
/// key of the file.
pub fn parse_job(push: &Command, text: &str, file: &str, overrides: &[(&str, String)]) -> Result<JobFile, Failed> {
    let table = DeTable::parse(text).map_err(|e| {
        let line = e.span().map_or(String::new(), |s| format!(" line {}", line_of(text, s.start)));
        usage(format!("{file}{line}: not valid TOML: {}", e.message().trim_end()))
    })?;
    let at = |span: Range<usize>, what: &str| format!("{file} line {}: {what}", line_of(text, span.start));
    let mut concurrency = DEFAULT_CONCURRENCY;
    let mut defaults: Vec<KeyFlags> = Vec::new();
    let mut tables = None;
    for (key, value) in table.get_ref().iter() {
        let given: &str = key.get_ref();
        let here = at(key.span(), "");
        let here = here.trim_end_matches(": ");
        match given.replace('_', "-").as_str() {
            "transfer" => tables = Some(value),
            "concurrency" => concurrency = parse_concurrency(value.get_ref(), here)?,
            "name" | "sources" | "to" => {
                return Err(usage(format!(
                    "{here}: '{given}' belongs in a [[transfer]] table: put it under [[transfer]] (one per transfer)"
                )))
            }
            _ => defaults.push(key_flags(push, given, value.get_ref(), here, "")?),
        }
    }
    check_unique(&defaults, file)?;
    let Some(tables) = tables else {
        return Err(usage(format!(
            "{file}: no [[transfer]]: add at least one, with sources = [\"PATH\", ...] and to = \"mover://HOST/DIR\""
        )));
    };
    let DeValue::Array(items) = tables.get_ref() else {
        return Err(usage(format!(
            "{}: 'transfer' must be an array of tables: write [[transfer]], not [transfer] or transfer = ...",
            at(tables.span(), "").trim_end_matches(": ")
        )));
    };
    let mut transfers = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let t = parse_transfer(push, item, i + 1, &defaults, overrides, &|span| at(span, ""), file)?;
        transfers.push(t);
    }
    name_transfers(&mut transfers, file)?;
    Ok(JobFile { concurrency, transfers })
}

fn parse_concurrency(v: &DeValue, here: &str) -> Result<usize, Failed> {
    let n = match v {
        DeValue::Integer(_) => scalar(v, here, "concurrency")?.parse::<i128>().unwrap_or(0),
        other => {
            return Err(usage(format!("{here}: concurrency takes a number of transfers, not a {}", other.type_str())))
        }
    };
    if !(1..=MAX_CONCURRENCY as i128).contains(&n) {
        return Err(usage(format!(
            "{here}: concurrency = {n}: it must be 1..={MAX_CONCURRENCY} (transfers run at once)"
        )));
    }
    Ok(n as usize)
}

/// A key that is a push flag, as flags: checked against the flag's own value parser. `label` names the
/// transfer (empty at the top level).
fn key_flags(push: &Command, given: &str, value: &DeValue, here: &str, label: &str) -> Result<KeyFlags, Failed> {
    let name = given.replace('_', "-");
    let at = format!("{here}{label}");
    if NOT_IN_JOB.contains(&name.as_str()) {
        return Err(usage(format!(
            "{at}: '{given}' cannot be set in a job file: give --{name} to `mover job` on the command line"
        )));
    }
    let Some(arg) = push.get_arguments().find(|a| a.get_long() == Some(name.as_str())) else {
        return Err(usage(unknown_key(&at, given, push, !label.is_empty())));
    };
    let mut flags = Vec::new();
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
        return Ok(KeyFlags { name, flags });
    }
    let values: Vec<String> = match value {
        DeValue::Array(items) => items.iter().map(|v| scalar(v.get_ref(), &at, given)).collect::<Result<_, _>>()?,
        v => vec![scalar(v, &at, given)?],
    };
    for v in values {
        check_value(arg, &v).map_err(|why| usage(format!("{at}: {name} = {}: {why}", toml_text(&v))))?;
        flags.push(OsString::from(format!("--{name}={v}")));
    }
    Ok(KeyFlags { name, flags })
}

fn toml_text(v: &str) -> String {
    super::super::serve_config::toml_value(v)
}

/// An unknown key's error: the closest key if one is close, else where the keys are listed.
fn unknown_key(at: &str, given: &str, push: &Command, in_transfer: bool) -> String {
    let name = given.replace('_', "-");
    let own: &[&str] = if in_transfer { TRANSFER_KEYS } else { JOB_KEYS };
    let keys =
        push.get_arguments().filter_map(Arg::get_long).filter(|l| !NOT_IN_JOB.contains(l)).chain(own.iter().copied());
    match keys.map(|k| (edit_distance(&name, k), k)).min() {
        Some((d, k)) if d <= 3 => format!("{at}: unknown key '{given}': did you mean '{k}'?"),
        _ => format!(
            "{at}: unknown key '{given}': a job's keys are {} and the long flags of `mover push` (see mover push --help)",
            own.join(", ")
        ),
    }
}

/// Refuses a key set twice in one table (`rate` and `rate`, or `min_rate` and `min-rate`).
fn check_unique(keys: &[KeyFlags], at: &str) -> Result<(), Failed> {
    for (i, k) in keys.iter().enumerate() {
        if keys[..i].iter().any(|o| o.name == k.name) {
            return Err(usage(format!("{at}: '{}' is set twice ('_' and '-' name the same key)", k.name)));
        }
    }
    Ok(())
}

/// One `[[transfer]]` table: its own keys, and push's flags from the defaults with its own keys (and the
/// command line's `overrides`) in their place.
fn parse_transfer(
    push: &Command,
    item: &Spanned<DeValue>,
    index: usize,
    defaults: &[KeyFlags],
    overrides: &[(&str, String)],
    at: &dyn Fn(Range<usize>) -> String,
    file: &str,
) -> Result<PlannedTransfer, Failed> {
    let DeValue::Table(table) = item.get_ref() else {
        return Err(usage(format!("{file}: [[transfer]] {index} is not a table")));
    };
    // Its name first, so that every error below can name the transfer as the user does.
    let name = match table.get("name").map(Spanned::get_ref) {
        Some(DeValue::String(s)) if !s.trim().is_empty() => Some(s.to_string()),
        Some(_) => {
            return Err(usage(format!("{file}: [[transfer]] {index}: name must be a non-empty string")));
        }
        None => None,
    };
    let label = match &name {
        Some(n) => format!(": [[transfer]] {index} ('{n}')"),
        None => format!(": [[transfer]] {index}"),
    };
    let (mut sources, mut to) = (None, None);
    let mut own: Vec<KeyFlags> = Vec::new();
    for (key, value) in table.iter() {
        let given: &str = key.get_ref();
        let here = at(key.span());
        let here = here.trim_end_matches(": ");
        let where_ = format!("{here}{label}");
        match given {
            "name" => {}
            "sources" => sources = Some(strings(value.get_ref(), &where_, "sources", "sources = [\"/data/run42\"]")?),
            "to" => to = Some(strings(value.get_ref(), &where_, "to", "to = \"mover://HOST[:PORT]/DIR\"")?),
            "concurrency" => {
                return Err(usage(format!(
                    "{where_}: concurrency is the job's: set it at the top of the file, before any [[transfer]]"
                )))
            }
            _ => own.push(key_flags(push, given, value.get_ref(), here, &label)?),
        }
    }
    check_unique(&own, &format!("{file}{label}"))?;
    let whole = format!("{file}{label}");
    let sources = match sources {
        Some(s) if !s.is_empty() => s,
        _ => {
            return Err(usage(format!(
                "{whole}: no 'sources': add sources = [\"PATH\", ...] (the files and directories it sends)"
            )))
        }
    };
    let to = match to {
        Some(t) if !t.is_empty() => t,
        _ => {
            return Err(usage(format!(
                "{whole}: no 'to': add to = \"mover://HOST[:PORT]/DIR\" or \"[user@]host:DIR\" (or a list of them)"
            )))
        }
    };
    for dest in &to {
        if matches!(Location::parse(dest), Ok(Location::Local(_)) | Err(_)) {
            return Err(usage(format!(
                "{whole}: to = \"{dest}\" is not a destination: use mover://HOST[:PORT]/DIR or [user@]host:DIR"
            )));
        }
    }
    let mut flags = Vec::new();
    for d in defaults.iter().filter(|d| !own.iter().any(|o| o.name == d.name)) {
        if !overrides.iter().any(|(k, _)| *k == d.name) {
            flags.extend(d.flags.iter().cloned());
        }
    }
    for o in own.iter().filter(|o| !overrides.iter().any(|(k, _)| *k == o.name)) {
        flags.extend(o.flags.iter().cloned());
    }
    for (k, v) in overrides {
        flags.push(OsString::from(format!("--{k}={v}")));
    }
    Ok(PlannedTransfer { index, name: name.unwrap_or_default(), sources, to, flags })
}

/// A string, or an array of strings.
fn strings(v: &DeValue, at: &str, key: &str, example: &str) -> Result<Vec<String>, Failed> {
    let bad = |what: &str| usage(format!("{at}: {key} must be a string or an array of strings, not {what}: {example}"));
    match v {
        DeValue::String(s) => Ok(vec![s.to_string()]),
        DeValue::Array(items) => items
            .iter()
            .map(|i| match i.get_ref() {
                DeValue::String(s) if !s.is_empty() => Ok(s.to_string()),
                DeValue::String(_) => Err(bad("an empty string")),
                other => Err(bad(&format!("an array holding a {}", other.type_str()))),
            })
            .collect(),
        other => Err(bad(&format!("a {}", other.type_str()))),
    }
}

/// Names the transfers without one after their sources (`data`, `a.bin,b.bin`), and refuses two with the
/// same name: the summary and the events name transfers, and two rows of one name would say nothing.
fn name_transfers(transfers: &mut [PlannedTransfer], file: &str) -> Result<(), Failed> {
    for i in 0..transfers.len() {
        if !transfers[i].name.is_empty() {
            if let Some(j) = transfers[..i].iter().position(|t| t.name == transfers[i].name) {
                return Err(usage(format!(
                    "{file}: [[transfer]] {} and {} are both named '{}': give each its own name",
                    j + 1,
                    i + 1,
                    transfers[i].name
                )));
            }
            continue;
        }
        let base: Vec<String> = transfers[i].sources.iter().map(|s| source_name(s)).collect();
        let mut name = base.join(",");
        if transfers.iter().any(|t| t.name == name) {
            name = format!("{name}#{}", transfers[i].index);
        }
        transfers[i].name = name;
    }
    Ok(())
}

/// A source's last component (what it lands as), or the source as given when it has none.
fn source_name(s: &str) -> String {
    let trimmed = s.trim_end_matches('/');
    match trimmed.rsplit('/').next() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for push's definition with the kinds of flags that matter here.
    fn push() -> Command {
        Command::new("push")
            .arg(Arg::new("rate").long("rate").value_parser(crate::rate::parse_rate_bps))
            .arg(Arg::new("min_rate").long("min-rate").value_parser(crate::rate::parse_rate_bps))
            .arg(Arg::new("overwrite").long("overwrite").value_parser(["never", "always", "if-newer", "if-different"]))
            .arg(Arg::new("checksum").long("checksum").action(clap::ArgAction::SetTrue))
            .arg(Arg::new("retries").long("retries").value_parser(clap::value_parser!(u32)))
            .arg(Arg::new("shard").long("shard"))
            .arg(Arg::new("json").long("json").action(clap::ArgAction::SetTrue))
    }

    fn parse(text: &str) -> Result<JobFile, String> {
        parse_job(&push(), text, "job.toml", &[]).map_err(|e| e.message)
    }

    fn flags(t: &PlannedTransfer) -> Vec<String> {
        t.flags.iter().map(|f| f.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn defaults_are_inherited_and_overridden_key_by_key() {
        let job = parse(
            r#"
            concurrency = 3
            rate = "2G"
            checksum = true
            retries = 5

            [[transfer]]
            name = "runs"
            sources = ["/data/run42", "/data/run43/"]
            to = ["mover://a:7400/in", "me@b:in"]
            rate = "500M"
            overwrite = "if-newer"

            [[transfer]]
            sources = ["/logs/"]
            to = "mover://a/logs"
            checksum = false
            "#,
        )
        .unwrap();
        assert_eq!(job.concurrency, 3);
        let [a, b] = &job.transfers[..] else { panic!("two transfers") };
        assert_eq!((a.name.as_str(), a.to.len()), ("runs", 2));
        // The defaults not overridden, then the transfer's own keys (a table's keys come sorted).
        assert_eq!(flags(a), ["--checksum", "--retries=5", "--overwrite=if-newer", "--rate=500M"]);
        assert_eq!(b.name, "logs", "named after its source");
        assert_eq!(flags(b), ["--rate=2G", "--retries=5"], "checksum = false drops the default's switch");
        let argv: Vec<String> = a.push_argv("me@b:in").iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(argv[argv.len() - 4..], ["--", "/data/run42", "/data/run43/", "me@b:in"]);
        assert_eq!(a.label(), "[[transfer]] 1 ('runs')");
    }

    #[test]
    fn the_command_line_wins_over_every_key() {
        let text = "shard = \"0/2\"\n[[transfer]]\nsources = [\"x\"]\nto = \"mover://h/d\"\nshard = \"1/2\"\n";
        let job = parse_job(&push(), text, "j.toml", &[("shard", "auto".into())]).unwrap();
        assert_eq!(flags(&job.transfers[0]), ["--shard=auto"]);
        let job = parse(text).unwrap();
        assert_eq!(flags(&job.transfers[0]), ["--shard=1/2"]);
    }

    #[test]
    fn bad_files_are_one_line_naming_the_key_and_the_transfer() {
        let t =
            |extra: &str| format!("[[transfer]]\nname = \"logs\"\nsources = [\"/x\"]\nto = \"mover://h/d\"\n{extra}");
        let e = parse(&t("rat = \"1G\"")).unwrap_err();
        assert_eq!(e, "job.toml line 5: [[transfer]] 1 ('logs'): unknown key 'rat': did you mean 'rate'?");
        let e = parse(&t("zzzzzzzzz = 1")).unwrap_err();
        assert!(e.contains("unknown key 'zzzzzzzzz'") && e.contains("name, sources, to"), "{e}");
        let e = parse(&t("rate = \"fast\"")).unwrap_err();
        assert!(e.starts_with("job.toml line 5: [[transfer]] 1 ('logs'): rate = \"fast\": "), "{e}");
        let e = parse(&t("overwrite = \"sometimes\"")).unwrap_err();
        assert!(e.ends_with("overwrite = \"sometimes\": invalid value 'sometimes'"), "{e}");
        let e = parse("[[transfer]]\nname = \"logs\"\nsources = [\"/x\"]\n").unwrap_err();
        assert!(e.starts_with("job.toml: [[transfer]] 1 ('logs'): no 'to': add to = "), "{e}");
        let e = parse("[[transfer]]\nto = \"mover://h/d\"\n").unwrap_err();
        assert!(e.starts_with("job.toml: [[transfer]] 1: no 'sources'"), "{e}");
        let e = parse(&t("json = true")).unwrap_err();
        assert!(e.contains("cannot be set in a job file: give --json to `mover job`"), "{e}");
        let e = parse(&t("checksum = \"yes\"")).unwrap_err();
        assert!(e.contains("is a switch"), "{e}");
        let e = parse("concurrency = 0\n").unwrap_err();
        assert!(e.starts_with("job.toml line 1: concurrency = 0: it must be 1..=64"), "{e}");
        let e = parse("rate = \"1G\"\n").unwrap_err();
        assert!(e.starts_with("job.toml: no [[transfer]]"), "{e}");
        let e = parse("[transfer]\nsources = [\"/x\"]\n").unwrap_err();
        assert!(e.contains("must be an array of tables"), "{e}");
        let e = parse("to = \"mover://h/d\"\n[[transfer]]\n").unwrap_err();
        assert!(e.contains("'to' belongs in a [[transfer]] table"), "{e}");
        let e = parse(&t("to = \"./here\"").replace("to = \"mover://h/d\"\n", "")).unwrap_err();
        assert!(e.contains("is not a destination"), "{e}");
        let e = parse(&format!("{}{}", t(""), t(""))).unwrap_err();
        assert!(e.contains("both named 'logs'"), "{e}");
        let e = parse("rate = \"1G\"\nrate = \"2G\"\n").unwrap_err();
        assert!(e.contains("not valid TOML"), "{e}");
        let e = parse("min_rate = \"1M\"\nmin-rate = \"2M\"\n[[transfer]]\nsources=[\"x\"]\nto=\"h:d\"\n").unwrap_err();
        assert!(e.contains("'min-rate' is set twice"), "{e}");
    }

    #[test]
    fn default_names_come_from_the_sources_and_stay_distinct() {
        let job = parse(
            "[[transfer]]\nsources = [\"/a/data/\", \"b.bin\"]\nto = \"h:d\"\n[[transfer]]\nsources = [\"/c/data\", \"b.bin\"]\nto = \"h:e\"\n",
        )
        .unwrap();
        assert_eq!(job.transfers[0].name, "data,b.bin");
        assert_eq!(job.transfers[1].name, "data,b.bin#2");
        assert_eq!(job.concurrency, DEFAULT_CONCURRENCY);
    }
}
