#!/usr/bin/env python3
"""End-to-end loopback disk-to-disk push through the pinned-core pipeline, against the single-loop build of
the core-transfer issue, in one run (issue #3).

For each rate in RATES and each repeat, alternating the two builds: drop the page cache, start
`mover serve --once` writing to DST (ext4), push FILE (8 GiB of random bytes, read from disk) over loopback at
MTU 9000, and record goodput, retransmissions, user+sys CPU seconds per GiB of each side (`perf stat` cycles
are not supported in this VM) and peak RSS (GNU time). The pipeline build also prints its per-stage tables
(`--stats`), kept for the median run of the highest rate. Then one push of a 16 GiB sparse file through the
pipeline to check that peak RSS stays bounded.

Needs: root (drop_caches), GNU time (/usr/bin/time), python3, about 30 GiB free under /var/tmp.
Environment: FILE (/var/tmp/mover-bench/pipe-8g.bin), DST (/var/tmp/mover-bench/dst), RATES ("3G 6G 10G"),
REPEATS (3), NEW (target/release/mover), BASE (the single-loop build: /var/tmp/mover-bench/mover-59de59a, built
from git commit 59de59a in a temporary worktree if missing), RESULTS (benches/RESULTS.md).
Writes the section "## Pipeline: loopback disk-to-disk push" of RESULTS (replacing an earlier version) and
benches/results/pipeline-DATE.csv.
"""
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(ROOT)
FILE = os.environ.get("FILE", "/var/tmp/mover-bench/pipe-8g.bin")
BIG = os.environ.get("BIG", "/var/tmp/mover-bench/sparse-16g.bin")
DST = os.environ.get("DST", "/var/tmp/mover-bench/dst")
RATES = os.environ.get("RATES", "3G 6G 10G").split()
REPEATS = int(os.environ.get("REPEATS", "3"))
NEW = os.environ.get("NEW", "target/release/mover")
BASE_COMMIT = "59de59a"
BASE = os.environ.get("BASE", f"/var/tmp/mover-bench/mover-{BASE_COMMIT}")
RESULTS = os.environ.get("RESULTS", "benches/RESULTS.md")
PORT = 7431
GIB = 1 << 30


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def ensure_builds():
    if not os.path.exists(NEW):
        sh("cargo build --release")
    if not os.path.exists(BASE):
        wt = "/tmp/mover-base-worktree"
        sh(f"git worktree add --force {wt} {BASE_COMMIT}")
        try:
            sh(f"cd {wt} && CARGO_TARGET_DIR=/tmp/mover-base-target cargo build --release")
            shutil.copy("/tmp/mover-base-target/release/mover", BASE)
        finally:
            sh(f"git worktree remove --force {wt}")


def ensure_file():
    os.makedirs(os.path.dirname(FILE), exist_ok=True)
    if not os.path.exists(FILE) or os.path.getsize(FILE) != 8 * GIB:
        print(f"writing 8 GiB of random bytes to {FILE}", flush=True)
        sh(f"head -c {8 * GIB} /dev/urandom > {FILE}")
    if not os.path.exists(BIG) or os.path.getsize(BIG) != 16 * GIB:
        sh(f"rm -f {BIG} && truncate -s 16G {BIG}")


def parse_time(path):
    # GNU time -f "%e %U %S %M": wall, user, sys, max RSS KiB
    wall, user, sys_s, rss = open(path).read().split()[-4:]
    return float(wall), float(user) + float(sys_s), int(rss) / 1024


def drop_caches():
    sh("sync")
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def insecure_flag(binary):
    """Plain TCP control channel: builds with daemon authentication need --insecure-no-auth on both sides."""
    out = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
    return ["--insecure-no-auth"] if "--insecure-no-auth" in out else []


