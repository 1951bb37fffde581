//! The .deb (issue 17 item 6): `dist/build-deb.sh` packages the binary under test with cargo-deb; the
//! package must list the man pages, the completions, the unit, the example config and tuning/, and its
//! binary, unpacked with `dpkg-deb -x` (never installed into this host), must run.
//!
//! cargo-deb is a cargo subcommand (`cargo install cargo-deb --locked`, about 3 minutes on 2 cores);
//! `.ci/run` installs it, so CI runs this test; elsewhere it skips loudly when cargo-deb is missing.

mod common;

use common::{mover, skip_or_fail, TempDir};
use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{cmd:?}:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

#[test]
fn deb_holds_everything_and_its_binary_runs() {
    const TEST: &str = "deb_holds_everything_and_its_binary_runs";
    let has = |cmd: &mut Command| cmd.output().is_ok_and(|o| o.status.success());
    if !has(Command::new("cargo").args(["deb", "--version"])) {
        skip_or_fail(TEST, "cargo-deb is not installed (cargo install cargo-deb --locked; .ci/run does)");
        return;
    }
    if !has(Command::new("dpkg-deb").arg("--version")) {
        skip_or_fail(TEST, "dpkg-deb is not installed (a Debian-based host has it)");
        return;
    }
    // Package the binary this test suite built (target/<profile>/mover), without building again inside
    // `cargo test`.
    let bin = Path::new(env!("CARGO_BIN_EXE_mover"));
    let profile = bin.parent().and_then(Path::file_name).and_then(|p| p.to_str()).expect("profile dir");
    let dir = TempDir::new("h3-deb");
    let deb = dir.path().join("mover.deb");
    let mut build = Command::new(repo().join("dist/build-deb.sh"));
    build.env("SKIP_BUILD", "1").env("PROFILE", profile).arg("--output").arg(&deb);
    if let Some(target) = bin.parent().and_then(Path::parent) {
        build.env("CARGO_TARGET_DIR", target);
    }
    ok(&mut build);

    let listing = ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let files: Vec<&str> = listing.lines().filter_map(|l| l.split_whitespace().last()).collect();
    let want = [
        "./usr/bin/mover",
        "./usr/share/man/man1/mover.1.gz",
        "./usr/share/man/man1/mover-push.1.gz",
        "./usr/share/man/man1/mover-pull.1.gz",
        "./usr/share/man/man1/mover-serve.1.gz",
        "./usr/share/man/man1/mover-bench-net.1.gz",
        "./usr/share/bash-completion/completions/mover",
        "./usr/share/zsh/vendor-completions/_mover",
        "./usr/share/fish/vendor_completions.d/mover.fish",
        "./usr/share/doc/mover/serve.example.toml",
        "./usr/share/mover/tuning/mover-tune",
        "./usr/share/mover/tuning/sysctl/10g.conf",
        "./usr/share/mover/tuning/sysctl/100g.conf",
    ];
    for f in want {
        assert!(files.contains(&f), "the .deb lacks {f}:\n{listing}");
    }
    let unit = files.iter().find(|f| f.ends_with("/systemd/system/mover.service")).expect("the .deb holds the unit");

    // Unpacked, never installed: the binary runs and says the version of the one under test.
    let root = dir.path().join("root");
    ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let version = ok(Command::new(root.join("usr/bin/mover")).arg("--version"));
    assert_eq!(version, ok(mover().arg("--version")));
    assert!(version.starts_with("mover "), "{version}");
    assert_eq!(
        std::fs::read(root.join(unit)).expect("unpacked unit"),
        std::fs::read(repo().join("dist/mover.service")).expect("dist unit"),
        "the packaged unit is dist/mover.service"
    );
    // The man page is the generated one, compressed; the completion is the binary's own.
    let page = ok(Command::new("gzip").arg("-dc").arg(root.join("usr/share/man/man1/mover-push.1.gz")));
    assert!(page.contains(".TH mover-push 1") && page.contains("remote\\-root"), "{page}");
    assert_eq!(
        std::fs::read_to_string(root.join("usr/share/bash-completion/completions/mover")).expect("completion"),
        ok(mover().args(["completions", "bash"]))
    );
    // The packaged tuning script finds its profiles where the package puts them.
    let tune =
        Command::new(root.join("usr/share/mover/tuning/mover-tune")).args(["--check", "100g"]).output().expect("run");
    let said = String::from_utf8_lossy(&tune.stdout);
    assert!(matches!(tune.status.code(), Some(0 | 3)) && said.contains("net.core.rmem_max"), "{said}");

    // The control part: dependencies, and the postinst that makes the `mover` user the unit runs as.
    let info = ok(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(info.contains("Package: mover") && info.contains("passwd"), "{info}");
    let control = dir.path().join("control");
    ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let postinst = std::fs::read_to_string(control.join("postinst")).expect("postinst");
    assert!(postinst.contains("useradd --system") && postinst.contains(" mover\n"), "{postinst}");
    let syntax = Command::new("sh").arg("-n").arg(control.join("postinst")).output().expect("sh -n");
    assert!(syntax.status.success(), "postinst: {}", String::from_utf8_lossy(&syntax.stderr));
}
