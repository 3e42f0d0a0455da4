#!/usr/bin/env python3
"""Run cleanmig's pipeline SQL in DuckDB over the same extract, for `make bench`.

usage: duckdb_transform.py PIPELINE_DIR EXTRACT_DIR OUT_DIR

Registers the extract as `extract_<name>` views and the pipeline's CSV files as tables, runs
pipeline/transform/*.sql in order (each result under the file's name without its number), then
pipeline/checks/*.sql and pipeline/report/*.sql, and writes the staged tables to OUT_DIR as
Parquet. The two functions cleanmig registers in DataFusion are provided as DuckDB macros:
json_object is built in; uuid_v5 is UUIDv5 in cleanmig's namespace, computed with sha1.
A file DuckDB cannot run stops the script with the file's name: the bench reports it as not
portable. The diff against the current tables is Rust in cleanmig (not pipeline SQL) and is not
repeated here.
"""

import glob
import os
import re
import sys
import uuid

import duckdb

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "cleanmig").hex


def output_name(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    m = re.match(r"^(\d+)_(.+)$", stem)
    return m.group(2) if m else stem


def main():
    pipeline, extract_dir, out = sys.argv[1:4]
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    for f in sorted(glob.glob(os.path.join(extract_dir, "*.parquet"))):
        name = os.path.splitext(os.path.basename(f))[0]
        con.execute(f"CREATE VIEW extract_{name} AS SELECT * FROM read_parquet('{f}')")
    for f in sorted(glob.glob(os.path.join(pipeline, "*.csv"))):
        name = os.path.splitext(os.path.basename(f))[0]
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_csv('{f}', header = true, all_varchar = true)")
    h = f"sha1(unhex('{NAMESPACE}') || encode(name))"
    con.execute(
        "CREATE MACRO uuid_v5(name) AS "
        f"substr({h}, 1, 8) || '-' || substr({h}, 9, 4) || '-5' || substr({h}, 14, 3) || '-' || "
        f"substr('89ab89ab89ab89ab', strpos('0123456789abcdef', substr({h}, 17, 1)), 1) || "
        f"substr({h}, 18, 3) || '-' || substr({h}, 21, 12)"
    )
    for f in sorted(glob.glob(os.path.join(pipeline, "transform", "*.sql"))):
        sql = open(f).read().strip().rstrip(";")
        try:
            con.execute(f"CREATE TABLE {output_name(f)} AS {sql}")
        except Exception as e:  # noqa: BLE001 - the message is the point
            print(f"{os.path.relpath(f, pipeline)}: {str(e).splitlines()[0]}", file=sys.stderr)
            sys.exit(1)
    for kind in ("checks", "report"):
        for f in sorted(glob.glob(os.path.join(pipeline, kind, "*.sql"))):
            sql = open(f).read().strip().rstrip(";")
            try:
                con.execute(sql).fetchall()
            except Exception as e:  # noqa: BLE001
                print(f"{os.path.relpath(f, pipeline)}: {str(e).splitlines()[0]}", file=sys.stderr)
                sys.exit(1)
    os.makedirs(out, exist_ok=True)
    for name in ("auth_users", "auth_identities", "profiles", "transactions", "enrollments", "rejects"):
        con.execute(f"COPY (SELECT * FROM {name}) TO '{out}/{name}.parquet' (FORMAT parquet, COMPRESSION snappy)")


if __name__ == "__main__":
    main()