def one_push(binary, rate, src, pipeline):
    insecure = insecure_flag(binary)
    shutil.rmtree(DST, ignore_errors=True)
    os.makedirs(DST)
    drop_caches()
    stats = ["--stats"] if pipeline else []
    serve = subprocess.Popen(
        ["/usr/bin/time", "-f", "%e %U %S %M", "-o", "/tmp/pipe-serve.time", binary, "serve", *insecure, "--listen",
         f"127.0.0.1:{PORT}", "--root", DST, "--once", *stats],
        stderr=open("/tmp/pipe-serve.log", "w"))
    time.sleep(0.5)
    push = subprocess.run(
        ["/usr/bin/time", "-f", "%e %U %S %M", "-o", "/tmp/pipe-push.time", binary, "push", *insecure, "--rate", rate,
         "--mtu", "9000", "--json", *stats, src, f"mover://127.0.0.1:{PORT}/"],
        capture_output=True, text=True)
    serve.wait(timeout=120)
    j = push.stdout.strip().splitlines()[-1] if push.stdout.strip() else "{}"
    report = json.loads(j)
    size = report.get("bytes", 0) or 1
    _, push_cpu, push_rss = parse_time("/tmp/pipe-push.time")
    _, serve_cpu, serve_rss = parse_time("/tmp/pipe-serve.time")
    row = {
        "ok": push.returncode == 0 and report.get("verified") is True,
        "goodput_gbps": report.get("goodput_bps", 0) / 1e9,
        "seconds": report.get("seconds", 0),
        "retx": report.get("packets_retransmitted", 0),
        "sent": report.get("packets_sent", 0),
        "push_cpu_s_per_gib": push_cpu / (size / GIB),
        "serve_cpu_s_per_gib": serve_cpu / (size / GIB),
        "push_rss_mib": push_rss,
        "serve_rss_mib": serve_rss,
        "disk": report.get("disk", "-"),
        "push_stats": push.stderr if pipeline else "",
        "serve_stats": open("/tmp/pipe-serve.log").read() if pipeline else "",
    }
    return row


def stage_table(text):
    keep = []
    on = False
    for line in text.splitlines():
        if line.startswith(("sender stages", "receiver stages")):
            on = True
        elif on and not line.startswith("  "):
            on = False
        if on:
            keep.append(line)
    return "\n".join(keep)


