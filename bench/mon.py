#!/usr/bin/env python3
"""Run one command, sample the RSS of its whole process tree every 20 ms, and print one JSON record.

  python mon.py [--cpus 0] [--report-json FILE] [--quiet-wait S] [--log FILE] -- cmd args...

Record: wall_s, peak_rss_mib (peak of the summed RSS of the process and all its descendants),
cpu_s (user+sys seconds of the tree, as last sampled), cpu_by_role (the same split by each process's
first argument, e.g. {"launch": .., "coordinator": .., "server": .., "worker": ..} for a
`starling launch`), rc, cmd. Lines the command prints that start with 'RESULT ' followed
by JSON are merged into the record; so is the JSON file --report-json (Starling's --report), read
after the command exits. --cpus pins the command and its children with taskset. --quiet-wait waits
(up to S seconds) for the machine to be nearly idle first, since other work may share it.
The record is printed as the last stdout line, prefixed 'MON '.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

import psutil


def tree(p):
    try:
        return [p] + p.children(recursive=True)
    except psutil.Error:
        return []


def busy_jiffies():
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    return sum(f[:8]) - (f[3] + f[4])


def wait_quiet(max_wait, thresh=0.3):
    """Waits until the machine's busy cores over 1 s fall below `thresh` (or max_wait passes)."""
    hz = os.sysconf("SC_CLK_TCK")
    t0 = time.time()
    load = None
    while True:
        b0 = busy_jiffies()
        time.sleep(1.0)
        load = (busy_jiffies() - b0) / hz
        if load < thresh or time.time() - t0 > max_wait:
            return round(time.time() - t0, 1), round(load, 2)


def monitor(cmd, cpus=None, report_json=None, quiet_wait=0.0, log=None):
    """Runs `cmd` (a list) and returns the record described in the module doc."""
    if cpus is not None:
        cmd = ["taskset", "-c", str(cpus)] + list(cmd)
    waited, load = wait_quiet(quiet_wait) if quiet_wait > 0 else (0.0, None)
    if report_json and os.path.exists(report_json):
        os.remove(report_json)
    logf = open(log, "w") if log else None
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    except OSError as e:
        return dict(rc=127, wall_s=0.0, peak_rss_mib=0.0, cpu_s=0.0, cmd=" ".join(cmd), output_tail=[str(e)])
    root = psutil.Process(p.pid)
    peak = [0]
    cpu = {}
    role = {}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            tot = 0
            for q in tree(root):
                try:
                    tot += q.memory_info().rss
                    ct = q.cpu_times()
                    cpu[q.pid] = ct.user + ct.system
                    # Read on every sample: between fork and exec a child still shows its parent's
                    # arguments, and a zombie shows none (then the last role read stands).
                    argv = q.cmdline()
                    if argv:
                        role[q.pid] = argv[1] if len(argv) > 1 and not argv[1].startswith("-") else "main"
                except psutil.Error:
                    pass
            peak[0] = max(peak[0], tot)
            stop.wait(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    extra = {}
    tail = []
    for line in p.stdout:
        if logf:
            logf.write(line)
        tail = (tail + [line.rstrip("\n")])[-20:]
        if line.startswith("RESULT "):
            try:
                extra.update(json.loads(line[7:]))
            except ValueError:
                pass
    rc = p.wait()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    if logf:
        logf.close()
    rec = dict(rc=rc, wall_s=round(wall, 3), peak_rss_mib=round(peak[0] / 2**20, 1),
               cpu_s=round(sum(cpu.values()), 2), cpu_by_role=by_role(cpu, role), waited_quiet_s=waited, load_before=load,
               cpus=cpus, cmd=" ".join(cmd))
    rec.update(extra)
    if report_json:
        try:
            with open(report_json) as fh:
                rec["report"] = json.load(fh)
        except (OSError, ValueError) as e:
            rec["report_error"] = str(e)
    if rc != 0:
        rec["output_tail"] = tail
    return rec


def by_role(cpu, role):
    """CPU seconds summed per role (a process whose role was never read counts as "main")."""
    out = {}
    for pid, c in cpu.items():
        r = role.get(pid, "main")
        out[r] = round(out.get(r, 0.0) + c, 3)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpus", default=None)
    ap.add_argument("--report-json", default=None)
    ap.add_argument("--quiet-wait", type=float, default=0)
    ap.add_argument("--log", default=None)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        sys.exit("mon.py: no command")
    rec = monitor(cmd, a.cpus, a.report_json, a.quiet_wait, a.log)
    print("MON " + json.dumps(rec), flush=True)
    sys.exit(rec["rc"])


if __name__ == "__main__":
    main()
