#!/usr/bin/env python3
"""Starling's Spark estimator against Spark MLlib LogisticRegression and FMClassifier, on the same
DataFrame in local[2]: fit time (each fit timed alone, the JVM warmed up first), test AUC and
logloss. Run by bench/spark_estimator.sh; prints a Markdown table and appends JSON to OUT.
"""
import argparse
import json
import math
import os
import platform
import time

from pyspark.ml.classification import FMClassifier, LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.functions import vector_to_array
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from starling.spark import StarlingClassifier


def logloss(scored, prob):
    """Mean log loss, probabilities clipped to [1e-7, 1 - 1e-7]."""
    p = F.least(F.greatest(F.col(prob), F.lit(1e-7)), F.lit(1 - 1e-7))
    y = (F.col("label") > 0).cast("double")
    return scored.select(F.avg(-(y * F.log(p) + (1 - y) * F.log(1 - p))).alias("l")).first().l


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--bits", type=int, default=20)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mllib-iter", type=int, default=20)
    a = ap.parse_args()
    spark = (SparkSession.builder.master("local[2]").appName("starling-bench")
             .config("spark.driver.memory", os.environ.get("SPARK_MEM", "6g")).config("spark.ui.enabled", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    read = lambda f: spark.read.format("libsvm").option("numFeatures", str(1 << a.bits)).load(os.path.join(a.data, f))  # noqa: E731
    train = read("train.libsvm").repartition(2).cache()
    test = read("test.libsvm").cache()
    n_train, n_test = train.count(), test.count()
    LogisticRegression(maxIter=2).fit(train)  # JVM warm-up, not timed
    auc_eval = BinaryClassificationEvaluator(rawPredictionCol="p")
    configs = [
        ("Starling LR (FTRL, 2 passes)", lambda: StarlingClassifier(featuresCol="features", optimizer="ftrl", passes=2,
                                                                     hashBits=a.bits), "probability"),
        ("Starling FM k=8 (FTRL, 2 passes)", lambda: StarlingClassifier(featuresCol="features", modelKind="fm", k=8,
                                                                         optimizer="ftrl", passes=2, batchSize=100,
                                                                         hashBits=a.bits), "probability"),
        (f"MLlib LogisticRegression (L-BFGS, maxIter {a.mllib_iter})",
         lambda: LogisticRegression(maxIter=a.mllib_iter, regParam=1e-4, standardization=False), "vec"),
    ]
    # FMClassifier's default stepSize (1.0) diverges on this data: its best of a small ladder counts.
    for step in (0.01, 0.1):
        configs.append((f"MLlib FMClassifier k=8 (AdamW, maxIter {a.mllib_iter}, stepSize {step})",
                        lambda step=step: FMClassifier(factorSize=8, maxIter=a.mllib_iter, regParam=1e-4, stepSize=step),
                        "vec"))
    rows = []
    for name, make, kind in configs:
        t = time.time()
        model = make().fit(train)
        fit_s = time.time() - t
        scored = model.transform(test)
        scored = scored.withColumn("p", vector_to_array("probability")[1] if kind == "vec" else F.col("probability"))
        rows.append(dict(name=name, fit_s=round(fit_s, 2), auc=auc_eval.evaluate(scored), logloss=logloss(scored, "p")))
        print(json.dumps(rows[-1]), flush=True)
    meta = json.load(open(os.path.join(a.data, "meta.json")))
    head = (f"{platform.node()}, Spark {spark.version} local[2], {n_train:,} train / {n_test:,} test rows "
            f"(`starling gen`, LibSVM, ids < 2^{a.bits}); true model: test logloss {meta['oracle_test_logloss']:.4f}, "
            f"AUC {meta['oracle_test_auc']:.4f}.")
    md = [head, "", "| model | fit s | test AUC | test logloss |", "|---|---|---|---|"]
    md += [f"| {r['name']} | {r['fit_s']:.2f} | {r['auc']:.4f} | {r['logloss']:.4f} |" for r in rows]
    text = "\n".join(md) + "\n"
    print("\n" + text)
    with open(a.out, "a") as fh:
        fh.write(json.dumps(dict(time=time.strftime("%Y%m%dT%H%M%S"), head=head, rows=rows)) + "\n")
    with open(a.out.replace(".jsonl", ".md"), "w") as fh:
        fh.write(text)
    spark.stop()


if __name__ == "__main__":
    main()
