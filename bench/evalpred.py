#!/usr/bin/env python3
"""Test logloss and AUC of a predictions file against the labels of a data file.

  python evalpred.py PRED_FILE DATA_FILE

PRED_FILE: one probability per line (first whitespace-separated token).
DATA_FILE: LibSVM / libFFM / VW text (label = first token; > 0 is positive, so VW's -1/1 works)
or Criteo TSV. Prints 'RESULT {"test_logloss": .., "test_auc": .., "n_test": ..}'.
"""
import json
import sys

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def labels(path):
    ys = []
    with open(path, "rb") as fh:
        for line in fh:
            tok = line.split(None, 1)[0] if line.strip() else b"0"
            ys.append(float(tok) > 0)
    return np.array(ys, dtype=np.float64)


def main():
    pred = np.loadtxt(sys.argv[1], usecols=0, dtype=np.float64, ndmin=1)
    y = labels(sys.argv[2])
    if len(pred) != len(y):
        sys.exit(f"evalpred: {len(pred)} predictions for {len(y)} labelled rows")
    p = np.clip(pred, 1e-7, 1 - 1e-7)
    print("RESULT " + json.dumps({"test_logloss": round(float(log_loss(y, p, labels=[0, 1])), 5),
                                  "test_auc": round(float(roc_auc_score(y, p)), 5), "n_test": int(len(y))}))


if __name__ == "__main__":
    main()
