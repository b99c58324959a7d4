#!/usr/bin/env python3
"""A plain PyTorch implementation of Starling's ready deep models (and FM), for comparing test
AUC and speed on the same data with the same hyperparameters and protocol.

Reads VW text as Starling does with `features.namespaces`: each namespace is a field, its tokens
(`tok` or `tok:value`) pooled by sum; the label is 1 when > 0. Models and training mirror
Starling's defaults: embeddings of `--dim` (uniform ±0.01) in a row per (field, token) with a
linear weight (zero), AdaGrad (lr 0.05, eps 1e-6) on them; dense layers Glorot-uniform with zero
biases, Adam (lr 1e-3); mean log loss over batches of 256; after every epoch the validation AUC,
the best epoch kept, learning rates ÷10 on a plateau, stop after 2 epochs without gain.

    python3 torch_reference.py --model deepfm --train train.vw --valid valid.vw --test test.vw \\
        --namespaces uiagozyc [--dropout 0.2] [--threads 2]

Prints one RESULT line of JSON: model, test AUC and logloss, training examples/s, epochs.
"""
import argparse
import json
import time

import numpy as np
import torch
from sklearn.metrics import log_loss, roc_auc_score
from torch import nn

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="deepfm", choices=["fm", "wide_deep", "deepfm", "dcn", "dlrm"])
ap.add_argument("--train", required=True)
ap.add_argument("--valid", required=True)
ap.add_argument("--test", required=True)
ap.add_argument("--namespaces", required=True)
ap.add_argument("--dim", type=int, default=10)
ap.add_argument("--mlp", default="400,400,400")
ap.add_argument("--dropout", type=float, default=0.0)
ap.add_argument("--cross-layers", type=int, default=3)
ap.add_argument("--v1", action="store_true", help="DCN's vector cross layers instead of DCN-v2's matrices")
ap.add_argument("--batch", type=int, default=256)
ap.add_argument("--epochs", type=int, default=10)
ap.add_argument("--patience", type=int, default=2)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--seed", type=int, default=42)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
NS = a.namespaces
F = len(NS)
vocab = {}  # (field, token) -> row; rows are shared by every field's table, as Starling's keys are


def read(path):
    """Per example: label, and per field (ids, values); unseen tokens get new rows."""
    labels, items = [], []
    with open(path) as f:
        for line in f:
            head, *parts = line.rstrip("\n").split("|")
            labels.append(1.0 if float(head.split()[0]) > 0 else 0.0)
            ex = [[] for _ in range(F)]
            for p in parts:
                toks = p.split()
                if not toks or p[0] == " ":
                    continue
                fld = NS.find(toks[0][0])
                if fld < 0:
                    continue
                for t in toks[1:]:
                    tok, _, val = t.partition(":")
                    row = vocab.setdefault((fld, tok), len(vocab) + 1)  # 0: padding
                    ex[fld].append((row, float(val) if val else 1.0))
            items.append(ex)
    return np.array(labels, dtype=np.float32), items


def tensors(items):
    """Flat EmbeddingBag inputs per field: ids, offsets, per-sample weights."""
    out = []
    for fld in range(F):
        ids, offs, vals = [], [], []
        for ex in items:
            offs.append(len(ids))
            for r, v in ex[fld]:
                ids.append(r)
                vals.append(v)
        out.append((torch.tensor(ids, dtype=torch.long), torch.tensor(offs, dtype=torch.long), torch.tensor(vals)))
    return out


def batch_of(items, lo, hi):
    return tensors(items[lo:hi])


t_load = time.perf_counter()
ytr, tr = read(a.train)
yva, va = read(a.valid)
yte, te = read(a.test)
load_s = time.perf_counter() - t_load
ROWS = len(vocab) + 1
sizes = [int(s) for s in a.mlp.split(",") if s]


def mlp(inp, sizes, last_act):
    layers, w = [], inp
    for i, s in enumerate(sizes):
        layers.append(nn.Linear(w, s))
        if i + 1 < len(sizes) or last_act:
            layers.append(nn.ReLU())
            if a.dropout > 0 and i + 1 < len(sizes):
                layers.append(nn.Dropout(a.dropout))
        w = s
    return nn.Sequential(*layers)


