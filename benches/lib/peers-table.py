"""Tables and verdicts of benches/run-peers.sh: reads the run's CSV (one row per measurement), prints one
Markdown table per mode with medians, a ratio column per aim of issue 18 and "met"/"missed" for each.

Usage:
  python3 benches/lib/peers-table.py table RUN.csv            # the tables (stdout)
  python3 benches/lib/peers-table.py import-wan WAN.csv MODE [MTU]  # run-wan.sh's median CSV -> rows of RUN.csv

Every ratio is taken between medians of the same run and the same path (mode, scenario, offloads, MTU), so a
busy machine slows both sides of it; a missing side gives "n/a", never a verdict.
"""
import csv
import os
import statistics
import sys

COLUMNS = ["date", "mode", "scenario", "offloads", "mtu", "tool", "repeat", "ok", "bytes", "files", "seconds",
           "goodput_bps", "files_per_s", "retx", "sent", "snd_cpu_s", "rcv_cpu_s", "snd_rss_kib", "rcv_rss_kib",
           "ceiling_bps", "busiest", "load1", "note"]

# mode -> [(label, numerator tool, denominator tool or "ceiling", metric, low, high)]; high None: no upper bound.
AIMS = {
    "clean": [
        ("mover / rsync daemon", "mover-push", "rsync-daemon", "goodput_bps", 1.0, None),
        ("mover / scp", "mover-push", "scp", "goodput_bps", 2.0, None),
        ("mover / bench net", "mover-push", "mover-bench-net", "goodput_bps", 0.70, None),
    ],
    "wan": [],  # per scenario, see wan_aim()
    "share": [],  # fair/low, see share_rows()
    "small": [
        ("mover / rsync over ssh", "mover-push", "rsync-ssh", "files_per_s", 5.0, None),
        ("mover / tar over ssh", "mover-push", "tar-ssh", "files_per_s", 2.0, None),
        ("mover / rsync daemon", "mover-push", "rsync-daemon", "files_per_s", 1.0, None),
    ],
}
# Largest share of packets mover may retransmit on a clean path (issue 18, aim 1).
CLEAN_RETX_MAX = 0.005
# Long-fat lossy aims: share of the bottleneck at RTT ms / loss %.
WAN_AIMS = {("100", "1"): 0.95, ("200", "3"): 0.90}


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(rows, col):
    vals = [x for x in (num(r.get(col)) for r in rows) if x is not None]
    return statistics.median(vals) if vals else None


def verdict(ratio, low, high):
    if ratio is None:
        return "n/a"
    ok = ratio >= low and (high is None or ratio <= high)
    return "met" if ok else "missed"


def fmt(x, scale=1.0, digits=2):
    return "n/a" if x is None else f"{x / scale:.{digits}f}"


def aim_text(low, high):
    return f">= {low:g}" if high is None else f"{low:g}-{high:g}"


def per_gib(cpu, nbytes):
    if cpu is None or not nbytes:
        return None
    return cpu / (nbytes / 2**30)


def cpu_limit(ok):
    """"CPU" when both ends together kept (nearly) every core of this machine busy: the ends share the cores
    here, so that is the limit whatever the stages say; else how many cores they used."""
    snd, rcv, secs = med(ok, "snd_cpu_s"), med(ok, "rcv_cpu_s"), med(ok, "seconds")
    if snd is None or not secs:
        return ""
    used = (snd + (rcv or 0)) / secs
    cores = os.cpu_count() or 1
    if used >= 0.8 * cores:
        return f"CPU: both ends used {used:.1f} of {cores} cores"
    return f"ends used {used:.1f} of {cores} cores"


def groups(rows, mode):
    out = {}
    for r in rows:
        if r["mode"] == mode:
            out.setdefault((r["scenario"], r["offloads"], r["mtu"]), []).append(r)
    return out


def tool_rows(rs, tool):
    return [r for r in rs if r["tool"] == tool and r["ok"] == "1"]


