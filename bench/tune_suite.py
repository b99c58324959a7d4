#!/usr/bin/env python3
"""The searches of bench/tune.sh: one search space, three ways of running its trials.

  ashaN_p2  ASHA early stopping (each setting of ASHA=eta:grace,...), 2 trials side by side
  full_seq  no early stopping, 1 trial at a time: the 16 trainings one after another
  full_p2   no early stopping, 2 trials side by side

All three read the same binary cache (built by a warm-up search first, timed apart), draw the same
trials (same seed) and rank them by holdout logloss. Records go to OUT/tune.jsonl, tables to
OUT/tune.md.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mon import monitor  # noqa: E402

ENV = os.environ.get
TRIALS = int(ENV("TRIALS", "16"))
PASSES = int(ENV("PASSES", "3"))
# ASHA settings as eta:grace pairs; the first is `starling tune`'s default.
ASHAS = [tuple(float(x) for x in p.split(":")) for p in ENV("ASHA", f"3:{1 / 9}, 2:0.25").split(",")]
MODEL = ENV("MODEL", "fm")
K = int(ENV("K", "4"))
ROUNDS = int(ENV("ROUNDS", "1"))
TOL = float(ENV("TOL", "0.001"))
QUIET_WAIT = float(ENV("QUIET_WAIT", "10"))

SPACE = """[search]
method = "random"
trials = {trials}
seed = 3
metric = "logloss"
{asha}
[params]
"optimizer.lr" = {{ log = [0.001, 0.5] }}
"optimizer.l2" = {{ log = [1e-7, 1e-3] }}
"""
ASHA = "[asha]\neta = {eta}\ngrace = {grace}\n"
# (name, (eta, grace) or None, parallel, label)
CONFIGS = [(f"asha{i + 1}_p2", a, 2, f"ASHA eta {a[0]:g} grace {a[1]:.3g}, 2 side by side")
           for i, a in enumerate(ASHAS)] + [
    ("full_seq", None, 1, "no ASHA, one after another"),
    ("full_p2", None, 2, "no ASHA, 2 side by side"),
]


def space_file(out, name, asha):
    path = os.path.join(out, f"tune-space-{name}.toml")
    with open(path, "w") as fh:
        fh.write(SPACE.format(trials=TRIALS, asha=ASHA.format(eta=asha[0], grace=asha[1]) if asha else ""))
    return path


def search(a, name, asha, parallel, trials=TRIALS):
    run_out = os.path.join(a.out, "tune-runs", name)
    shutil.rmtree(run_out, ignore_errors=True)
    cmd = [a.bin, "tune", "--train", os.path.join(a.data, "train.libsvm"), "--test",
           os.path.join(a.data, "test.libsvm"), "--format", "libsvm", "--model", MODEL, "--k", str(K),
           "--hash-bits", "20", "--passes", str(PASSES), "--space", space_file(a.out, name, asha),
           "--out", run_out, "--cache-dir", os.path.join(a.out, "tune-cache"),
           "--parallel", str(parallel), "--trials", str(trials), "--quiet"]
    rec = monitor(cmd, report_json=os.path.join(run_out, "trials.json"), quiet_wait=QUIET_WAIT)
    if rec["rc"] != 0:
        sys.exit(f"{name} failed:\n" + "\n".join(rec.get("output_tail", [])))
    rep = rec["report"]
    done = [t for t in rep["trials"] if t["status"] == "done"]
    best = next(t for t in rep["trials"] if t["id"] == rep["best"]) if rep["best"] else None
    rec.update(config=name, asha=list(asha) if asha else None, parallel=parallel,
               examples_trained=sum(t["examples"] for t in rep["trials"]),
               done=len(done), stopped=sum(t["status"] == "stopped" for t in rep["trials"]),
               failed=sum(t["status"] == "failed" for t in rep["trials"]),
               best_id=rep["best"], best_value=best["value"] if best else None,
               values={t["id"]: t["value"] for t in rep["trials"]})
    return rec


def per_round(records, fmt):
    """One table cell: `fmt` of each round's record, separated by ' / '."""
    return " / ".join(fmt(x) for x in records)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    run_id = time.strftime("%Y%m%dT%H%M%S")
    meta = json.load(open(os.path.join(a.data, "meta.json")))
    log = open(os.path.join(a.out, "tune.jsonl"), "a")

    def emit(kind, rec):
        rec = dict(rec, kind=kind, run=run_id)
        log.write(json.dumps(rec) + "\n")
        log.flush()

    shutil.rmtree(os.path.join(a.out, "tune-cache"), ignore_errors=True)
    print("warm-up: one trial, parsing the text into the cache", flush=True)
    warm = search(a, "warmup", None, 1, trials=1)
    emit("warmup", warm)
    runs = {name: [] for name, *_ in CONFIGS}
    for r in range(ROUNDS):
        for name, asha, parallel, _ in CONFIGS:
            rec = search(a, name, asha, parallel)
            emit("run", dict(rec, round=r))
            runs[name].append(rec)
            print(f"round {r + 1} {name}: {rec['wall_s']:.2f} s, {rec['examples_trained']:,} examples trained, "
                  f"best #{rec['best_id']} logloss {rec['best_value']:.5f}", flush=True)
    med = {n: statistics.median(x["wall_s"] for x in rs) for n, rs in runs.items()}
    last = {n: rs[-1] for n, rs in runs.items()}
    full = last["full_seq"]
    ranked = sorted((v, i) for i, v in full["values"].items() if v is not None)
    rank_of = {i: k + 1 for k, (_, i) in enumerate(ranked)}
    md = []
    md.append(f"Run `{run_id}` on {platform.node()} ({os.cpu_count()} CPUs): {meta['n_train']:,} train / "
              f"{meta['n_test']:,} test rows (LibSVM), seed {meta['seed']}; every trial {MODEL.upper()}"
              f"{f' k={K}' if MODEL != 'lr' else ''}, AdaGrad, hash bits 20, {PASSES} passes, online from the "
              f"binary cache; {TRIALS} random trials over `optimizer.lr` (log 0.001–0.5) × `optimizer.l2` "
              f"(log 1e-7–1e-3), seed 3. Medians of {ROUNDS} round(s).\n")
    wr = warm["report"]
    md.append(f"Warm-up (one trial, parsing the text into the cache once): {warm['wall_s']:.2f} s wall, "
              f"{wr['examples_parsed']:,} examples parsed. Every search below reads that cache "
              f"(`examples_parsed` 0 in each).\n")
    md.append("ASHA with 2 trials side by side is asynchronous: which trials it stops depends on the order "
              "results reach a rung, so rounds may differ; the columns after wall s give each round, "
              "separated by `/`.\n")
    md.append("| search | wall s (median) | CPU s | examples trained | done-stopped-failed | best trial | its holdout logloss |")
    md.append("|---|---|---|---|---|---|---|")
    for name, _, _, label in CONFIGS:
        rs = runs[name]
        cells = [
            per_round(rs, lambda x: f"{x['cpu_s']:.1f}"),
            per_round(rs, lambda x: f"{x['examples_trained']:,}"),
            per_round(rs, lambda x: f"{x['done']}-{x['stopped']}-{x['failed']}"),
            per_round(rs, lambda x: f"#{x['best_id']}"),
            per_round(rs, lambda x: f"{x['best_value']:.5f}"),
        ]
        md.append(f"| {label} | {med[name]:.2f} | " + " | ".join(cells) + " |")
    md.append("")
    md.append("| ratio | measured |")
    md.append("|---|---|")
    md.append(f"| wall: no ASHA one after another / no ASHA 2 side by side | {med['full_seq'] / med['full_p2']:.2f}x |")
    verdicts = {}
    for name, asha, _, label in CONFIGS:
        if not asha:
            continue
        md.append(f"| wall: no ASHA one after another / {label} | {med['full_seq'] / med[name]:.2f}x |")
        md.append(f"| wall: no ASHA 2 side by side / {label} | {med['full_p2'] / med[name]:.2f}x |")
        ex = statistics.median(r["examples_trained"] for r in runs[name])
        md.append(f"| examples trained (median): {label}, in full trainings | {ex / (full['examples_trained'] / TRIALS):.2f} of {TRIALS} |")
    md.append("")
    for name, asha, _, label in CONFIGS:
        if not asha:
            continue
        said = []
        for x in runs[name]:
            gap = x["best_value"] - full["best_value"]
            if x["best_id"] == full["best_id"]:
                said.append(f"#{x['best_id']}: the same winner")
            elif abs(gap) <= TOL:
                said.append(f"#{x['best_id']}: an equally good winner (within {TOL})")
            else:
                said.append(f"#{x['best_id']}: a worse winner (by {gap:.5f}, rank {rank_of.get(x['best_id'], '?')} of {len(ranked)})")
        verdicts[name] = said
        md.append(f"* {label}, round by round: " + "; ".join(said) + f". Run to completion, the best is "
                  f"#{full['best_id']} ({full['best_value']:.5f}).")
    text = "\n".join(md) + "\n"
    with open(os.path.join(a.out, "tune.md"), "w") as fh:
        fh.write(text)
    emit("summary", dict(median_wall=med, winners=verdicts))
    print("\n" + text)


if __name__ == "__main__":
    main()