class CrossV2(nn.Module):
    def __init__(self, n, layers, v2):
        super().__init__()
        self.v2 = v2
        self.w = nn.ModuleList([nn.Linear(n, n if v2 else 1, bias=False) for _ in range(layers)])
        self.b = nn.ParameterList([nn.Parameter(torch.zeros(n)) for _ in range(layers)])

    def forward(self, x0):
        x = x0
        for w, b in zip(self.w, self.b):
            x = x0 * (w(x) + b) + x if self.v2 else x0 * w(x) + b + x
        return x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        d, n = a.dim, F * a.dim
        self.emb = nn.EmbeddingBag(ROWS, d, mode="sum", sparse=True, padding_idx=0)
        self.lin = nn.EmbeddingBag(ROWS, 1, mode="sum", sparse=True, padding_idx=0)
        self.bias = nn.EmbeddingBag(1, 1, mode="sum", sparse=True)  # Starling's bias feature
        nn.init.uniform_(self.emb.weight, -0.01, 0.01)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.bias.weight)
        m = a.model
        if m in ("wide_deep", "deepfm"):
            self.deep = mlp(n, sizes + [1], False)
        elif m == "dcn":
            self.cross = CrossV2(n, a.cross_layers, not a.v1)
            self.deep = mlp(n, sizes, True)
            self.out = nn.Linear(n + sizes[-1], 1)
        elif m == "dlrm":
            self.deep = mlp(F * (F - 1) // 2, sizes + [1], False)
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.xavier_uniform_(mod.weight)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)

    def forward(self, fields):
        b = fields[0][1].shape[0]
        vs = [self.emb(i, o, per_sample_weights=v) for i, o, v in fields]  # F × [b, d]
        e = torch.stack(vs, 1)  # [b, F, d]
        flat = e.reshape(b, -1)
        wide = sum(self.lin(i, o, per_sample_weights=v) for i, o, v in fields)[:, 0]
        wide = wide + self.bias(torch.zeros(b, dtype=torch.long), torch.arange(b))[:, 0]
        m = a.model
        if m == "fm" or m == "deepfm":
            s = e.sum(1)
            fm = 0.5 * (s * s - (e * e).sum(1)).sum(1)
        if m == "fm":
            return wide + fm
        if m == "wide_deep":
            return wide + self.deep(flat)[:, 0]
        if m == "deepfm":
            return wide + fm + self.deep(flat)[:, 0]
        if m == "dcn":
            return self.out(torch.cat([self.cross(flat), self.deep(flat)], 1))[:, 0]
        if m == "dlrm":
            z = torch.bmm(e, e.transpose(1, 2))
            iu = torch.triu_indices(F, F, 1)
            return self.deep(z[:, iu[0], iu[1]])[:, 0]


net = Net()
sparse = [p for n_, p in net.named_parameters() if n_.startswith(("emb", "lin", "bias"))]
dense = [p for n_, p in net.named_parameters() if not n_.startswith(("emb", "lin", "bias"))]
opts = [torch.optim.Adagrad(sparse, lr=0.05, eps=1e-6)]
if dense:
    opts.append(torch.optim.Adam(dense, lr=1e-3))
loss_fn = nn.BCEWithLogitsLoss()


def scores(items):
    net.eval()
    out = []
    with torch.no_grad():
        for lo in range(0, len(items), 4096):
            out.append(torch.sigmoid(net(batch_of(items, lo, lo + 4096))).numpy())
    net.train()
    return np.concatenate(out)


best, best_state, bad, epochs, train_s = -1.0, None, 0, 0, 0.0
ytr_t = torch.from_numpy(ytr)
for epoch in range(a.epochs):
    t0 = time.perf_counter()
    for lo in range(0, len(tr), a.batch):
        fields = batch_of(tr, lo, lo + a.batch)
        for o in opts:
            o.zero_grad()
        loss = loss_fn(net(fields), ytr_t[lo : lo + a.batch])
        loss.backward()
        for o in opts:
            o.step()
    train_s += time.perf_counter() - t0
    epochs += 1
    auc = roc_auc_score(yva, scores(va))
    if auc > best:
        best, bad = auc, 0
        best_state = {k: v.clone() for k, v in net.state_dict().items()}
    else:
        bad += 1
        for o in opts:
            for g in o.param_groups:
                g["lr"] /= 10
        if bad >= a.patience:
            break
net.load_state_dict(best_state)
p = scores(te)
print(
    "RESULT "
    + json.dumps(
        {
            "model": a.model,
            "test_auc": roc_auc_score(yte, p),
            "test_logloss": log_loss(yte, np.clip(p, 1e-7, 1 - 1e-7)),
            "valid_auc": best,
            "epochs": epochs,
            "train_examples_per_s": len(tr) * epochs / train_s,
            "load_s": load_s,
        }
    )
)
