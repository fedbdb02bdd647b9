"""`make bench-compare`: tracebox side by side with a real MLflow server.

Orchestrates everything in bench/compare/ (see README.md there): records the
workload's templates with the real SDK, then per system, one server at a time
on loopback:

1. start it on an empty data directory (start-up time to a healthy /health,
   memory at rest), ingest N traces with the real SDK in four set-ups
   (synchronous / asynchronous logging x 1 / 4 client processes), each timed
   until a count on the server confirms every trace arrived (or stops
   growing: dropped traces are reported), memory sampled throughout; stop it;
2. start it again, load the query dataset up to each size in SIZES (identical
   traces in both), run the query suite through the SDK, measure disk; stop.

Then the clients alone (in-process no-op sink, tracing disabled) for their
own production time, and finally one table with both systems and the ratio
per row, printed and written to BENCHMARKS.md with the raw figures as JSON.

Standard library only (plus `requests`, present in the tracing venv that the
Makefile runs this with).
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import report  # noqa: E402
import requests  # noqa: E402
import servers  # noqa: E402
import workload  # noqa: E402

INGEST_SETUPS = [("sync", 1), ("sync", 4), ("async", 1), ("async", 4)]


def log(msg):
    print(f"[{datetime.datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args):
        self.a = args
        self.work = os.path.abspath(args.work_dir)
        self.py_tracing = os.path.join(args.tracing_venv, "bin", "python")
        self.py_mlflow = os.path.join(args.mlflow_venv, "bin", "python")
        self.results = {
            "config": {
                "n": args.n, "sizes": args.sizes, "reps": args.reps, "budget": args.budget,
                "step_ms": args.step_ms, "templates": workload.TEMPLATES,
            },
            "ingest": {}, "baseline": {}, "query": {}, "cost": {}, "load": {}, "checks": [],
        }

    # ---------- helpers ----------

    def client_env(self, async_logging):
        env = dict(os.environ)
        env["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "true" if async_logging else "false"
        env["MLFLOW_DISABLE_TELEMETRY"] = "true"
        env["DO_NOT_TRACK"] = "true"
        # Long searches on MLflow at 100,000 traces must not hit the SDK's 120 s default.
        env["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(self.a.query_timeout)
        return env

    def server(self, system, tag):
        d = os.path.join(self.work, f"{system}-{tag}")
        shutil.rmtree(d, ignore_errors=True)
        logf = os.path.join(self.work, f"{system}-{tag}.log")
        if system == "tracebox":
            return servers.Tracebox(self.a.tracebox_bin, d, logf)
        return servers.Mlflow(self.a.mlflow_venv, d, logf)

    @staticmethod
    def create_experiment(srv, name):
        r = requests.post(srv.url + "/api/2.0/mlflow/experiments/create", json={"name": name}, timeout=60)
        r.raise_for_status()
        return str(r.json()["experiment_id"])

    @staticmethod
    def count(srv, exp):
        """Traces the server lists in an experiment (REST search, 500 per page)."""
        n, token = 0, None
        while True:
            body = {"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp}}],
                    "max_results": 500}
            if token:
                body["page_token"] = token
            r = requests.post(srv.url + "/api/3.0/mlflow/traces/search", json=body, timeout=600)
            r.raise_for_status()
            j = r.json()
            n += len(j.get("traces", []))
            token = j.get("next_page_token")
            if not token:
                return n

    @staticmethod
    def db_counts(system, srv, exp):
        """(traces, complete traces: info received and all 4 spans, spans) read
        from the server's SQLite file after the clock stopped."""
        import sqlite3

        path = srv.db_path()
        if not path:
            return None
        try:
            c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
            if system == "tracebox":
                row = c.execute(
                    "SELECT count(*), coalesce(sum(info_finalized = 1 AND span_count = 4), 0), coalesce(sum(span_count), 0) "
                    "FROM traces WHERE experiment_id = ?", (int(exp),)).fetchone()
            else:
                row = c.execute(
                    "SELECT count(*), coalesce(sum(n = 4 AND fin), 0), coalesce(sum(n), 0) FROM ("
                    " SELECT (SELECT count(*) FROM spans s WHERE s.trace_id = t.request_id) AS n,"
                    " EXISTS(SELECT 1 FROM trace_request_metadata m WHERE m.request_id = t.request_id"
                    "        AND m.key = 'mlflow.trace.infoFinalized') AS fin"
                    " FROM trace_info t WHERE t.experiment_id = ?)", (int(exp),)).fetchone()
            c.close()
            return {"traces": row[0], "complete": row[1], "spans": row[2]}
        except Exception as e:  # noqa: BLE001 - a verification aid, reported
            return {"error": str(e)}

    def sampler(self, srv):
        """Samples the server's process-tree memory every 0.5 s until stopped."""
        stop = threading.Event()
        peak = {"rss": 0, "pss": 0, "procs": 0}

        def run():
            while not stop.is_set():
                try:
                    procs, rss, pss = srv.memory()
                    if rss > peak["rss"]:
                        peak.update(rss=rss, pss=pss, procs=procs)
                except Exception:  # noqa: BLE001 - a process may vanish mid-read
                    pass
                stop.wait(0.5)

        t = threading.Thread(target=run, daemon=True)
        t.start()

        def finish():
            stop.set()
            t.join()
            return peak

        return finish

    def run_clients(self, mode, clients, sink, uri, experiment, n, warmup="0"):
        """Starts `clients` processes, releases them together, waits; returns
        (t_go, results)."""
        env = self.client_env(mode == "async")
        per = [n // clients + (1 if k < n % clients else 0) for k in range(clients)]
        procs, first = [], 0
        for k in range(clients):
            cmd = [self.py_tracing, os.path.join(HERE, "ingest_client.py"), "--uri", uri, "--experiment", experiment,
                   "--first", str(first), "--count", str(per[k]), "--sink", sink, "--barrier", "--warmup", warmup]
            first += per[k]
            procs.append(subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=open(os.path.join(self.work, "clients.log"), "ab"), text=True))
        for p in procs:
            line = p.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"client did not start: {line!r} (see {self.work}/clients.log)")
        t_go = time.time()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            try:
                out, _ = p.communicate(timeout=self.a.timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            for line in out.splitlines():
                if line.startswith("RESULT "):
                    results.append(json.loads(line[7:]))
        if len(results) != clients:
            raise RuntimeError(f"{clients - len(results)} client(s) failed (see {self.work}/clients.log)")
        return t_go, results

    # ---------- phases ----------

    def templates(self):
        """Records workload.TEMPLATES traces through the SDK (cached by content)."""
        h = hashlib.sha256()
        for f in ("workload.py", "ingest_client.py", "transport.py"):
            with open(os.path.join(HERE, f), "rb") as fh:
                h.update(fh.read())
        path = os.path.join(self.work, f"templates-{h.hexdigest()[:12]}.jsonl.gz")
        if not os.path.exists(path):
            log(f"recording {workload.TEMPLATES} template traces with the SDK")
            tmp = path + ".tmp"
            self._record(0, workload.TEMPLATES, tmp)
            os.replace(tmp, path)
        # Self-check: what the SDK sends for other indices equals the clones.
        check = os.path.join(self.work, "check.jsonl.gz")
        self._record(123_456, 3, check)
        p = subprocess.run([self.py_tracing, os.path.join(HERE, "dataset.py"), path, check],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError("dataset clones differ from the SDK's output:\n" + p.stderr[-3000:])
        self.results["checks"].append("dataset: " + p.stdout.strip())
        return path

    def _record(self, first, count, out):
        p = subprocess.run(
            [self.py_tracing, os.path.join(HERE, "ingest_client.py"), "--first", str(first), "--count", str(count),
             "--sink", "record", "--out", out],
            env=self.client_env(False), capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError("recording failed:\n" + p.stderr[-3000:])

    def ingest(self, system):
        res = self.results["ingest"].setdefault(system, {})
        cost = self.results["cost"].setdefault(system, {})
        srv = self.server(system, "ingest")
        try:
            cost["startup_seconds"] = srv.start()
            log(f"{system}: healthy after {cost['startup_seconds']:.3f} s")
            time.sleep(self.a.settle)
            procs, rss, pss = srv.memory()
            cost.update(processes=procs, rss_rest=rss, pss_rest=pss)
            finish = self.sampler(srv)
            base = self.results["baseline"].setdefault(system, {})
            for mode, clients in INGEST_SETUPS:
                key = f"{mode}/{clients}"
                # The same clients with no server, right before: on a shared
                # machine only adjacent runs are comparable.
                log(f"{system}: clients alone (no-op sink), {mode}, {clients} client(s)")
                try:
                    base[key] = self.baseline("noop", mode, clients)
                except Exception as e:  # noqa: BLE001
                    base[key] = {"error": str(e)[:500]}
                log(f"{system}: ingest {self.a.n} traces, {mode}, {clients} client(s)")
                try:
                    res[key] = self._ingest_one(system, srv, mode, clients)
                    r = res[key]
                    log(f"  {r['arrived']}/{self.a.n} arrived in {r['seconds']:.1f} s = {r['rate']:.1f} traces/s")
                except Exception as e:  # noqa: BLE001 - one failed row must not lose the run
                    res[key] = {"error": str(e)[:500]}
                    log(f"  failed: {e}")
            peak = finish()
            cost.update(rss_load=peak["rss"], pss_load=peak["pss"], processes_load=peak["procs"])
        finally:
            srv.stop()
            self.discard(srv)

    def _ingest_one(self, system, srv, mode, clients):
        n = self.a.n
        name = f"ingest-{mode}-{clients}"
        exp = self.create_experiment(srv, name)
        warm = self.create_experiment(srv, name + "-warmup")
        cpu0, io0 = srv.cpu(), srv.io()
        t_go, results = self.run_clients(mode, clients, "server", srv.url, name, n, warm)
        t_clients = max(r["t_flushed"] for r in results)
        # Verify by count before the clock stops; the clock stops when the
        # verifying request was sent. Dropped traces never arrive: stop
        # waiting once the count has not grown for `stall` seconds.
        last, t_end, t_change = -1, None, time.time()
        deadline = time.time() + self.a.timeout
        while True:
            t_ask = time.time()
            c = self.count(srv, exp)
            if c != last:
                last, t_change, t_end = c, time.time(), t_ask
            if c >= n or time.time() - t_change > self.a.stall or time.time() > deadline:
                break
            time.sleep(0.5)
        seconds = t_end - t_go
        server_cpu = srv.cpu() - cpu0
        io1 = srv.io()
        db = self.db_counts(system, srv, exp)
        return {
            "n": n, "arrived": last, "dropped": n - last, "seconds": seconds, "rate": last / seconds,
            "clients_seconds": t_clients - t_go,
            "client_http_seconds": sum(r["http_seconds"] for r in results),
            "client_http_requests": sum(r["http_requests"] for r in results),
            "client_cpu_seconds": sum(r["cpu_seconds"] for r in results),
            "server_cpu_seconds": server_cpu,
            "server_write_bytes": io1[1] - io0[1],
            "server_wchar": io1[0] - io0[0],
            "db": db,
        }

    def baseline(self, sink, mode, clients):
        """The clients alone, no server: their own production rate."""
        t_go, results = self.run_clients(mode, clients, sink, "http://127.0.0.1:9", "bench", self.a.n)
        seconds = max(r["t_flushed"] for r in results) - t_go
        return {"seconds": seconds, "rate": self.a.n / seconds,
                "cpu_seconds": sum(r["cpu_seconds"] for r in results),
                "requests": sum(r["http_requests"] for r in results)}

    def baselines(self):
        """Tracing disabled: the application code alone."""
        res = self.results["baseline"]
        for clients in (1, 4):
            log(f"clients alone: tracing disabled, {clients} client(s)")
            try:
                res[f"disabled/{clients}"] = self.baseline("disabled", "sync", clients)
            except Exception as e:  # noqa: BLE001
                res[f"disabled/{clients}"] = {"error": str(e)[:500]}

    def load(self, system, srv, exp, templates, t0, first, count):
        procs = self.a.load_procs
        per = [count // procs + (1 if k < count % procs else 0) for k in range(procs)]
        cmds, start = [], first
        for k in range(procs):
            if per[k] == 0:
                continue
            common = ["--experiment-id", exp, "--templates", templates, "--t0", str(t0), "--step", str(self.a.step_ms),
                      "--first", str(start), "--count", str(per[k])]
            if system == "tracebox":
                cmds.append([self.py_tracing, os.path.join(HERE, "load_tracebox.py"), "--url", srv.url] + common)
            else:
                cmds.append([self.py_mlflow, os.path.join(HERE, "load_mlflow.py"), "--db-uri", srv.db_uri,
                             "--artifact-root", srv.artifacts, "--no-fsync"] + common)
            start += per[k]
        t = time.time()
        ps = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
        for p in ps:
            out, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"{system} loader failed:\n{err[-3000:]}")
        return time.time() - t

    def queries(self, system, templates, t0):
        res = self.results["query"].setdefault(system, {})
        cost = self.results["cost"].setdefault(system, {})
        loads = self.results["load"].setdefault(system, {})
        srv = self.server(system, "query")
        try:
            cost["startup_seconds_2"] = srv.start()
            exp = self.create_experiment(srv, "queries")
            loaded = 0
            for size in self.a.sizes:
                log(f"{system}: loading traces {loaded}..{size - 1}")
                loads[str(size)] = self.load(system, srv, exp, templates, t0, loaded, size - loaded)
                loaded = size
                db = self.db_counts(system, srv, exp)
                if db and db.get("complete") is not None and db["complete"] != size:
                    self.results["checks"].append(f"{system}: {db['complete']} complete traces of {size} loaded")
                # "At rest" means after the server finished the work the
                # load left it (index catch-up, checkpoints), for both systems.
                servers.wait_idle(srv.proc.pid, cap=120)
                time.sleep(self.a.settle)
                procs, rss, pss = srv.memory()
                cost[f"disk_{size}"] = srv.disk()
                cost[f"rss_rest_{size}"] = rss
                log(f"{system}: {size} traces, {cost[f'disk_{size}'] / size:.0f} B/trace on disk; querying")
                servers.wait_idle(srv.proc.pid, cap=120)
                finish = self.sampler(srv)
                env = self.client_env(False)
                # A timed-out query must fail once, not be retried for hours.
                env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
                p = subprocess.run(
                    [self.py_tracing, os.path.join(HERE, "query_client.py"), "--uri", srv.url, "--experiment-id", exp,
                     "--timeout", str(self.a.query_timeout), "--server-pid", str(srv.proc.pid),
                     "--size", str(size), "--t0", str(t0), "--step", str(self.a.step_ms), "--reps", str(self.a.reps),
                     "--budget", str(self.a.budget)] + (["--queries", self.a.queries] if self.a.queries else []),
                    env=env, capture_output=True, text=True)
                peak = finish()
                cost[f"rss_query_{size}"] = peak["rss"]
                cost[f"pss_query_{size}"] = peak["pss"]
                sys.stderr.write(p.stderr[-2000:])
                out = [line for line in p.stdout.splitlines() if line.startswith("RESULT ")]
                if p.returncode != 0 or not out:
                    res[str(size)] = {"error": p.stderr[-1000:]}
                    continue
                res[str(size)] = json.loads(out[-1][7:])
                self.save()
        finally:
            srv.stop()
            self.discard(srv)

    def save(self):
        """Writes the raw figures so far: a run stopped part-way still leaves
        them (`python bench/compare/report.py` renders a partial table)."""
        raw = os.path.join(self.work, "results.json")
        with open(raw + ".tmp", "w") as f:
            json.dump(self.results, f, indent=1)
        os.replace(raw + ".tmp", raw)
        return raw

    def discard(self, srv):
        """Data directories reach gigabytes at 100,000 traces; logs stay."""
        if not self.a.keep_data:
            shutil.rmtree(srv.data_dir, ignore_errors=True)

    def install_sizes(self):
        c = self.results["cost"]
        c.setdefault("tracebox", {})["install_bytes"] = os.path.getsize(self.a.tracebox_bin)
        c.setdefault("mlflow", {})["install_bytes"] = servers.dir_size(os.path.realpath(self.a.mlflow_venv))

    def environment(self):
        def out(cmd):
            try:
                return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
            except Exception:  # noqa: BLE001
                return "?"

        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
        ver = lambda py, mod: out([py, "-c", f"import importlib.metadata as m; print(m.version('{mod}'))"])  # noqa: E731
        self.results["environment"] = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(),
            "cpu": cpu,
            "memory_gib": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(),
            "loadavg_start": open("/proc/loadavg").read().split()[:3],
            "tracebox": out([self.a.tracebox_bin, "--version"]),
            "tracebox_commit": out(["git", "-C", HERE, "rev-parse", "--short", "HEAD"]),
            "mlflow_server": ver(self.py_mlflow, "mlflow"),
            "mlflow_tracing": ver(self.py_tracing, "mlflow-tracing"),
            "python": out([self.py_tracing, "-c", "import platform; print(platform.python_version())"]),
            "command": self.a.command or " ".join(sys.argv),
        }

    def run(self):
        os.makedirs(self.work, exist_ok=True)
        self.environment()
        self.install_sizes()
        templates = self.templates()
        phases = self.a.phases.split(",")
        systems = self.a.systems.split(",")
        if "ingest" in phases:
            for system in systems:
                self.ingest(system)
                self.save()
            self.baselines()
            self.save()
        if "query" in phases:
            # All traces in the past (tracebox keeps 90 days by default), one every step_ms.
            t0 = (int(time.time() * 1000) - max(self.a.sizes) * self.a.step_ms - 3_600_000) // 1000 * 1000
            self.results["config"]["t0_ms"] = t0
            for system in systems:
                self.queries(system, templates, t0)
        self.results["environment"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        raw = self.save()
        text = report.render(self.results)
        print(text)
        if self.a.out:
            with open(self.a.out, "w") as f:
                f.write(report.markdown(self.results))
            log(f"wrote {self.a.out} (raw figures: {raw})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracebox-bin", default="target/release/tracebox")
    ap.add_argument("--mlflow-venv", default=".venv-mlflow")
    ap.add_argument("--tracing-venv", default=".venv-tracing")
    ap.add_argument("--n", type=int, default=2000, help="traces per ingestion set-up")
    ap.add_argument("--sizes", default="10000,100000", help="stored traces for the query suite")
    ap.add_argument("--reps", type=int, default=50, help="repetitions per query")
    ap.add_argument("--budget", type=float, default=120, help="seconds per query before stopping at 5 reps")
    ap.add_argument("--queries", default="", help="comma-separated subset of query_client.QUERIES")
    ap.add_argument("--phases", default="ingest,query")
    ap.add_argument("--systems", default="tracebox,mlflow", help="for development: measure only one")
    ap.add_argument("--step-ms", type=int, default=500, help="time between consecutive dataset traces")
    ap.add_argument("--load-procs", type=int, default=2, help="parallel loader processes")
    ap.add_argument("--timeout", type=float, default=3600, help="longest wait for one ingestion set-up")
    ap.add_argument("--stall", type=float, default=15, help="stop waiting when the count has not grown for this long")
    ap.add_argument("--settle", type=float, default=3, help="idle seconds before 'at rest' measurements")
    ap.add_argument("--query-timeout", type=int, default=900, help="SDK HTTP timeout for one query call (s)")
    ap.add_argument("--work-dir", default="target/bench-compare")
    ap.add_argument("--keep-data", action="store_true", help="keep the servers' data directories")
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("--command", default="", help="the command line to print in the report")
    args = ap.parse_args()
    args.sizes = sorted(int(s) for s in str(args.sizes).split(",") if s.strip())
    # Servers run with their data directory as working directory.
    args.tracebox_bin = os.path.abspath(args.tracebox_bin)
    args.mlflow_venv = os.path.abspath(args.mlflow_venv)
    args.tracing_venv = os.path.abspath(args.tracing_venv)
    for p in (args.tracebox_bin, os.path.join(args.mlflow_venv, "bin", "mlflow"),
              os.path.join(args.tracing_venv, "bin", "python")):
        if not os.path.exists(p):
            raise SystemExit(f"{p} not found (make bench-compare builds and installs it)")
    Bench(args).run()


if __name__ == "__main__":
    main()
