#!/usr/bin/env python3
"""Turns bench/results/latest.json (written by bench/run.sh) into the Markdown table.

usage: python3 bench/report.py RESULTS.json OUT.md
"""
import json
import sys


def n(v, digits=0):
    if v is None:
        return "n/a"
    if digits:
        return f"{v:,.{digits}f}"
    return f"{round(v):,}"


def verdict(ok):
    return "**pass**" if ok else "**FAIL**"


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        r = json.load(f)
    copy = r["copy"]["rows_per_s"]
    tp = r["throughput"]
    lat = r["latency"]
    idle = r["idle"]
    alls = r.get("all_sending")
    ratio = tp["acked_per_s"] / copy if copy else 0
    idle_ratio = idle["acked_per_s"] / tp["acked_per_s"] if tp["acked_per_s"] else 0
    per_idle = idle["daemon"]["bytes_per_idle_conn"]
    p99 = lat["latency_ms"]["p99"]
    lat_rate = lat["acked_in_window"] / lat["duration_s"]
    m = r["machine"]

    def ingest_cells(ph):
        d = ph["daemon"]
        return (f"{n(ph['acked_per_s'])} answers/s; p50/p95/p99 "
                f"{n(ph['latency_ms']['p50'], 1)}/{n(ph['latency_ms']['p95'], 1)}/"
                f"{n(ph['latency_ms']['p99'], 1)} ms; daemon CPU {n(d['cpu_pct'])}% of a core")

    rows = [
        (f"COPY into `answers` ({r['postgres'].get('answers', 'as migrated')}): the limit",
         f"{n(copy)} rows/s", "yardstick", ""),
        ("COPY into a copy of `answers` without foreign keys (informative)",
         f"{n(r['copy_nofk']['rows_per_s'])} rows/s", "", ""),
        ("naive: one INSERT per answer, autocommit, 8 clients",
         f"{n(r['naive8']['rows_per_s'])} rows/s", "what peers do", ""),
        ("naive: one INSERT per answer, autocommit, 64 clients",
         f"{n(r['naive64']['rows_per_s'])} rows/s", "what peers do", ""),
        (f"journeyd acked ingest, {tp['conns']} connections × window {tp['window']}",
         f"{ingest_cells(tp)}; **{ratio:.2f} × COPY**",
         "≥ 0.5 × COPY", verdict(ratio >= 0.5)),
        (f"ack latency at {n(lat['rate_offered'])} answers/s offered "
         f"({lat['conns']} connections, open loop)",
         f"p50 {n(lat['latency_ms']['p50'], 1)} / p95 {n(lat['latency_ms']['p95'], 1)} / "
         f"**p99 {n(p99, 1)}** ms (max {n(lat['latency_ms']['max'], 1)}); "
         f"{n(lat_rate)} acked/s; daemon CPU {n(lat['daemon']['cpu_pct'])}%",
         "p99 ≤ 25 ms", verdict(0 <= p99 <= 25)),
        (f"journeyd acked ingest with {n(idle['idle_ok'])} idle + {idle['conns']} active "
         f"connections", f"{ingest_cells(idle)}; **{100 * idle_ratio:.0f}%** of the "
         f"{tp['conns']}-connection rate", "≥ 80%", verdict(idle_ratio >= 0.8)),
        (f"daemon memory per idle connection ({n(idle['idle_ok'])} connections)",
         f"**{n(per_idle)} bytes** (VmRSS {n(idle['daemon']['rss_before_kb'])} → "
         f"{n(idle['daemon']['rss_idle_kb'])} kB; opened in {idle['idle_open_s']:.1f} s)",
         "≤ 8 KiB", verdict(0 <= per_idle <= 8192)),
    ]
    if alls:
        fair = alls.get("acked_per_conn")
        fair_txt = ""
        if fair:
            fair_txt = (f"; answers acked per connection in the window: min {fair['min']}, "
                        f"median {fair['p50']}, max {fair['max']}; **{n(fair['conns_with_none'])} "
                        f"connections got none**, slowest ack "
                        f"{n(alls.get('max_latency_any_ms', 0) / 1000, 1)} s")
        rows.append((f"journeyd acked ingest, {n(alls['conns_ok'])} connections all sending "
                     f"(window {alls['window']})", ingest_cells(alls) +
                     (f"; {100 * alls['acked_per_s'] / tp['acked_per_s']:.0f}% of the "
                      f"{tp['conns']}-connection rate" if tp["acked_per_s"] else "") + fair_txt,
                     "fair: every connection gets ≥ ½ the median share",
                     verdict(fair["min"] * 2 >= fair["p50"]) if fair else ""))
    d = r["daemon"]
    rows += [
        ("daemon CPU over all journeyd phases",
         f"{n(d['cpu_s'], 1)} s in {n(d['wall_s'], 1)} s = {n(d['cpu_pct'])}% of one core", "", ""),
        ("daemon peak RSS (VmHWM)", f"{n(d['hwm_kb'] / 1024, 1)} MiB", "", ""),
        ("correctness: rows in `answers` = acked ids after every phase and after SIGTERM; "
         "no duplicate or unknown acks",
         f"{n(r['verify']['final_rows'])} rows, {r['verify']['duplicates']} duplicates",
         "exact", verdict(r["verify"]["ok"])),
    ]
    out = []
    out.append(f"# journeyd benchmark results{' (quick run)' if r.get('quick') else ''}\n")
    out.append(f"- date: {r['date']}; commit: `{r['commit']}`"
               f"{' (with uncommitted changes)' if r.get('tree_dirty') else ''}")
    out.append(f"- machine: {m['cores']} cores ({m['cpu']}), {m['mem_kb'] // 1024:,} MiB RAM, "
               f"{m['os']}, kernel {m['kernel']}; load generator, journeyd and PostgreSQL share it; "
               f"load average at start {m.get('load_average_at_start', 'n/a')}")
    out.append(f"- PostgreSQL {r['postgres']['version']}: {r['postgres']['settings']}; "
               f"migrations {r['postgres'].get('migrations', 'n/a')}")
    out.append(f"- journeyd: `{r.get('journeyd', 'journeyd')} {r['daemon_args']}`")
    out.append(f"- command: `{r['command']}`\n")
    out.append("| figure | measured | target | verdict |")
    out.append("|---|---|---|---|")
    for row in rows:
        out.append("| " + " | ".join(row) + " |")
    out.append("\nCPU during each journeyd phase, in % of one core (the machine has "
               f"{m['cores']} × 100%); *others* is load that is not this benchmark:\n")
    out.append("| phase | wall s | journeyd | postgres | loadgen | others | load average before |")
    out.append("|---|---|---|---|---|---|---|")
    for name in ("throughput", "latency", "idle", "all_sending"):
        ph = r.get(name)
        if not ph or "cpu_phase" not in ph:
            continue
        c = ph["cpu_phase"]
        out.append(f"| {name} | {c['wall_s']:.0f} | {c['daemon_pct']:.0f} | {c['postgres_pct']:.0f} | "
                   f"{c['loadgen_pct']:.0f} | {c['others_pct']:.0f} | {c['loadavg_before']} |")
    bad = []
    for name in ("throughput", "latency", "idle", "all_sending"):
        ph = r.get(name)
        if not ph:
            continue
        if ph.get("errors"):
            bad.append(f"{name}: error frames {ph['errors']}")
        for k in ("connect_failed", "upgrade_failed", "closed_by_server", "bad_frames",
                  "unknown_acks", "rejected", "unacked_at_end"):
            if ph.get(k):
                bad.append(f"{name}: {k} = {ph[k]}")
        if ph.get("cpu_phase", {}).get("others_pct", 0) > 20:
            bad.append(f"{name}: other processes used {ph['cpu_phase']['others_pct']:.0f}% of a "
                       "core during the phase: the figures are pessimistic")
        fair = ph.get("acked_per_conn")
        if fair and fair["min"] * 2 < fair["p50"]:
            bad.append(f"{name}: unfair service: answers acked per connection in the window "
                       f"min {fair['min']}, median {fair['p50']}, max {fair['max']}; "
                       f"{fair['conns_with_none']} connections got none; slowest ack of the run "
                       f"{ph.get('max_latency_any_ms', 0) / 1000:.1f} s")
        if ph.get("starved"):
            bad.append(f"{name}: {ph['starved']} answers were due while every window was full")
    if d.get("exit_code"):
        bad.append(f"journeyd exited with {d['exit_code']} after SIGTERM")
    if bad:
        out.append("\nAnomalies:\n")
        out.extend(f"- {b}" for b in bad)
    with open(dst, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
