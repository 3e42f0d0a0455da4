#!/usr/bin/env python3
"""Run cleanmig's pipeline SQL in DuckDB over the same extract, for `make bench`.

usage: duckdb_transform.py PIPELINE_DIR EXTRACT_DIR OUT_DIR

Registers the extract as `extract_<name>` views and the pipeline's CSV files as tables, runs
pipeline/transform/*.sql in order (each result under the file's name without its number), then
an id-based stand-in for the diff, pipeline/checks/*.sql and pipeline/report/*.sql, and writes
the staged tables to OUT_DIR as Parquet. The functions cleanmig registers in DataFusion are provided as DuckDB macros:
json_object is built in; uuid_v5 is UUIDv5 in cleanmig's namespace, computed with sha1; to_utc is
the CASE it replaced in the SQL.
A file DuckDB cannot run stops the script with the file's name: the bench reports it as not
portable. DataFusion spellings that DuckDB lacks (regexp_like, to_char) are macros; the ordered
aggregate `first_value(x ORDER BY ...)`, a window function only in DuckDB, is read as DuckDB's
`first(x ORDER BY ...)`.
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
        con.execute(f"CREATE VIEW \"extract_{name}\" AS SELECT * FROM read_parquet('{f}')")
    # The pipeline's "now" and the raw source rows, as cleanmig registers them.
    import json
    manifest = json.load(open(os.path.join(extract_dir, "manifest.json")))
    con.execute(f"CREATE TABLE extraction AS SELECT TIMESTAMP '{manifest['extracted_at'].rstrip('Z')}' AS extracted_at")
    for source in ("xendit", "systemeio"):
        cols = [r[0] for r in con.execute(f"DESCRIBE extract_{source}").fetchall() if r[0] != "_source_row"]
        pairs = ", ".join(f"'{c}', \"{c}\"" for c in cols)
        con.execute(f"CREATE VIEW raw_{source} AS SELECT _source_row, json_object({pairs})::VARCHAR AS raw FROM extract_{source}")
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
    # DataFusion names that DuckDB spells differently.
    con.execute("CREATE MACRO regexp_like(s, p) AS regexp_matches(s, p), (s, p, f) AS regexp_matches(s, p, f)")
    con.execute("CREATE MACRO to_char(d, fmt) AS strftime(d, fmt)")
    # to_utc(text, utc_offset): cleanmig's UDF (src/transform/engine.rs): text with a time that
    # ends in Z or an offset is read as written, other text is local time at utc_offset; the
    # result is UTC without zone; missing or unreadable text is NULL. DuckDB's cast to TIMESTAMP
    # drops an offset, so the text is read as TIMESTAMPTZ and turned into UTC.
    utc = "(TRY_CAST({} AS TIMESTAMPTZ) AT TIME ZONE 'UTC')"
    con.execute(
        "CREATE MACRO to_utc(t, utc_offset) AS CASE "
        "WHEN nullif(trim(t), '') IS NULL THEN NULL "
        "WHEN regexp_matches(trim(t), '(Z|[+-][0-9]{2}(:?[0-9]{2})?)$', 'i') "
        f"AND regexp_matches(trim(t), '[0-9]{{2}}:[0-9]{{2}}') THEN {utc.format('trim(t)')} "
        f"ELSE {utc.format('trim(t) || utc_offset')} END"
    )
    for f in sorted(glob.glob(os.path.join(pipeline, "transform", "*.sql"))):
        sql = open(f).read().strip().rstrip(";")
        sql = re.sub(r"\bfirst_value\((?=[^()]*\bORDER BY\b)", "first(", sql, flags=re.I)
        try:
            con.execute(f"CREATE TABLE {output_name(f)} AS {sql}")
        except Exception as e:  # noqa: BLE001 - the message is the point
            print(f"{os.path.relpath(f, pipeline)}: {str(e).splitlines()[0]}", file=sys.stderr)
            sys.exit(1)
    # The diff is Rust in cleanmig; an equivalent by id stands in for it here (updates are
    # approximated by every matched row, which costs at least as much).
    for staged, extracted in (("profiles", "unified_profiles"), ("transactions", "transactions"), ("enrollments", "enrollments")):
        con.execute(f"CREATE TABLE diff_{staged}_insert AS SELECT * FROM {staged} WHERE id NOT IN (SELECT id FROM extract_{extracted})")
        con.execute(f"CREATE TABLE diff_{staged}_delete AS SELECT * FROM extract_{extracted} WHERE id NOT IN (SELECT id FROM {staged})")
        con.execute(f"CREATE TABLE diff_{staged}_update AS SELECT s.* FROM {staged} s JOIN extract_{extracted} e USING (id)")
    for staged in ("auth_users", "auth_identities"):
        con.execute(f"CREATE TABLE diff_{staged}_insert AS SELECT * FROM {staged}")
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
        con.execute(f"COPY (SELECT * FROM {name}) TO '{out}/{name}.parquet' (FORMAT parquet, COMPRESSION lz4_raw)")


if __name__ == "__main__":
    main()