def ratio_of(rs, a, b, col):
    x, y = med(tool_rows(rs, a), col), med(tool_rows(rs, b), col)
    return None if x is None or not y else x / y


def measurement_table(mode, g, metric):
    """The per-tool rows: medians of goodput (or files/s), CPU per GiB, RSS, retransmissions, the limit."""
    unit = "files/s" if metric == "files_per_s" else "Gbit/s"
    print(f"| scenario | offloads | MTU | tool | runs ok | {unit} | seconds | retransmitted | "
          "sender CPU s/GiB | receiver CPU s/GiB | sender RSS MiB | receiver RSS MiB | busiest stage / limit |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for (scen, offl, mtu), rs in sorted(g.items()):
        tools = []
        for r in rs:
            if r["tool"] not in tools:
                tools.append(r["tool"])
        for t in tools:
            all_t = [r for r in rs if r["tool"] == t]
            ok = tool_rows(rs, t)
            nbytes = med(ok, "bytes")
            value = med(ok, metric)
            shown = fmt(value, 1.0, 0) if metric == "files_per_s" else fmt(value, 1e9)
            retx, sent = med(ok, "retx"), med(ok, "sent")
            retx_s = "" if retx is None or not sent else f"{100 * retx / sent:.2f}%"
            rss = lambda c: fmt(med(ok, c), 1024, 0) if med(ok, c) is not None else ""
            cpu = lambda c: fmt(per_gib(med(ok, c), nbytes)) if per_gib(med(ok, c), nbytes) is not None else ""
            busiest = next((r["busiest"] for r in ok if r["busiest"]), "")
            note = next((r["note"] for r in ok if r["note"]), "")
            limit = "; ".join(x for x in (cpu_limit(ok), busiest, note) if x)
            print(f"| {scen} | {offl} | {mtu} | {t} | {len(ok)}/{len(all_t)} | {shown} | {fmt(med(ok, 'seconds'))} | "
                  f"{retx_s} | {cpu('snd_cpu_s')} | {cpu('rcv_cpu_s')} | {rss('snd_rss_kib')} | {rss('rcv_rss_kib')} | "
                  f"{limit} |")
    print()


def verdict_table(mode, g):
    print("| scenario | offloads | MTU | aim | ratio | aim is | verdict |")
    print("|---|---|---:|---|---:|---:|---|")
    for (scen, offl, mtu), rs in sorted(g.items()):
        for label, a, b, col, low, high in AIMS[mode]:
            r = ratio_of(rs, a, b, col)
            print(f"| {scen} | {offl} | {mtu} | {label} | {fmt(r)} | {aim_text(low, high)} | {verdict(r, low, high)} |")
        if mode == "clean":
            ok = tool_rows(rs, "mover-push")
            retx, sent = med(ok, "retx"), med(ok, "sent")
            share = None if retx is None or not sent else retx / sent
            v = "n/a" if share is None else ("met" if share <= CLEAN_RETX_MAX else "missed")
            shown = "n/a" if share is None else f"{100 * share:.2f}%"
            print(f"| {scen} | {offl} | {mtu} | mover retransmitted / sent | {shown} | <= 0.5% | {v} |")
        if mode == "wan":
            rtt, loss = scen.split("ms-")[0], scen.split("ms-")[-1].rstrip("%").replace("pct", "")
            aim = WAN_AIMS.get((rtt, loss))
            ok = tool_rows(rs, "mover")
            gp = med(ok, "goodput_bps")
            ceiling = med(ok, "ceiling_bps")
            r = None if gp is None or not ceiling else gp / ceiling
            if aim is not None:
                print(f"| {scen} | {offl} | {mtu} | mover / bottleneck | {fmt(r)} | >= {aim:g} | {verdict(r, aim, None)} |")
            for peer in ("iperf3-cubic", "iperf3-bbr", "scp", "rsync"):
                pr = ratio_of(rs, "mover", peer, "goodput_bps")
                if pr is not None:
                    print(f"| {scen} | {offl} | {mtu} | mover / {peer} | {fmt(pr)} | (reference) | |")
    print()


def share_table(rows):
    """Fairness runs (run-wan.sh): fair takes 0.5x-2x of TCP's rate next to it; low leaves TCP >= 85% of what
    TCP alone got (the TCP-alone phases of the fair run with the same congestion control)."""
    rs = [r for r in rows if r["mode"] == "share"]
    print("| run | TCP alone Gbit/s | TCP next to mover Gbit/s | mover next to TCP Gbit/s | aim | ratio | aim is | verdict |")
    print("|---|---:|---:|---:|---|---:|---:|---|")
    for cc in ("cubic", "bbr"):
        tcp = f"iperf3-{cc}"
        fair = [r for r in rs if r["scenario"] == f"mover-fair+{tcp}" and r["ok"] == "1"]
        low = [r for r in rs if r["scenario"] == f"mover-low+{tcp}" and r["ok"] == "1"]
        # TCP alone: before mover joined the fair run, else after it left (a phase too short to sample is empty).
        alone = med([r for r in fair if r["tool"] == tcp and r["note"] == "before"], "goodput_bps")
        if alone is None:
            alone = med([r for r in fair if r["tool"] == tcp and r["note"] == "after"], "goodput_bps")
        for name, run, policy in (("fair", fair, "fair"), ("low", low, "low")):
            if not run:
                continue
            t_over = med([r for r in run if r["tool"] == tcp and r["note"] == "overlap"], "goodput_bps")
            m_over = med([r for r in run if r["tool"] == "mover" and r["note"] == "overlap"], "goodput_bps")
            if policy == "fair":
                label, low_b, high_b = "mover / TCP", 0.5, 2.0
                r = None if m_over is None or not t_over else m_over / t_over
            else:
                label, low_b, high_b = "TCP next to low / TCP alone", 0.85, None
                r = None if t_over is None or not alone else t_over / alone
            print(f"| {name} + {cc} | {fmt(alone, 1e9)} | {fmt(t_over, 1e9)} | {fmt(m_over, 1e9)} | {label} | "
                  f"{fmt(r)} | {aim_text(low_b, high_b)} | {verdict(r, low_b, high_b)} |")
    print()


def table(path):
    rows = list(csv.DictReader(open(path)))
    titles = {"clean": "Clean path (veth, no emulator)", "wan": "Long-fat lossy path (mover-wanem)",
              "share": "Sharing a bottleneck with TCP (mover-wanem)", "small": "Many small files"}
    for mode in ("clean", "wan", "share", "small"):
        if not any(r["mode"] == mode for r in rows):
            continue
        print(f"### {titles[mode]}\n")
        if mode == "share":
            share_table(rows)
            continue
        g = groups(rows, mode)
        measurement_table(mode, g, "files_per_s" if mode == "small" else "goodput_bps")
        verdict_table(mode, g)


def import_wan(path, mode, mtu="1500"):
    """run-wan.sh's median CSV -> RUN.csv rows: the transfer rows (mode wan) or the fairness phases (share)."""
    w = csv.DictWriter(sys.stdout, COLUMNS)
    for r in csv.DictReader(open(path)):
        out = dict.fromkeys(COLUMNS, "")
        scen = f"{r['rtt_ms']}ms-{r['loss_pct']}pct" if r["section"] != "fairness" else r["scenario"]
        ok = "1" if int(r["ok"] or 0) > 0 and r["goodput_bps"] else "0"
        out.update(date=r["date"], mode=mode, scenario=scen, offloads="off", mtu=mtu, tool=r["tool"], repeat="median",
                   ok=ok, goodput_bps=r["goodput_bps"], retx=r["retransmitted"], sent=r["sent"],
                   ceiling_bps=r["rate_bps"], note=r["phase"] if r["section"] == "fairness" else r["note"])
        if (mode == "share") == (r["section"] == "fairness"):
            w.writerow(out)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "table":
        table(sys.argv[2])
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "import-wan":
        import_wan(*sys.argv[2:])
    else:
        sys.exit(__doc__)
