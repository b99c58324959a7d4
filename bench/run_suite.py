#!/usr/bin/env python3
"""Runs the single-machine comparison (Starling vs Vowpal Wabbit vs xLearn) for a few rounds,
interleaved so every system sees the same machine conditions, then prints medians and ratios.
Called by single_machine.sh, which builds Starling, prepares the venv and generates the data.

  python run_suite.py --bin STARLING --data DIR --out DIR [--rounds 3] [--configs a,b,..]

Each config run appends one JSON line (type "run") to OUT/results.jsonl; the summary (type
"summary") is appended last. Train throughput = train rows / the system's own training time:
Starling's report train_seconds, VW's Workspace time (construct, parse, learn, save; no Python
start-up), xLearn's fit time (parse, cache, train, save). All include parsing the text.
"""
import argparse
import json
import os
import statistics
import sys
import time

from mon import monitor

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable

# name -> (system, model, pinned, description)
CONFIGS = {
    "starling_lr": ("starling", "lr", True, "Starling LR, AdaGrad, VW text, 1 thread"),
    "vw_lr": ("vw", "lr", True, "Vowpal Wabbit LR (adaptive SGD, -b 24)"),
    "starling_fm": ("starling", "fm", True, "Starling FM k=8, VW text, 1 thread"),
    "vw_q_ab": ("vw", "lr+q", True, "Vowpal Wabbit -q ab"),
    "vw_lrq_ab8": ("vw", "lrq", True, "Vowpal Wabbit --lrq ab8"),
    "starling_fm_libsvm": ("starling", "fm", True, "Starling FM k=8, LibSVM, 1 thread"),
    "xl_fm": ("xlearn", "fm", True, "xLearn FM k=8, LibSVM, 1 thread"),
    "starling_lr_t1": ("starling", "lr", False, "Starling LR, 1 thread, not pinned"),
    "starling_lr_t2": ("starling", "lr", False, "Starling LR, 2 threads, not pinned"),
}
DEFAULT = list(CONFIGS)
# ratio name -> (numerator config, denominator config)
RATIOS = {
    "starling_lr/vw_lr examples/s": ("starling_lr", "vw_lr"),
    "starling_fm/vw_q_ab examples/s": ("starling_fm", "vw_q_ab"),
    "starling_fm/vw_lrq_ab8 examples/s": ("starling_fm", "vw_lrq_ab8"),
    "starling_fm_libsvm/xl_fm examples/s": ("starling_fm_libsvm", "xl_fm"),
    "threads2/threads1 examples/s": ("starling_lr_t2", "starling_lr_t1"),
}


def starling_cmd(a, name, report):
    d = a.data
    if name in ("starling_lr", "starling_lr_t1", "starling_lr_t2"):
        threads = "2" if name == "starling_lr_t2" else "1"
        cmd = [a.bin, "train", "--train", f"{d}/train.vw", "--test", f"{d}/test.vw", "--format", "vw",
               "--model", "lr", "--optimizer", "adagrad", "--hash-bits", "24", "--passes", "1",
               "--threads", threads, "--quiet", "--report", report]
        return cmd + a.lr_args.split()
    fmt = "libsvm" if name == "starling_fm_libsvm" else "vw"
    cmd = [a.bin, "train", "--train", f"{d}/train.{fmt}", "--test", f"{d}/test.{fmt}", "--format", fmt,
           "--model", "fm", "--k", "8", "--optimizer", "adagrad", "--hash-bits", "24", "--passes", "1",
           "--threads", "1", "--quiet", "--report", report]
    return cmd + a.fm_args.split()


