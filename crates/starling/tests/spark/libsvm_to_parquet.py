"""Writes a LibSVM file as Spark writes a DataFrame: `python libsvm_to_parquet.py IN OUT_DIR N`.

Spark's own LibSVM reader loads IN (label double, features a VectorUDT of N features) and a real
Spark in local[2] writes it to OUT_DIR as Parquet in 2 part files (with _SUCCESS and .crc files).
Input partitions of half the file keep the rows in file order: the first part file holds the
file's first half.
"""
import os
import sys

from pyspark.sql import SparkSession

src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
half = os.path.getsize(src) // 2 + 1
spark = (SparkSession.builder.master("local[2]").appName("starling-test-parquet")
         .config("spark.sql.files.maxPartitionBytes", str(half)).getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
df = spark.read.format("libsvm").option("numFeatures", str(n)).load(src)
df.write.mode("overwrite").parquet(out)
print(df.count(), "rows written to", out)
spark.stop()
