#!/usr/bin/env python3
"""xLearn LR or FM, one configuration: train on a LibSVM file, predict a test file, score it.

  python xl_run.py --train T.libsvm --test S.libsvm --model fm --k 8 --lr 0.05 --lam 2e-5 \
      --epochs 1 --nthread 1 --work DIR

xLearn parses the text and writes a binary cache (<file>.bin) next to it on first use; the cache
files are removed first, so the fit time includes parsing (and writing the cache), as a first pass
over text data does. Feature normalisation and early stopping are off.
Prints 'RESULT {"fit_s", "predict_s", "test_logloss", "test_auc", ...}'.
"""
import argparse
import json
import os
import re
import sys
import tempfile
import time

os.environ.setdefault("USER", "bench")  # xLearn crashes without $USER (aksnzhy/xlearn#215)

import numpy as np  # noqa: E402
import xlearn as xl  # noqa: E402
from sklearn.metrics import log_loss, roc_auc_score  # noqa: E402


def quietly(fn, *args):
    """Runs fn with the process's stdout (xLearn's C++ logging) captured; returns (result, text)."""
    sys.stdout.flush()
    cap = tempfile.TemporaryFile(mode="w+b")
    saved = os.dup(1)
    os.dup2(cap.fileno(), 1)
    try:
        res = fn(*args)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    cap.seek(0)
    return res, re.sub(rb"\x1b\[[0-9;]*m", b"", cap.read()).decode("utf-8", "replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--model", default="fm", choices=["lr", "fm"])
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--lam", type=float, default=0.00002)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--nthread", type=int, default=1)
    ap.add_argument("--opt", default="adagrad")
    ap.add_argument("--work", default="out/work")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    for f in (a.train + ".bin", a.test + ".bin"):
        if os.path.exists(f):
            os.remove(f)
    tag = f"xl_{a.model}"
    model_path = os.path.join(a.work, tag + ".model")
    pred_path = os.path.join(a.work, tag + ".pred")
    m = xl.create_linear() if a.model == "lr" else xl.create_fm()
    m.setTrain(a.train)
    m.disableNorm()
    m.disableEarlyStop()
    m.setQuiet()
    param = {"task": "binary", "lr": a.lr, "lambda": a.lam, "k": a.k, "epoch": a.epochs,
             "nthread": a.nthread, "opt": a.opt, "metric": "none"}
    t0 = time.perf_counter()
    _, log = quietly(m.fit, param, model_path)
    t1 = time.perf_counter()
    m.setTest(a.test)
    m.setSigmoid()
    quietly(m.predict, model_path, pred_path)
    t2 = time.perf_counter()
    p = np.clip(np.loadtxt(pred_path, dtype=np.float64, ndmin=1), 1e-7, 1 - 1e-7)
    with open(a.test, "rb") as fh:
        y = np.array([float(line.split(None, 1)[0]) > 0 for line in fh], dtype=np.float64)
    times = {k.strip().replace(" ", "_"): float(v) for k, v in re.findall(r"Time cost for ([a-z ]+): ([0-9.]+)", log)}
    for f in (a.train + ".bin", a.test + ".bin"):
        if os.path.exists(f):
            os.remove(f)
    print("RESULT " + json.dumps(dict(
        fit_s=round(t1 - t0, 3), predict_s=round(t2 - t1, 3), xl_times=times,
        test_logloss=round(float(log_loss(y, p, labels=[0, 1])), 5), test_auc=round(float(roc_auc_score(y, p)), 5),
        n_test=int(len(y)))), flush=True)


if __name__ == "__main__":
    main()