def run_config(a, name, rnd):
    system, model, pinned, desc = CONFIGS[name]
    cpus = a.cpu if pinned else None
    work = os.path.join(a.out, "work")
    logs = os.path.join(a.out, "logs")
    os.makedirs(work, exist_ok=True)
    os.makedirs(logs, exist_ok=True)
    tag = f"{name}_r{rnd}"
    rec = dict(type="run", run_id=a.run_id, config=name, system=system, model=model, desc=desc, round=rnd,
               pinned=pinned, train_rows=a.rows, test_rows=a.test_rows, host=os.uname().nodename,
               time=time.strftime("%Y-%m-%dT%H:%M:%S"))
    steps = []
    ok = True
    if system == "starling":
        report = os.path.join(work, tag + ".report.json")
        s = monitor(starling_cmd(a, name, report), cpus, report, a.quiet_wait, os.path.join(logs, tag + ".log"))
        steps.append(s)
        rep = s.get("report") or {}
        test = rep.get("test") or {}
        ok = s["rc"] == 0 and "train_seconds" in rep
        rec.update(train_s=rep.get("train_seconds"), test_logloss=test.get("logloss"), test_auc=test.get("auc"),
                   progressive_logloss=rep.get("progressive_logloss"))
    elif system == "vw":
        model_path = os.path.join(work, tag + ".vw")
        preds = os.path.join(work, tag + ".pred")
        extra = {"vw_lr": [], "vw_q_ab": ["-q", "ab"], "vw_lrq_ab8": ["--lrq", "ab8"]}[name]
        train = [PY, os.path.join(HERE, "vw_run.py"), "-d", f"{a.data}/train.vw", "--loss_function", "logistic",
                 "-b", "24", "--link", "logistic", "--quiet", "-f", model_path] + extra + a.vw_args.split()
        test = [PY, os.path.join(HERE, "vw_run.py"), "-t", "-i", model_path, "-d", f"{a.data}/test.vw",
                "--link", "logistic", "--quiet", "-p", preds]
        s1 = monitor(train, cpus, None, a.quiet_wait, os.path.join(logs, tag + ".train.log"))
        steps.append(s1)
        if s1["rc"] == 0:
            s2 = monitor(test, cpus, None, 0, os.path.join(logs, tag + ".test.log"))
            steps.append(s2)
            ev = monitor([PY, os.path.join(HERE, "evalpred.py"), preds, f"{a.data}/test.vw"], None, None, 0)
            ok = s2["rc"] == 0 and ev["rc"] == 0
            rec.update(train_s=s1.get("vw_s"), test_logloss=ev.get("test_logloss"), test_auc=ev.get("test_auc"))
            for f in (model_path, preds):
                if os.path.exists(f):
                    os.remove(f)
        else:
            ok = False
    elif system == "xlearn":
        cmd = [PY, os.path.join(HERE, "xl_run.py"), "--train", f"{a.data}/train.libsvm", "--test",
               f"{a.data}/test.libsvm", "--model", "fm", "--k", "8", "--lr", "0.05", "--lam", "0.00002",
               "--epochs", "1", "--nthread", "1", "--work", work] + a.xl_args.split()
        s = monitor(cmd, cpus, None, a.quiet_wait, os.path.join(logs, tag + ".log"))
        steps.append(s)
        ok = s["rc"] == 0 and "fit_s" in s
        rec.update(train_s=s.get("fit_s"), test_logloss=s.get("test_logloss"), test_auc=s.get("test_auc"))
    rec["ok"] = ok
    rec["wall_s"] = round(sum(s["wall_s"] for s in steps), 3)
    rec["peak_rss_mib"] = max((s["peak_rss_mib"] for s in steps), default=None)
    if ok and rec.get("train_s"):
        rec["examples_per_s"] = round(a.rows / rec["train_s"])
    rec["steps"] = steps
    with open(os.path.join(a.out, "results.jsonl"), "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    status = "ok" if ok else "FAILED (see %s)" % os.path.join(logs, tag + "*.log")
    print(f"  round {rnd} {name:20s} {status}  wall {rec['wall_s']:.1f}s  ex/s {rec.get('examples_per_s')}  "
          f"auc {fmt(rec.get('test_auc'), '.4f')}", flush=True)
    if not ok:
        for s in steps:
            for line in s.get("output_tail", [])[-8:]:
                print("    | " + line)
    return rec


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def summarize(a, recs):
    by = {}
    for r in recs:
        if r["ok"]:
            by.setdefault(r["config"], []).append(r)
    rows = {}
    for name in a.configs:
        rs = by.get(name, [])
        if not rs:
            continue
        rows[name] = dict(
            n=len(rs), examples_per_s=median([r.get("examples_per_s") for r in rs]),
            train_s=median([r.get("train_s") for r in rs]), wall_s=median([r["wall_s"] for r in rs]),
            peak_rss_mib=median([r["peak_rss_mib"] for r in rs]),
            test_logloss=median([r.get("test_logloss") for r in rs]), test_auc=median([r.get("test_auc") for r in rs]))
    print()
    print(f"Medians over {a.rounds} round(s); {a.rows:,} train / {a.test_rows:,} test rows; pinned = taskset -c {a.cpu}")
    print()
    print("| config | system | pinned | examples/s | train s | wall s | peak RSS MiB | test logloss | test AUC |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, m in rows.items():
        system, _, pinned, desc = CONFIGS[name]
        print(f"| {name} | {desc} | {'yes' if pinned else 'no'} | {fmt(m['examples_per_s'], ',.0f')} | "
              f"{fmt(m['train_s'], '.2f')} | {fmt(m['wall_s'], '.2f')} | {fmt(m['peak_rss_mib'], ',.0f')} | "
              f"{fmt(m['test_logloss'], '.4f')} | {fmt(m['test_auc'], '.4f')} |")
    failed = sorted({r["config"] for r in recs if not r["ok"]})
    if failed:
        print(f"\nfailed configs (see {a.out}/logs): {', '.join(failed)}")
    ratios = {}
    for label, (num, den) in RATIOS.items():
        if num in rows and den in rows and rows[num]["examples_per_s"] and rows[den]["examples_per_s"]:
            ratios[label] = round(rows[num]["examples_per_s"] / rows[den]["examples_per_s"], 3)
    if ratios:
        print()
        for k, v in ratios.items():
            print(f"{k:40s} {v:.2f}x")
    meta = {}
    try:
        with open(os.path.join(a.data, "meta.json")) as fh:
            meta = json.load(fh)
        print(f"\noracle (true model) test logloss {meta.get('oracle_test_logloss'):.4f} AUC "
              f"{meta.get('oracle_test_auc'):.4f}; constant prediction logloss {meta.get('constant_pred_logloss'):.4f}")
    except (OSError, ValueError, TypeError):
        pass
    summ = dict(type="summary", run_id=a.run_id, train_rows=a.rows, test_rows=a.test_rows, rounds=a.rounds,
                medians=rows, ratios=ratios, failed=failed,
                oracle_test_logloss=meta.get("oracle_test_logloss"), oracle_test_auc=meta.get("oracle_test_auc"),
                time=time.strftime("%Y-%m-%dT%H:%M:%S"))
    with open(os.path.join(a.out, "results.jsonl"), "a") as fh:
        fh.write(json.dumps(summ) + "\n")
    return failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=None, help="starling binary (Starling configs are skipped without it)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--test-rows", type=int, required=True)
    ap.add_argument("--configs", default=",".join(DEFAULT))
    ap.add_argument("--cpu", default="0")
    ap.add_argument("--quiet-wait", type=float, default=20.0)
    ap.add_argument("--no-xlearn", action="store_true")
    ap.add_argument("--lr-args", default="", help="extra flags for Starling LR runs")
    ap.add_argument("--fm-args", default="", help="extra flags for Starling FM runs")
    ap.add_argument("--vw-args", default="", help="extra flags for VW training runs")
    ap.add_argument("--xl-args", default="", help="extra flags for xl_run.py")
    ap.add_argument("--run-id", default=time.strftime("%Y%m%dT%H%M%S"))
    a = ap.parse_args()
    a.configs = [c.strip() for c in a.configs.split(",") if c.strip()]
    unknown = [c for c in a.configs if c not in CONFIGS]
    if unknown:
        sys.exit(f"unknown configs {unknown}; known: {', '.join(CONFIGS)}")
    if a.no_xlearn:
        a.configs = [c for c in a.configs if CONFIGS[c][0] != "xlearn"]
    if not a.bin:
        a.configs = [c for c in a.configs if CONFIGS[c][0] != "starling"]
    os.makedirs(a.out, exist_ok=True)
    print(f"run {a.run_id}: {', '.join(a.configs)}; {a.rounds} round(s)", flush=True)
    recs = []
    for rnd in range(1, a.rounds + 1):
        for name in a.configs:
            recs.append(run_config(a, name, rnd))
    failed = summarize(a, recs)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
