#!/usr/bin/env python3
"""MovieLens-100K as Starling trains on it, prepared once, the same way every time.

The data ships inside the `recbole` 1.2.1 wheel on PyPI (recbole/dataset_example/ml-100k/):
this script downloads the wheel with `pip download --no-deps` (nothing of it is committed), and
writes a fixed, seeded 8:1:1 split of the ratings as VW text:

    label |u user |i item |a age |g gender |o occupation |z zip |y release_year |c genre genre ...

label 1 when the rating is at least 4, else -1; `c` holds every genre of the movie (a multi-valued
field, pooled by embedding blocks). Train on it with `features.namespaces = "uiagozyc"`.

    python3 bench/movielens/prepare.py OUT_DIR      # writes OUT_DIR/{train,valid,test}.vw
"""
import csv
import io
import os
import random
import subprocess
import sys
import tempfile
import zipfile

RECBOLE = "recbole==1.2.1"
PREFIX = "recbole/dataset_example/ml-100k/ml-100k"
SEED = 20261201
NAMESPACES = "uiagozyc"


def atomic_files(wheel_dir):
    wheels = [f for f in os.listdir(wheel_dir) if f.startswith("recbole-1.2.1") and f.endswith(".whl")]
    if not wheels:
        sys.exit(f"prepare.py: no recbole 1.2.1 wheel in {wheel_dir}")
    with zipfile.ZipFile(os.path.join(wheel_dir, wheels[0])) as z:
        return {ext: z.read(f"{PREFIX}.{ext}").decode("utf-8") for ext in ("inter", "user", "item")}


def rows(text):
    """RecBole atomic file: a header of `name:type` columns, tab-separated."""
    reader = csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = [h.split(":")[0] for h in next(reader)]
    return [dict(zip(header, r)) for r in reader if r]


def token(s):
    """A VW token: no spaces, bars or colons (none occur in this data; kept safe anyway)."""
    return s.strip().replace(" ", "_").replace("|", "_").replace(":", "_") or "none"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", RECBOLE, "-d", d], check=True)
        files = atomic_files(d)
    users = {u["user_id"]: u for u in rows(files["user"])}
    items = {i["item_id"]: i for i in rows(files["item"])}
    ratings = rows(files["inter"])
    ratings.sort(key=lambda r: (int(r["user_id"]), int(r["item_id"]), r["timestamp"]))
    random.Random(SEED).shuffle(ratings)
    n = len(ratings)
    cut = [int(n * 0.8), int(n * 0.9)]
    splits = {"train": ratings[: cut[0]], "valid": ratings[cut[0] : cut[1]], "test": ratings[cut[1] :]}
    for name, part in splits.items():
        tmp = os.path.join(out, f".{name}.vw.tmp")
        with open(tmp, "w") as f:
            for r in part:
                u, i = users[r["user_id"]], items[r["item_id"]]
                label = 1 if float(r["rating"]) >= 4 else -1
                genres = " ".join(token(g) for g in i.get("class", "").split()) or "none"
                f.write(
                    f"{label} |u {token(r['user_id'])} |i {token(r['item_id'])} |a {token(u['age'])}"
                    f" |g {token(u['gender'])} |o {token(u['occupation'])} |z {token(u['zip_code'])}"
                    f" |y {token(i.get('release_year', ''))} |c {genres}\n"
                )
        os.replace(tmp, os.path.join(out, f"{name}.vw"))
    print(f"wrote {n} ratings to {out}: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))


if __name__ == "__main__":
    main()
