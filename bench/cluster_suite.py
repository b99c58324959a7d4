#!/usr/bin/env python3
"""Cluster benchmark: `starling launch --servers 2 --workers 2` against the single-process
`starling train`, and both against Spark MLlib LogisticRegression in local[2], on one LibSVM file.
Called by cluster.sh, which builds Starling, prepares the venv (pyspark) and generates the data.

  python cluster_suite.py run --bin STARLING --data DIR --out DIR --rows N --test-rows M [...]
  python cluster_suite.py spark --train F --test F --num-features N [--ladder 5,10,20] [...]

`run` runs the Starling configs (single process and 2x2 launch, 1..P passes) for a few rounds,
interleaved, then Spark once (the `spark` mode below, as a child process under mon.py), and
appends JSON lines to OUT/cluster.jsonl: one "run" record per Starling run, one "spark" record,
one "summary"; the markdown tables go to OUT/cluster.md.

`spark` starts one Spark session, loads and caches the train file (timed), fits once to warm the
JVM up (timed, reported, not used), then fits LogisticRegression for every maxIter of the ladder
(each fit timed alone), scores the test rows with scikit-learn and prints one 'RESULT {json}' line.

Time to a target logloss: T = the worst of the three systems' best test loglosses (Starling single
process, Starling 2x2, Spark) plus --tol; each system's time is that of its cheapest run whose test
logloss is <= T (Starling: process wall time, median over rounds; Spark: fit alone, and train
load+cache+fit).
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable


# --- Spark ------------------------------------------------------------------------------------

def spark_main(a):
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    import numpy as np
    from sklearn.metrics import log_loss, roc_auc_score
    t00 = time.perf_counter()
    from pyspark.sql import SparkSession
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.functions import vector_to_array
    spark = (SparkSession.builder.master(a.master).appName("starling-cluster-bench")
             .config("spark.driver.memory", a.driver_mem)
             .config("spark.driver.maxResultSize", "4g")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", str(a.partitions))
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    t0 = time.perf_counter()

    def load(path):
        df = (spark.read.format("libsvm").option("numFeatures", a.num_features).load(path)
              .repartition(a.partitions).cache())
        return df, df.count()

    tr, n_train = load(a.train)
    t1 = time.perf_counter()
    te, n_test = load(a.test)
    t2 = time.perf_counter()

    def fit(max_iter):
        est = LogisticRegression(maxIter=max_iter, regParam=a.reg, elasticNetParam=0.0, tol=a.tol,
                                 standardization=False, fitIntercept=True)
        s = time.perf_counter()
        model = est.fit(tr)
        fit_s = time.perf_counter() - s
        try:
            iters = int(model.summary.totalIterations)
        except Exception:  # noqa: BLE001 - the summary is optional
            iters = None
        return model, fit_s, iters

    ladder = [int(x) for x in a.ladder.split(",") if x.strip()]
    _, warm_s, warm_iters = fit(a.warmup_iter)
    print(f"spark: session {t0 - t00:.1f}s, train load+cache {t1 - t0:.1f}s ({n_train} rows), "
          f"test {t2 - t1:.1f}s, warm-up fit maxIter={a.warmup_iter}: {warm_s:.1f}s", flush=True)
    fits = []
    for it in ladder:
        model, fit_s, iters = fit(it)
        s = time.perf_counter()
        rows = (model.transform(te).select("label", vector_to_array("probability")[1].alias("p")).collect())
        pred_s = time.perf_counter() - s
        yy = np.array([r[0] for r in rows]) > 0
        p = np.clip(np.array([r[1] for r in rows], dtype=np.float64), 1e-7, 1 - 1e-7)
        assert len(p) == n_test, (len(p), n_test)
        f = dict(max_iter=it, iterations=iters, fit_s=round(fit_s, 3), predict_s=round(pred_s, 3),
                 test_logloss=round(float(log_loss(yy, p, labels=[False, True])), 5),
                 test_auc=round(float(roc_auc_score(yy, p)), 5))
        fits.append(f)
        print(f"spark: maxIter={it} ({iters} iterations) fit {fit_s:.2f}s, test logloss "
              f"{f['test_logloss']:.5f} AUC {f['test_auc']:.4f}", flush=True)
    res = dict(master=a.master, partitions=a.partitions, num_features=a.num_features, reg=a.reg, tol=a.tol,
               session_s=round(t0 - t00, 2), load_train_s=round(t1 - t0, 3), load_test_s=round(t2 - t1, 3),
               n_train=n_train, n_test=n_test, warmup_iter=a.warmup_iter, warmup_iterations=warm_iters,
               warmup_fit_s=round(warm_s, 3), fits=fits)
    print("RESULT " + json.dumps(res), flush=True)
    spark.stop()


# --- Starling runs and the summary ------------------------------------------------------------

def starling_cmd(a, kind, passes, batch, report):
    d = a.data
    cmd = [a.bin, "train" if kind == "single" else "launch"]
    if kind == "launch":
        cmd += ["--servers", str(a.servers), "--workers", str(a.workers)]
    cmd += ["--train", f"{d}/train.libsvm", "--test", f"{d}/test.libsvm", "--format", "libsvm",
            "--model", "lr", "--optimizer", a.optimizer, "--hash-bits", str(a.hash_bits),
            "--passes", str(passes), "--threads", str(a.threads), "--quiet", "--report", report]
    if batch:
        cmd += ["--batch-size", str(batch)]
    return cmd + a.starling_args.split()


def configs(a):
    """name -> (kind, passes, batch size or None, description)."""
    c = {}
    for p in range(1, a.max_passes + 1):
        c[f"single_p{p}"] = ("single", p, None, f"starling train, {p} pass{'es' if p > 1 else ''}")
    c["single_b100_p1"] = ("single", 1, 100, "starling train --batch-size 100, 1 pass")
    for p in range(1, a.max_passes + 1):
        c[f"launch_p{p}"] = ("launch", p, None,
                             f"starling launch {a.servers}x{a.workers}, {p} pass{'es' if p > 1 else ''}")
    return c


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_starling(a, name, spec, rnd):
    from mon import monitor
    kind, passes, batch, desc = spec
    work = os.path.join(a.out, "work")
    logs = os.path.join(a.out, "logs")
    os.makedirs(work, exist_ok=True)
    os.makedirs(logs, exist_ok=True)
    tag = f"cluster_{name}_r{rnd}"
    report = os.path.join(work, tag + ".report.json")
    la = loadavg()
    s = monitor(starling_cmd(a, kind, passes, batch, report), None, report, a.quiet_wait,
                os.path.join(logs, tag + ".log"))
    rep = s.pop("report", None) or {}
    test = rep.get("test") or {}
    ok = s["rc"] == 0 and "train_seconds" in rep and "logloss" in test
    rec = dict(type="run", run_id=a.run_id, config=name, kind=kind, passes=passes, batch_size=batch, desc=desc,
               round=rnd, train_rows=a.rows, test_rows=a.test_rows, hash_bits=a.hash_bits, optimizer=a.optimizer,
               threads=a.threads, loadavg_before=la, host=os.uname().nodename,
               time=time.strftime("%Y-%m-%dT%H:%M:%S"), ok=ok, wall_s=s["wall_s"], peak_rss_mib=s["peak_rss_mib"],
               cpu_s=s["cpu_s"], worker_cpu_s=(s.get("cpu_by_role") or {}).get("worker"),
               server_cpu_s=(s.get("cpu_by_role") or {}).get("server"), train_s=rep.get("train_seconds"), test_logloss=test.get("logloss"),
               test_auc=test.get("auc"), progressive_logloss=rep.get("progressive_logloss"))
    if ok:
        n = a.rows * passes
        rec["examples_per_s"] = round(n / rep["train_seconds"])
        rec["examples_per_wall_s"] = round(n / s["wall_s"])
    tr = rep.get("traffic")
    if tr:
        ts = rep.get("train_seconds") or float("nan")
        rec["ps"] = dict(keys_pulled_per_s=tr.get("keys_pulled_per_s"), keys_pushed_per_s=tr.get("keys_pushed_per_s"),
                         mb_pulled_per_s=tr.get("bytes_pulled", 0) / 1e6 / ts,
                         mb_pushed_per_s=tr.get("bytes_pushed", 0) / 1e6 / ts,
                         keys_pulled=tr.get("keys_pulled"), keys_pushed=tr.get("keys_pushed"),
                         mb_pulled=tr.get("bytes_pulled", 0) / 1e6, mb_pushed=tr.get("bytes_pushed", 0) / 1e6,
                         wait_s=tr.get("wait_seconds"), steps=tr.get("steps"),
                         staleness_max=(rep.get("staleness") or {}).get("max"), mode=rep.get("mode"),
                         servers=rep.get("servers"))
    rec["mon"] = s
    rec["report"] = rep
    with open(os.path.join(a.out, "cluster.jsonl"), "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    status = "ok" if ok else f"FAILED (see {os.path.join(logs, tag + '.log')})"
    print(f"  round {rnd} {name:16s} {status}  wall {s['wall_s']:.2f}s  train {fmt(rec['train_s'], '.2f')}s  "
          f"logloss {fmt(rec['test_logloss'], '.5f')}  load {la[0] if la else 'n/a'}", flush=True)
    if not ok:
        for line in s.get("output_tail", [])[-8:]:
            print("    | " + line)
    return rec


def run_spark(a):
    from mon import monitor
    logs = os.path.join(a.out, "logs")
    os.makedirs(logs, exist_ok=True)
    cmd = [PY, os.path.abspath(__file__), "spark", "--train", f"{a.data}/train.libsvm", "--test",
           f"{a.data}/test.libsvm", "--num-features", str(1 << a.hash_bits), "--master", a.spark_master,
           "--partitions", str(a.spark_partitions), "--reg", str(a.spark_reg), "--ladder", a.spark_ladder,
           "--warmup-iter", str(a.spark_warmup_iter), "--driver-mem", a.spark_mem]
    la = loadavg()
    print(f"  spark {a.spark_master}, maxIter ladder {a.spark_ladder} (log: {logs}/cluster_spark.log)", flush=True)
    s = monitor(cmd, None, None, a.quiet_wait, os.path.join(logs, "cluster_spark.log"))
    ok = s["rc"] == 0 and bool(s.get("fits"))
    rec = dict(type="spark", run_id=a.run_id, ok=ok, train_rows=a.rows, test_rows=a.test_rows,
               loadavg_before=la, host=os.uname().nodename, time=time.strftime("%Y-%m-%dT%H:%M:%S"))
    rec.update(s)
    with open(os.path.join(a.out, "cluster.jsonl"), "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    if not ok:
        print("  spark FAILED:")
        for line in s.get("output_tail", [])[-12:]:
            print("    | " + line)
    else:
        for f in rec["fits"]:
            print(f"    maxIter {f['max_iter']:3d} ({f['iterations']} it)  fit {f['fit_s']:.2f}s  "
                  f"logloss {f['test_logloss']:.5f}  AUC {f['test_auc']:.4f}")
        print(f"    session {rec['session_s']}s, train load+cache {rec['load_train_s']}s, warm-up fit "
              f"(maxIter {rec['warmup_iter']}) {rec['warmup_fit_s']}s, process wall {rec['wall_s']}s", flush=True)
    return rec


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def summarize(a, cfgs, recs, spark):
    L = []  # markdown lines
    w = L.append
    rows = {}
    for name, spec in cfgs.items():
        rs = [r for r in recs if r["config"] == name and r["ok"]]
        if not rs:
            continue
        m = dict(n=len(rs), kind=spec[0], passes=spec[1], desc=spec[3])
        for k in ("examples_per_s", "examples_per_wall_s", "train_s", "wall_s", "peak_rss_mib", "cpu_s",
                  "worker_cpu_s", "server_cpu_s", "test_logloss", "test_auc"):
            m[k] = median([r.get(k) for r in rs])
        if spec[0] == "launch":
            for k in ("keys_pulled_per_s", "keys_pushed_per_s", "mb_pulled_per_s", "mb_pushed_per_s", "wait_s",
                      "steps", "mb_pulled", "mb_pushed", "staleness_max"):
                m[k] = median([(r.get("ps") or {}).get(k) for r in rs])
        rows[name] = m
    loads = [r["loadavg_before"][0] for r in recs if r.get("loadavg_before")]
    if spark and spark.get("loadavg_before"):
        loads.append(spark["loadavg_before"][0])
    meta = {}
    try:
        with open(os.path.join(a.data, "meta.json")) as fh:
            meta = json.load(fh)
        if meta.get("n_train") != a.rows:  # the data dir holds another size now (--summary-of)
            meta = {}
    except (OSError, ValueError):
        pass

    w(f"Run `{a.run_id}` on {os.uname().nodename} ({os.cpu_count()} CPUs): {a.rows:,} train / {a.test_rows:,} test "
      f"rows (LibSVM, ids < 2^{a.hash_bits}), seed {meta.get('seed', '?')}; Starling LR `--optimizer {a.optimizer} "
      f"--hash-bits {a.hash_bits} --threads {a.threads}`, medians of {a.rounds} round(s); Spark once. "
      f"1-min load average before the runs: {fmt(min(loads) if loads else None, '.2f')}–"
      f"{fmt(max(loads) if loads else None, '.2f')}.")
    if meta:
        w("")
        w(f"True model: test logloss {meta.get('oracle_test_logloss', float('nan')):.4f}, AUC "
          f"{meta.get('oracle_test_auc', float('nan')):.4f}; constant prediction logloss "
          f"{meta.get('constant_pred_logloss', float('nan')):.4f}.")
    w("")
    w("### Starling: 2x2 launch vs single process")
    w("")
    w("| config | examples/s (train) | examples/s (wall) | train s | wall s | peak RSS MiB | CPU s | test logloss | test AUC |")
    w("|---|---|---|---|---|---|---|---|---|")
    for name, m in rows.items():
        w(f"| {m['desc']} | {fmt(m['examples_per_s'], ',.0f')} | {fmt(m['examples_per_wall_s'], ',.0f')} | "
          f"{fmt(m['train_s'], '.2f')} | {fmt(m['wall_s'], '.2f')} | {fmt(m['peak_rss_mib'], ',.0f')} | "
          f"{fmt(m['cpu_s'], '.2f')} | {fmt(m['test_logloss'], '.5f')} | {fmt(m['test_auc'], '.4f')} |")
    ratios = {}
    w("")
    w(f"| passes | {a.servers}x{a.workers} launch / single process, examples/s (train) | same, examples/s (wall) | "
      "test logloss, launch − single |")
    w("|---|---|---|---|")
    for p in range(1, a.max_passes + 1):
        s_, l_ = rows.get(f"single_p{p}"), rows.get(f"launch_p{p}")
        if not (s_ and l_):
            continue
        r1 = l_["examples_per_s"] / s_["examples_per_s"]
        r2 = s_["wall_s"] / l_["wall_s"]
        ratios[f"launch/single examples_per_s p{p}"] = round(r1, 3)
        ratios[f"launch/single examples_per_wall_s p{p}"] = round(r2, 3)
        w(f"| {p} | {r1:.2f}x | {r2:.2f}x | {l_['test_logloss'] - s_['test_logloss']:+.5f} |")
    cpu_rows = []
    for p in range(1, a.max_passes + 1):
        s_, l_ = rows.get(f"single_p{p}"), rows.get(f"launch_p{p}")
        if s_ and l_ and s_["cpu_s"] and l_["worker_cpu_s"] is not None:
            rw, rt = l_["worker_cpu_s"] / s_["cpu_s"], l_["cpu_s"] / s_["cpu_s"]
            ratios[f"launch workers/single cpu_s p{p}"] = round(rw, 3)
            ratios[f"launch tree/single cpu_s p{p}"] = round(rt, 3)
            cpu_rows.append(f"| {p} | {s_['cpu_s']:.2f} | {l_['worker_cpu_s']:.2f} | {fmt(l_['server_cpu_s'], '.2f')} | "
                            f"{l_['cpu_s']:.2f} | **{rw:.2f}x** | {rt:.2f}x |")
    if cpu_rows:
        w("")
        w("CPU seconds for the same examples (user + system, per process as last sampled every 20 ms; the "
          "workers' share is the figure the launch adds per example):")
        w("")
        w("| passes | single process | launch: workers | servers | whole tree | workers / single | tree / single |")
        w("|---|---|---|---|---|---|---|")
        L.extend(cpu_rows)
    if any(m["kind"] == "launch" for m in rows.values()):
        w("")
        w(f"Parameter-server traffic of the {a.servers}x{a.workers} launch (its `--report`, per second of "
          "training; MB = 10^6 bytes, 8-byte key + 4-byte f32 value per key):")
        w("")
        w("| config | keys pulled/s | keys pushed/s | MB pulled/s | MB pushed/s | MB pulled | steps | time waited s | max staleness |")
        w("|---|---|---|---|---|---|---|---|---|")
        for name, m in rows.items():
            if m["kind"] != "launch":
                continue
            w(f"| {m['desc']} | {fmt(m['keys_pulled_per_s'], ',.0f')} | {fmt(m['keys_pushed_per_s'], ',.0f')} | "
              f"{fmt(m['mb_pulled_per_s'], '.1f')} | {fmt(m['mb_pushed_per_s'], '.1f')} | {fmt(m['mb_pulled'], '.1f')} | "
              f"{fmt(m['steps'], '.0f')} | {fmt(m['wait_s'], '.2f')} | {fmt(m['staleness_max'], '.0f')} |")

    # time to the target logloss
    tt = dict(tol=a.tol)
    if a.no_spark:
        w("")
        w("(Spark not run: no time-to-logloss comparison.)")
        return finish(a, L, rows, ratios, tt, recs, spark, loads)
    w("")
    w("### Time to the same test logloss: Starling vs Spark MLlib LogisticRegression")
    w("")
    fits = (spark or {}).get("fits") or []
    if spark and spark.get("ok"):
        w(f"Spark `{a.spark_master}`, {a.spark_partitions} partitions, `LogisticRegression(regParam={a.spark_reg}, "
          f"elasticNetParam=0, standardization=False, tol=1e-9)` (L-BFGS), numFeatures 2^{a.hash_bits}; session start "
          f"{spark['session_s']:.1f} s, train load+cache {spark['load_train_s']:.2f} s, first fit (maxIter "
          f"{spark['warmup_iter']}, JVM warm-up, not used) {spark['warmup_fit_s']:.2f} s, process wall {spark['wall_s']:.1f} s, "
          f"peak RSS {spark['peak_rss_mib']:,.0f} MiB.")
        w("")
        w("| Spark maxIter | iterations | fit s | load+cache+fit s | test logloss | test AUC |")
        w("|---|---|---|---|---|---|")
        for f in fits:
            w(f"| {f['max_iter']} | {f['iterations']} | {f['fit_s']:.2f} | {spark['load_train_s'] + f['fit_s']:.2f} | "
              f"{f['test_logloss']:.5f} | {f['test_auc']:.4f} |")
    else:
        w("Spark: no result (see `bench/out/logs/cluster_spark.log`).")
    bests = {}
    for kind in ("single", "launch"):
        ll = [m["test_logloss"] for n, m in rows.items() if m["kind"] == kind and not n.startswith("single_b")]
        if ll:
            bests[kind] = min(ll)
    if fits:
        bests["spark"] = min(f["test_logloss"] for f in fits)
    tt["best_logloss"] = bests
    w("")
    if len(bests) >= 2:
        T = max(bests.values()) + a.tol
        tt["target"] = round(T, 5)
        w(f"Best test logloss: " + ", ".join(f"{k} {v:.5f}" for k, v in bests.items()) +
          f". Target T = worst of these + {a.tol} = **{T:.5f}**.")
        w("")
        w("| system | cheapest run reaching T | its test logloss | time s |")
        w("|---|---|---|---|")
        times = {}
        for kind in ("single", "launch"):
            ok = [(m["wall_s"], n, m) for n, m in rows.items()
                  if m["kind"] == kind and not n.startswith("single_b") and m["test_logloss"] <= T]
            if ok:
                wall, n, m = min(ok)
                times[kind] = wall
                tt[kind] = dict(config=n, wall_s=wall, test_logloss=m["test_logloss"])
                w(f"| Starling {'single process' if kind == 'single' else f'{a.servers}x{a.workers} launch'} "
                  f"(process wall) | {m['desc']} | {m['test_logloss']:.5f} | {wall:.2f} |")
            elif kind in bests:
                w(f"| Starling {kind} | does not reach T | | |")
        ok = [f for f in fits if f["test_logloss"] <= T]
        if ok:
            f = min(ok, key=lambda f: f["fit_s"])
            times["spark_fit"] = f["fit_s"]
            times["spark_load_fit"] = spark["load_train_s"] + f["fit_s"]
            tt["spark"] = dict(max_iter=f["max_iter"], iterations=f["iterations"], fit_s=f["fit_s"],
                               load_cache_fit_s=round(times["spark_load_fit"], 3), test_logloss=f["test_logloss"])
            w(f"| Spark, fit only (a later fit in the session) | maxIter {f['max_iter']} | {f['test_logloss']:.5f} | {f['fit_s']:.2f} |")
            w(f"| Spark, train load+cache+fit | maxIter {f['max_iter']} | {f['test_logloss']:.5f} | {times['spark_load_fit']:.2f} |")
        elif fits:
            tt["spark"] = None
            w(f"| Spark | **never reaches T within maxIter {a.spark_ladder}** | | |")
        w("")
        w(f"| ratio (Spark time / Starling time) | measured | target |")
        w("|---|---|---|")
        for sk, sl in (("spark_fit", "Spark fit only"), ("spark_load_fit", "Spark load+cache+fit")):
            for kind, kl in (("single", "Starling single process"), ("launch", f"Starling {a.servers}x{a.workers} launch")):
                if sk in times and kind in times:
                    r = times[sk] / times[kind]
                    ratios[f"{sk}/{kind}"] = round(r, 2)
                    w(f"| {sl} / {kl} | {r:.1f}x | >= 10x ({'met' if r >= 10 else 'not met'}) |")
        if fits and "spark_fit" not in times:
            w("| Spark / Starling | n/a: Spark never reached T | >= 10x |")
    else:
        w("Not enough results to compute a target logloss.")
    return finish(a, L, rows, ratios, tt, recs, spark, loads)


def finish(a, L, rows, ratios, tt, recs, spark, loads):
    md = "\n".join(L) + "\n"
    print()
    print(md)
    with open(os.path.join(a.out, "cluster.md"), "w") as fh:
        fh.write(md)
    failed = sorted({r["config"] for r in recs if not r["ok"]} | ({"spark"} if spark and not spark.get("ok") else set()))
    summ = dict(type="summary", run_id=a.run_id, train_rows=a.rows, test_rows=a.test_rows, rounds=a.rounds,
                hash_bits=a.hash_bits, optimizer=a.optimizer, medians=rows, ratios=ratios, time_to_target=tt,
                failed=failed, loadavg_range=[min(loads), max(loads)] if loads else None,
                time=time.strftime("%Y-%m-%dT%H:%M:%S"))
    if a.summary_of:
        print(f"wrote {a.out}/cluster.md (from the records of run {a.run_id}; nothing appended)")
    else:
        with open(os.path.join(a.out, "cluster.jsonl"), "a") as fh:
            fh.write(json.dumps(summ) + "\n")
        print(f"wrote {a.out}/cluster.md and appended to {a.out}/cluster.jsonl")
    if failed:
        print(f"failed: {', '.join(failed)} (see {a.out}/logs)")
    return failed


def run_main(a):
    os.makedirs(a.out, exist_ok=True)
    cfgs = configs(a)
    recs = []
    spark = None
    if a.summary_of:
        # rebuild the tables of an earlier run from its records (cluster.md is overwritten by every run)
        a.run_id = a.summary_of
        with open(os.path.join(a.out, "cluster.jsonl")) as fh:
            for line in fh:
                r = json.loads(line)
                if r.get("run_id") != a.run_id:
                    continue
                if r["type"] == "run":
                    recs.append(r)
                elif r["type"] == "spark":
                    spark = r
        if not recs and not spark:
            sys.exit(f"no records of run {a.run_id} in {a.out}/cluster.jsonl")
        first = (recs or [spark])[0]
        a.rows, a.test_rows = first["train_rows"], first["test_rows"]
        if recs:
            a.hash_bits, a.optimizer, a.threads = recs[0]["hash_bits"], recs[0]["optimizer"], recs[0]["threads"]
            a.rounds = max(r["round"] for r in recs)
            a.max_passes = max(r["passes"] for r in recs)
        a.no_spark = spark is None
        cfgs = configs(a)
    elif a.bin:
        print(f"run {a.run_id}: Starling {', '.join(cfgs)}; {a.rounds} round(s)", flush=True)
        for rnd in range(1, a.rounds + 1):
            for name, spec in cfgs.items():
                recs.append(run_starling(a, name, spec, rnd))
    if not a.no_spark and not a.summary_of:
        spark = run_spark(a)
    failed = summarize(a, cfgs, recs, spark)
    sys.exit(1 if failed else 0)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("run", help="run the whole comparison")
    r.add_argument("--bin", default=None, help="starling binary (Starling runs are skipped without it)")
    r.add_argument("--data", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--rows", type=int, required=True)
    r.add_argument("--test-rows", type=int, required=True)
    r.add_argument("--hash-bits", type=int, default=20)
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--max-passes", type=int, default=3)
    r.add_argument("--servers", type=int, default=2)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--optimizer", default="ftrl")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--starling-args", default="", help="extra flags for every Starling run")
    r.add_argument("--quiet-wait", type=float, default=10.0)
    r.add_argument("--tol", type=float, default=0.001)
    r.add_argument("--no-spark", action="store_true")
    r.add_argument("--spark-master", default="local[2]")
    r.add_argument("--spark-partitions", type=int, default=2)
    r.add_argument("--spark-reg", type=float, default=1e-4)
    r.add_argument("--spark-ladder", default="5,10,20,40,80")
    r.add_argument("--spark-warmup-iter", type=int, default=5)
    r.add_argument("--spark-mem", default="6g")
    r.add_argument("--run-id", default=time.strftime("%Y%m%dT%H%M%S"))
    r.add_argument("--summary-of", default=None, metavar="RUN_ID",
                   help="run nothing: rebuild cluster.md from the records of an earlier run in cluster.jsonl")
    s = sub.add_parser("spark", help="one Spark session: load, warm up, fit the maxIter ladder")
    s.add_argument("--train", required=True)
    s.add_argument("--test", required=True)
    s.add_argument("--num-features", type=int, required=True)
    s.add_argument("--master", default="local[2]")
    s.add_argument("--partitions", type=int, default=2)
    s.add_argument("--reg", type=float, default=1e-4)
    s.add_argument("--tol", type=float, default=1e-9)
    s.add_argument("--ladder", default="5,10,20,40,80")
    s.add_argument("--warmup-iter", type=int, default=5)
    s.add_argument("--driver-mem", default="6g")
    a = ap.parse_args()
    if a.mode == "spark":
        spark_main(a)
    else:
        sys.path.insert(0, HERE)
        run_main(a)


if __name__ == "__main__":
    main()
