#!/usr/bin/env python3
"""cleanmig benchmark: extract, transform and load at several scales, beside the floor and peers.

Run through `make bench` (which builds the release binary and installs the peers into
bench/.work). Prints one table per scale and writes bench/results.md and bench/time_per_row.png.

Every figure is the median of RUNS runs (up to scale 10; one run past it), with min and max; peak RSS is the largest resident set
of the measured process (ru_maxrss from wait4), never of this script.
"""

import argparse
import asyncio
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
# The round trip of the link the launch-day load is also timed over (a hosted database in the
# same region as the machine running the tool).
LINK_RTT_MS = 10



def added_columns_sql():
    """ALTER TABLE ... ADD COLUMN IF NOT EXISTS for every row of pipeline/added_columns.csv."""
    with open(ROOT / "pipeline" / "added_columns.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        schema, table = r["table"].split(".", 1)
        default = f" DEFAULT {r['default']}" if r["default"] else ""
        out.append(f'ALTER TABLE "{schema}"."{table}" ADD COLUMN IF NOT EXISTS "{r["column"]}" {r["type"]}{default};')
    return " ".join(out)

def log(msg):
    print(msg, file=sys.stderr, flush=True)


def measure(cmd, env=None, stdout=subprocess.DEVNULL, cwd=None, stderr_to=None):
    """Run a command; return (seconds, peak RSS in MiB). Fails loudly with its stderr. With
    `stderr_to` (a list), its stderr is appended there."""
    err = tempfile.TemporaryFile()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=err, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err.seek(0)
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{err.read().decode(errors='replace')[-4000:]}")
    if stderr_to is not None:
        err.seek(0)
        stderr_to.append(err.read().decode(errors="replace"))
    return seconds, usage.ru_maxrss / 1024.0


STEP_LINE = re.compile(r"INFO load: (.+) \((\d+\.\d+) s\)\s*$")


def same_step(step):
    """A step's name without what differs per run (backup schema, run ids)."""
    step = re.sub(r"cleanmig_backup_\S+", "cleanmig_backup_<run>", step)
    return re.sub(r"\bload \d{8}T\d{6}Z-[0-9a-f]+", "load <run>", step)


def load_steps(stderr):
    """The load's steps from its log (each line ends in the time since the run started, in
    seconds) as (step, seconds the step took)."""
    steps, last = [], 0.0
    for line in stderr.splitlines():
        m = STEP_LINE.search(line)
        if m:
            at = float(m.group(2))
            steps.append((same_step(m.group(1)), at - last))
            last = at
    return steps


def run(cmd, env=None, check=True, capture=True):
    res = subprocess.run(cmd, env=env, capture_output=capture, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{res.stderr[-4000:]}")
    return res.stdout


class DelayLink:
    """A TCP proxy to the database that holds every chunk it forwards for `one_way_ms` in each
    direction: a link whose round trips take 2 × one_way_ms, as to a hosted database. Each wait
    of the client for an answer costs one round trip on it; bytes are not slowed.

    It also counts the client's turns: the times it sends after the server has answered. With
    the delay, a request sent together with others (pipelined) is all through before any
    answer is back, so each turn is one wait for an answer (a statement closed in passing, or
    the goodbye, counts too)."""

    def __init__(self, upstream_port, one_way_ms):
        self.upstream, self.delay = int(upstream_port), one_way_ms / 1000.0
        self.loop = asyncio.new_event_loop()
        self.port = None
        self.turns = 0

    def take_turns(self):
        """The client turns counted since the last call."""
        turns, self.turns = self.turns, 0
        return turns

    async def _pump(self, reader, writer, side=None):
        """Forward reader -> writer. `side` is the connection's last sender, shared by its two
        pumps: this pump's own name and the dict."""
        queue = asyncio.Queue()

        async def send():
            while True:
                due, data = await queue.get()
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        sender = asyncio.ensure_future(send())
        try:
            while True:
                data = await reader.read(1 << 16)
                if data and side is not None:
                    me, last = side
                    if me == "client" and last["sender"] != "client":
                        self.turns += 1
                    last["sender"] = me
                queue.put_nowait((self.loop.time() + self.delay, data))
                if not data:
                    break
        except (ConnectionError, OSError):
            queue.put_nowait((self.loop.time(), b""))
        try:
            await sender
        except (ConnectionError, OSError):
            pass

    async def _handle(self, client_reader, client_writer):
        server_writer = None
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
            last = {"sender": None}
            await asyncio.gather(self._pump(client_reader, server_writer, ("client", last)),
                                 self._pump(server_reader, client_writer, ("server", last)),
                                 return_exceptions=True)
        except (OSError, asyncio.CancelledError):
            pass  # no server, or the link is closing
        finally:
            client_writer.close()
            if server_writer is not None:
                server_writer.close()

    def __enter__(self):
        started = threading.Event()

        def serve():
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()
            server.close()
            # Connections still closing when the last client exited: end them quietly.
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()
        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        started.wait()
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


class Stat:
    def __init__(self, samples):
        self.samples = samples

    @property
    def times(self):
        return [s[0] for s in self.samples]

    @property
    def median(self):
        return statistics.median(self.times)

    @property
    def rss(self):
        return max(s[1] for s in self.samples)

    def cell(self):
        t = self.times
        return f"{self.median:.3f} s ({min(t):.3f}–{max(t):.3f})"


def repeat(n, fn):
    return Stat([fn() for _ in range(n)])


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = str(Path(args.bin).resolve())
        self.py = sys.executable
        self.devdb = WORK / "devdb"
        self.url = None
        self.rows_out = {}

    # -- database -------------------------------------------------------------------------
    def start_db(self):
        run([self.bin, "dev-db", "stop", "--dir", str(self.devdb)], check=False)
        self.url = run([self.bin, "dev-db", "start", "--dir", str(self.devdb)]).strip()
        base = self.url.rsplit("/", 1)[0]
        self.base = base.split("?")[0]
        self.port = self.url.split(":")[-1].split("/")[0]

    def stop_db(self):
        run([self.bin, "dev-db", "stop", "--dir", str(self.devdb)], check=False)

    def db_url(self, name):
        return f"{self.base}/{name}?sslmode=disable"

    def psql(self, db, *sql, stdout=subprocess.DEVNULL):
        cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", self.db_url(db).replace("?sslmode=disable", "")]
        for s in sql:
            cmd += ["-c", s]
        return cmd

    def sql(self, db, *sql):
        return run(self.psql(db, *sql) + ["-At"])

    def env(self, db, artifacts):
        env = dict(os.environ)
        env["DATABASE_URL"] = self.db_url(db)
        env["CLEANMIG_ARTIFACTS"] = str(artifacts)
        env["CLEANMIG_PIPELINE"] = str(ROOT / "pipeline")
        return env

    def cleanmig(self, db, artifacts, *args):
        return [self.bin, "--quiet", *args]

    # -- one scale ------------------------------------------------------------------------
    def prepare(self, scale):
        db = f"bench_s{str(scale).replace('.', '_')}"
        self.sql("postgres", f"DROP DATABASE IF EXISTS {db}", f"CREATE DATABASE {db}")
        artifacts = WORK / f"artifacts_{db}"
        shutil.rmtree(artifacts, ignore_errors=True)
        log(f"scale {scale}: generating demo data")
        t, rss = measure([self.bin, "--quiet", "demo-data", "--scale", str(scale), "--legacy",
                          "--ground-truth", str(artifacts / "ground_truth.json")], env=self.env(db, artifacts))
        log(f"scale {scale}: demo-data {t:.1f} s, peak {rss:.0f} MiB")
        # A copy with empty destination tables, for the load on an empty destination.
        empty = db + "_empty"
        self.sql("postgres", f"DROP DATABASE IF EXISTS {empty}", f"CREATE DATABASE {empty} TEMPLATE {db}")
        self.sql(empty, "TRUNCATE auth.users, auth.identities, unified_profiles, transactions, enrollments, "
                        "user_tags, purchase_leads, ebook_contacts, lesson_progress")
        return db, empty, artifacts

    def tables(self, artifacts):
        manifest = json.loads((artifacts / "extract" / "manifest.json").read_text())
        out = []
        for qualified, t in manifest["tables"].items():
            out.append((qualified, t["artifact"], t["fingerprint"]["rows"]))
        return out

    def bench_scale(self, scale):
        a = self.args
        # RUNS runs up to scale 10; one run past it, where a run takes minutes and noise is small.
        self.runs = a.runs if float(scale) <= 10 else 1
        db, empty, artifacts = self.prepare(scale)
        env = self.env(db, artifacts)
        res = {"scale": scale}

        # extract
        res["extract"] = repeat(self.runs, lambda: measure(self.cleanmig(db, artifacts, "extract"), env=env))
        tables = self.tables(artifacts)
        source_rows = sum(r for q, _, r in tables if "xendit" in q or "systemeio" in q)
        all_rows = sum(r for _, _, r in tables)
        res["source_rows"], res["extract_rows"] = source_rows, all_rows
        copies = [f"COPY (SELECT * FROM {q}) TO STDOUT (FORMAT binary)" for q, _, _ in tables]
        res["copy_floor"] = repeat(self.runs, lambda: measure(self.psql(db, *copies)))
        if a.pg2parquet:
            out = WORK / "pg2parquet_out"
            out.mkdir(exist_ok=True)

            def pg2p():
                total, peak = 0.0, 0.0
                for q, name, _ in tables:
                    t, r = measure([a.pg2parquet, "export", "--quiet", "-H", "127.0.0.1", "-p", self.port, "-U", "postgres",
                                    "-d", db, "--password", "unused-trust-auth", "--compression", "none", "-q", f"SELECT * FROM {q}",
                                    "-o", str(out / f"{name}.parquet")])
                    total, peak = total + t, max(peak, r)
                return total, peak
            res["pg2parquet"] = repeat(self.runs, pg2p)
        if a.connectorx:
            script = WORK / "cx_export.py"
            script.write_text(
                "import sys, connectorx as cx, pyarrow.parquet as pq\n"
                "url, out = sys.argv[1], sys.argv[2]\n"
                "for q, name in zip(sys.argv[3::2], sys.argv[4::2]):\n"
                "    t = cx.read_sql(url, f'SELECT * FROM {q}', return_type='arrow')\n"
                "    pq.write_table(t, f'{out}/{name}.parquet', compression='none')\n")
            out = WORK / "cx_out"
            out.mkdir(exist_ok=True)
            args = [x for q, name, _ in tables for x in (q, name)]
            cx_url = self.db_url(db).replace("?sslmode=disable", "")
            res["connectorx"] = repeat(self.runs, lambda: measure([a.python, str(script), cx_url, str(out), *args]))

        # transform
        res["transform"] = repeat(self.runs, lambda: measure(self.cleanmig(db, artifacts, "transform"), env=env))
        if a.duckdb:
            res["duckdb"], res["duckdb_note"] = self.duckdb(artifacts)
        stage = json.loads((artifacts / "stage" / "manifest.json").read_text())
        staged = {t["artifact"] for t in stage["catalog"]["tables"] if t.get("artifact")}
        res["stage_rows"] = sum(v["rows"] for k, v in stage["artifacts"].items() if k in staged)

        # whole pipeline on a fresh copy of the live-shaped database
        def pipeline():
            run_db = db + "_run"
            self.sql("postgres", f"DROP DATABASE IF EXISTS {run_db}", f"CREATE DATABASE {run_db} TEMPLATE {db}")
            pa = WORK / f"artifacts_{run_db}"
            shutil.rmtree(pa, ignore_errors=True)
            e = self.env(run_db, pa)
            total, peak, steps, logs = 0.0, 0.0, [], []
            for step in (["extract"], ["transform"], ["approve", "--by", "bench"], ["load", "--apply", "--dependents", "delete", "--statement-timeout-ms", "60000"]):
                # the load not --quiet: its step lines are what its breakdown is read from
                load = step[0] == "load"
                cmd = [self.bin, *step] if load else self.cleanmig(run_db, pa, *step)
                t, r = measure(cmd, env=e, stdout=subprocess.DEVNULL, stderr_to=logs if load else None)
                total, peak = total + t, max(peak, r)
                steps.append((step[0], t))
            res["pipeline_steps"] = steps + [(f"load: {same_step(s)}", secs) for s, secs in load_steps(logs[0])]
            return total, peak

        # load on an empty destination, then the no-op second run
        def load_pair():
            run_db = empty + "_run"
            self.sql("postgres", f"DROP DATABASE IF EXISTS {run_db}", f"CREATE DATABASE {run_db} TEMPLATE {empty}")
            la = WORK / f"artifacts_{run_db}"
            shutil.rmtree(la, ignore_errors=True)
            e = self.env(run_db, la)
            for step in (["extract"], ["transform"], ["approve", "--by", "bench"]):
                measure(self.cleanmig(run_db, la, *step), env=e)
            logs = []
            # not --quiet: the step lines are what the breakdown is read from
            first = measure([self.bin, "load", "--apply"], env=e, stderr_to=logs)
            second = measure([self.bin, "load", "--apply"], env=e, stderr_to=logs)
            res["load_steps"], res["noop_steps"] = load_steps(logs[0]), load_steps(logs[1])
            return first, second, run_db, la

        firsts, seconds = [], []
        for _ in range(self.runs):
            f, s, run_db, la = load_pair()
            firsts.append(f)
            seconds.append(s)
        res["load_empty"], res["load_noop"] = Stat(firsts), Stat(seconds)
        res["copy_in_floor"], res["copy_in_tables"] = self.copy_in_floor(run_db, empty)
        try:
            res["pipeline"] = repeat(self.runs, pipeline)
        except RuntimeError as e:
            # A failed step is a result too: say what failed instead of dropping the row.
            res["pipeline"] = None
            res["pipeline_note"] = "failed: " + str(e).strip().splitlines()[-1][:300]
        if res.get("pipeline") is not None and float(scale) <= 10:
            res["link_direct"], res["link"] = self.load_over_link(db)
            res["link_turns"] = self.link_turns
        return res

    def load_over_link(self, db):
        """The launch-day load of the pipeline's approval into fresh copies of the live-shaped
        database, directly and through a link with LINK_RTT_MS round trips, alternating."""
        run_db, pa = db + "_run", WORK / f"artifacts_{db}_run"
        link_db = db + "_link"

        def once(port):
            self.sql("postgres", f"DROP DATABASE IF EXISTS {link_db}", f"CREATE DATABASE {link_db} TEMPLATE {db}")
            e = self.env(run_db, pa)
            e["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{port}/{link_db}?sslmode=disable"
            return measure([self.bin, "--quiet", "load", "--apply", "--dependents", "delete"], env=e)
        direct, linked, turns = [], [], []
        with DelayLink(self.port, LINK_RTT_MS / 2) as link:
            for _ in range(self.runs):
                direct.append(once(self.port))
                link.take_turns()
                linked.append(once(link.port))
                time.sleep(0.2)  # the client's last bytes through the link
                turns.append(link.take_turns())
        self.link_turns = turns
        return Stat(direct), Stat(linked)

    def copy_in_floor(self, loaded_db, empty_db):
        """Binary COPY FROM STDIN of the same rows (a) into empty copies of the destination tables
        without indexes or constraints, (b) into the empty destination tables themselves, with
        their indexes, constraints and foreign-key checks."""
        tables = ["auth.users", "auth.identities", "unified_profiles", "transactions", "enrollments"]
        files = []
        for t in tables:
            f = WORK / f"floor_{t.replace('.', '_')}.bin"
            cols = self.sql(loaded_db, f"SELECT string_agg(quote_ident(attname), ',' ORDER BY attnum) FROM pg_attribute "
                                       f"WHERE attrelid = '{t}'::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''").strip()
            with open(f, "wb") as fh:
                subprocess.run(self.psql(loaded_db, f"COPY (SELECT {cols} FROM {t}) TO STDOUT (FORMAT binary)"), stdout=fh, check=True)
            files.append((t, cols, f))

        def once():
            self.sql(loaded_db, "DROP SCHEMA IF EXISTS floor CASCADE", "CREATE SCHEMA floor")
            for t, _, _ in files:
                self.sql(loaded_db, f"CREATE TABLE floor.{t.replace('.', '_')} (LIKE {t})")
            total, peak = 0.0, 0.0
            for t, cols, f in files:
                with open(f, "rb") as fh:
                    start = time.perf_counter()
                    proc = subprocess.Popen(self.psql(loaded_db, f"COPY floor.{t.replace('.', '_')} ({cols}) FROM STDIN (FORMAT binary)"),
                                            stdin=fh, stdout=subprocess.DEVNULL)
                    _, status, usage = os.wait4(proc.pid, 0)
                    total += time.perf_counter() - start
                    peak = max(peak, usage.ru_maxrss / 1024.0)
            return total, peak
        def into_tables():
            db = empty_db + "_copy"
            self.sql("postgres", f"DROP DATABASE IF EXISTS {db}", f"CREATE DATABASE {db} TEMPLATE {empty_db}")
            # the columns the load adds (the catalogue's pipeline/added_columns.csv)
            run(self.psql(db, added_columns_sql()))
            total, peak = 0.0, 0.0
            for t, cols, f in files:  # parents first
                with open(f, "rb") as fh:
                    start = time.perf_counter()
                    proc = subprocess.Popen(self.psql(db, f"COPY {t} ({cols}) FROM STDIN (FORMAT binary)"),
                                            stdin=fh, stdout=subprocess.DEVNULL)
                    _, status, usage = os.wait4(proc.pid, 0)
                    if status != 0:
                        raise RuntimeError(f"COPY into {t} failed")
                    total += time.perf_counter() - start
                    peak = max(peak, usage.ru_maxrss / 1024.0)
            return total, peak
        return repeat(self.runs, once), repeat(self.runs, into_tables)

    def duckdb(self, artifacts):
        """The same pipeline SQL in DuckDB, where it is portable."""
        script = WORK / "duckdb_transform.py"
        script.write_text((ROOT / "bench" / "duckdb_transform.py").read_text())
        out = WORK / "duckdb_out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        try:
            stat = repeat(self.runs, lambda: measure([self.args.python, str(script), str(ROOT / "pipeline"),
                                                             str(artifacts / "extract"), str(out)]))
            return stat, ""
        except RuntimeError as e:
            last = str(e).strip().splitlines()[-1][:200]
            return None, f"not portable: {last}"


def to_json(res):
    return {k: ({"samples": v.samples} if isinstance(v, Stat) else v) for k, v in res.items()}


def from_json(d):
    return {k: (Stat([tuple(x) for x in v["samples"]]) if isinstance(v, dict) and "samples" in v else v) for k, v in d.items()}


def ratio(a, b):
    if a is None or b is None:
        return "n/a"
    return f"{a.median / b.median:.2f}x"


def render(res):
    s = res["scale"]
    runs = len(res["extract"].samples)
    lines = [f"### scale {s}: {res['source_rows']:,} source rows, {res['extract_rows']:,} rows extracted, {res['stage_rows']:,} staged rows ({runs} run{'s' if runs > 1 else ''} each)", ""]
    lines.append("| step | tool | time (median, min–max) | rows/s | peak RSS | ours / this |")
    lines.append("|---|---|---|---|---|---|")
    ex = res["extract"]

    def row(step, tool, st, rows, ours=None):
        if st is None:
            return
        rps = f"{rows / st.median:,.0f}" if rows else ""
        rel = ratio(ours, st) if ours is not None and ours is not st else ""
        lines.append(f"| {step} | {tool} | {st.cell()} | {rps} | {st.rss:.0f} MiB | {rel} |")

    row("extract", "**cleanmig extract**", ex, res["extract_rows"])
    row("extract", "floor: psql COPY binary > /dev/null", res["copy_floor"], res["extract_rows"], ex)
    row("extract", "pg2parquet", res.get("pg2parquet"), res["extract_rows"], ex)
    row("extract", "ConnectorX + pyarrow", res.get("connectorx"), res["extract_rows"], ex)
    tr = res["transform"]
    row("transform", "**cleanmig transform**", tr, res["extract_rows"])
    if res.get("duckdb") is not None:
        row("transform", "DuckDB, same pipeline SQL", res["duckdb"], res["extract_rows"], tr)
    elif "duckdb_note" in res:
        lines.append(f"| transform | DuckDB, same pipeline SQL | {res['duckdb_note']} | | | |")
    le = res["load_empty"]
    row("load", "**cleanmig load --apply** (empty destination)", le, res["stage_rows"])
    row("load", "floor: binary COPY FROM STDIN into empty tables", res["copy_in_floor"], res["stage_rows"], le)
    row("load", "floor: binary COPY FROM STDIN into the empty destination tables (indexes, foreign keys)",
        res.get("copy_in_tables"), res["stage_rows"], le)
    row("load", "**cleanmig load --apply** again (no-op)", res["load_noop"], res["stage_rows"])
    if res.get("link") is not None:
        row("load", "**cleanmig load --apply**, launch day", res["link_direct"], res["stage_rows"])
        row("load", f"**cleanmig load --apply**, launch day, over a link with {LINK_RTT_MS} ms round trips",
            res["link"], res["stage_rows"])
    if res.get("pipeline") is not None:
        row("all", "**extract + transform + approve + load --apply**", res["pipeline"], res["source_rows"])
    else:
        lines.append(f"| all | **extract + transform + approve + load --apply** | {res.get('pipeline_note', 'not run')} | | | |")
    if res.get("link") is not None:
        waits = (res["link"].median - res["link_direct"].median) / (LINK_RTT_MS / 1000.0)
        lines += ["", f"Over the link the launch-day load took {res['link'].median - res['link_direct'].median:.2f} s "
                  f"more than directly (medians): about {waits:.0f} waits for an answer of {LINK_RTT_MS} ms each."]
        if res.get("link_turns"):
            t = res["link_turns"]
            counted = f"{min(t)}" if min(t) == max(t) else f"{min(t)}–{max(t)}"
            lines[-1] += (f" The link counted {counted} turns of the client (a send after an answer) "
                          "on the load's two connections, its transaction's and its log's.")
    lines += render_steps(res) + render_pipeline_steps(res) + render_targets(res)
    return "\n".join(lines) + "\n"


def render_pipeline_steps(res):
    """The whole pipeline's steps, and the launch-day load's own (last run)."""
    steps = res.get("pipeline_steps") or []
    if not steps:
        return []
    lines = ["", "Whole pipeline, step by step (seconds; last run; the load is the launch-day one, "
             "into a copy of the live-shaped database):", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {step} | {secs:.2f} |" for step, secs in steps]
    return lines


def render_steps(res):
    """The load's fixed and per-row costs, step by step (last run of each)."""
    first, noop = res.get("load_steps") or [], res.get("noop_steps") or []
    if not first:
        return []
    lines = ["", "Load, step by step (seconds; last run):", "",
             "| step | load --apply (empty) | no-op second run |", "|---|---|---|"]
    first = [(same_step(step), secs) for step, secs in first]
    noop = [(same_step(step), secs) for step, secs in noop]
    noop_by_step, first_by_step = dict(noop), dict(first)
    cell = lambda secs: "" if secs is None else f"{secs:.2f}"
    # Steps only the no-op run takes (finding the tables as the last load left them) go before
    # the step that follows them in that run.
    pending, before = [], {}
    for step, _ in noop:
        if step in first_by_step:
            before[step], pending = pending, []
        else:
            pending.append(step)
    for step, secs in first:
        for only in before.get(step, []):
            lines.append(f"| {only} |  | {cell(noop_by_step[only])} |")
        lines.append(f"| {step} | {cell(secs)} | {cell(noop_by_step.get(step))} |")
    for only in pending:
        lines.append(f"| {only} |  | {cell(noop_by_step[only])} |")
    return lines


def targets(res):
    """(target, figure, met) for the speed targets, as ratios measured in this one run."""
    def r(a, b):
        a, b = res.get(a), res.get(b)
        return None if a is None or b is None else a.median / b.median
    out = []

    def add(name, value, limit, fmt="{:.2f}x"):
        out.append((name, "not measured" if value is None else fmt.format(value), None if value is None else value <= limit))
    add("transform / DuckDB on the same SQL <= 1.0x", r("transform", "duckdb"), 1.0)
    add("extract / binary COPY floor <= 1.5x", r("extract", "copy_floor"), 1.5)
    for peer in ("pg2parquet", "connectorx"):
        add(f"extract / {peer} <= 1.0x", r("extract", peer), 1.0)
    add("load --apply / COPY into the destination tables <= 1.15x", r("load_empty", "copy_in_tables"), 1.15)
    add("no-op second load / first load <= 0.25", r("load_noop", "load_empty"), 0.25, "{:.2f}")
    scale = float(res["scale"])
    transform = res.get("transform")
    if scale >= 100 and transform is not None:
        limit = 1536 if scale <= 100 else 2048
        add(f"transform peak RSS <= {limit:,} MiB", transform.rss, limit, "{:,.0f} MiB")
    if scale > 100 and transform is not None and WORK.joinpath("result_scale_100.json").exists():
        at_100 = from_json(json.loads(WORK.joinpath("result_scale_100.json").read_text()))["transform"]
        linear = scale / 100 * 1.1
        add(f"transform time / scale 100's <= {linear:.1f}x", transform.median / at_100.median, linear)
    whole = res.get("pipeline")
    limit = 1.0 if scale <= 1 else 60.0 if scale <= 100 else None
    if limit is not None:
        add(f"whole pipeline <= {limit:g} s", None if whole is None else whole.median, limit, "{:.2f} s")
    return out


def render_targets(res):
    lines = ["", "Targets (ratios from this run):", "", "| target | figure | met? |", "|---|---|---|"]
    for name, figure, met in targets(res):
        verdict = "n/a" if met is None else "met" if met else "**missed**"
        lines.append(f"| {name} | {figure} | {verdict} |")
    return lines


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plot")
        return
    scales = [r["scale"] for r in results]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label, rows in (("extract", "extract", "extract_rows"), ("transform", "transform", "extract_rows"),
                             ("load_empty", "load --apply (empty)", "stage_rows"), ("copy_floor", "COPY floor (extract)", "extract_rows")):
        ys = [r[key].median / r[rows] * 1e6 for r in results]
        ax.plot(scales, ys, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("scale (1 = production size)")
    ax.set_ylabel("µs per row")
    ax.set_title("cleanmig: time per row against scale (flat = linear cost)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=str(ROOT / "target" / "release" / "cleanmig"))
    p.add_argument("--scales", default="1 10 100")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--pg2parquet", default=str(WORK / "tools" / "bin" / "pg2parquet"))
    p.add_argument("--python", default=str(WORK / "venv" / "bin" / "python"))
    p.add_argument("--no-peers", action="store_true")
    a = p.parse_args()
    a.connectorx = a.duckdb = not a.no_peers and Path(a.python).exists()
    if a.no_peers or not Path(a.pg2parquet).exists():
        a.pg2parquet = None
    WORK.mkdir(parents=True, exist_ok=True)
    b = Bench(a)
    b.start_db()
    results = []
    try:
        for scale in a.scales.split():
            res = b.bench_scale(float(scale) if "." in scale else int(scale))
            (WORK / f"result_scale_{scale}.json").write_text(json.dumps(to_json(res)))
            print(render(res), flush=True)
    finally:
        b.stop_db()
    cpu = run(["sh", "-c", "nproc; grep -m1 'model name' /proc/cpuinfo | cut -d: -f2; free -g | awk '/Mem/{print $2}'"]).split("\n")
    header = (f"# cleanmig benchmark\n\nMachine: {cpu[0]} cores,{cpu[1]}, {cpu[2]} GiB. Each figure is the median of the runs named in its table's heading (min–max). "
              f"Postgres: throwaway local cluster (fsync off). Binary: release build.\n\n")
    # Every scale measured so far on this machine (a later run of one scale replaces its figures).
    for f in WORK.glob("result_scale_*.json"):
        results.append(from_json(json.loads(f.read_text())))
    results.sort(key=lambda r: float(r["scale"]))
    out = ROOT / "bench" / "results.md"
    out.write_text(header + "\n".join(render(r) for r in results))
    plot(results, ROOT / "bench" / "time_per_row.png")
    log(f"wrote {out} and bench/time_per_row.png")


if __name__ == "__main__":
    main()