def main():
    if os.geteuid() != 0:
        sys.exit("run-pipeline.py: needs root (drop_caches)")
    ensure_builds()
    ensure_file()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = []
    for rate in RATES:
        for rep in range(REPEATS):
            for name, binary, pipeline in (("single loop (59de59a)", BASE, False), ("pipeline", NEW, True)):
                r = one_push(binary, rate, FILE, pipeline)
                r.update(build=name, rate=rate, rep=rep)
                rows.append(r)
                print(f"{rate} {name} #{rep}: {r['goodput_gbps']:.2f} Gbit/s retx {r['retx']} ok {r['ok']} "
                      f"cpu {r['push_cpu_s_per_gib']:.2f}/{r['serve_cpu_s_per_gib']:.2f} s/GiB", flush=True)
    big = one_push(NEW, RATES[-1], BIG, True)
    print(f"16 GiB: {big['goodput_gbps']:.2f} Gbit/s, RSS {big['push_rss_mib']:.0f}/{big['serve_rss_mib']:.0f} MiB")
    shutil.rmtree(DST, ignore_errors=True)

    date = started[:10]
    os.makedirs("benches/results", exist_ok=True)
    csv = f"benches/results/pipeline-{date}.csv"
    cols = ["build", "rate", "rep", "ok", "goodput_gbps", "seconds", "retx", "sent", "push_cpu_s_per_gib",
            "serve_cpu_s_per_gib", "push_rss_mib", "serve_rss_mib", "disk"]
    with open(csv, "w") as f:
        f.write(",".join(cols) + "\n")
        for r in rows + [dict(big, build="pipeline 16G sparse", rate=RATES[-1], rep=0)]:
            f.write(",".join(str(r[c]) for c in cols) + "\n")

    def med(rate, build, key):
        return statistics.median(r[key] for r in rows if r["rate"] == rate and r["build"] == build)

    lines = []
    cpu = platform.processor() or "unknown CPU"
    try:
        model = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read()).group(1)
    except Exception:
        model = cpu
    lines.append(f"Generated by `REPEATS={REPEATS} RATES=\"{' '.join(RATES)}\" benches/run-pipeline.py` "
                 f"on {started}.\n")
    lines.append(f"Machine: {os.cpu_count()} cores, {model}, kernel {platform.release()}. Loopback, MTU 9000, "
                 "an 8 GiB file of random bytes read from disk (page cache dropped before every push) and "
                 "written to ext4 (virtio-blk) without fsync; builds alternate. CPU is user+sys seconds per GiB "
                 "from GNU time (`perf stat` cycles are not supported in this VM). Medians of "
                 f"{REPEATS} runs.\n")
    lines.append("| --rate | build | goodput Gbit/s | retransmitted / sent | sender CPU s/GiB | receiver CPU s/GiB "
                 "| sender RSS MiB | receiver RSS MiB | all verified |")
    lines.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    builds = ["single loop (59de59a)", "pipeline"]
    for rate in RATES:
        for b in builds:
            sel = [r for r in rows if r["rate"] == rate and r["build"] == b]
            lines.append(
                f"| {rate} | {b} | {med(rate, b, 'goodput_gbps'):.2f} | {int(med(rate, b, 'retx'))} / "
                f"{int(med(rate, b, 'sent'))} | {med(rate, b, 'push_cpu_s_per_gib'):.2f} | "
                f"{med(rate, b, 'serve_cpu_s_per_gib'):.2f} | {med(rate, b, 'push_rss_mib'):.0f} | "
                f"{med(rate, b, 'serve_rss_mib'):.0f} | {all(r['ok'] for r in sel)} |")
    lines.append("")
    lines.append("Ratios, pipeline / single loop (goodput; CPU per GiB, lower is better):\n")
    lines.append("| --rate | goodput | sender CPU/GiB | receiver CPU/GiB |")
    lines.append("|---:|---:|---:|---:|")
    for rate in RATES:
        g = med(rate, builds[1], "goodput_gbps") / max(med(rate, builds[0], "goodput_gbps"), 1e-9)
        s = med(rate, builds[1], "push_cpu_s_per_gib") / max(med(rate, builds[0], "push_cpu_s_per_gib"), 1e-9)
        v = med(rate, builds[1], "serve_cpu_s_per_gib") / max(med(rate, builds[0], "serve_cpu_s_per_gib"), 1e-9)
        lines.append(f"| {rate} | {g:.2f}x | {s:.2f} | {v:.2f} |")
    top = RATES[-1]
    sel = sorted((r for r in rows if r["rate"] == top and r["build"] == "pipeline"), key=lambda r: r["goodput_gbps"])
    m = sel[len(sel) // 2]
    lines.append("")
    lines.append(f"Per-stage tables of the median pipeline run at --rate {top} ({m['goodput_gbps']:.2f} Gbit/s; "
                 "`push --stats`, `serve --stats`):\n")
    lines.append("```")
    lines.append(stage_table(m["push_stats"]))
    lines.append(stage_table(m["serve_stats"]))
    lines.append("```")
    lines.append("")
    lines.append(f"16 GiB (sparse file, reads of holes; --rate {top}) through the pipeline: "
                 f"{big['goodput_gbps']:.2f} Gbit/s, verified {big['ok']}, peak RSS sender "
                 f"{big['push_rss_mib']:.0f} MiB, receiver {big['serve_rss_mib']:.0f} MiB (aim < 512 MiB).")
    lines.append(f"\nRaw rows: `{csv}`.")
    section = "## Pipeline: loopback disk-to-disk push\n\n" + "\n".join(lines) + "\n"

    text = open(RESULTS).read()
    start = text.find("## Pipeline: loopback disk-to-disk push")
    if start >= 0:
        nxt = text.find("\n## ", start + 1)
        notes = text.find("\n### Notes on the pipeline run", start)
        end = notes if notes >= 0 and (nxt < 0 or notes < nxt) else nxt
        text = text[:start] + section + (text[end:] if end >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    open(RESULTS, "w").write(text)
    print(section)


if __name__ == "__main__":
    main()
