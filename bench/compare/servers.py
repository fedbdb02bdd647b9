"""Starting, measuring and stopping the two servers (Linux: reads /proc).

Standard library only. Each server runs in its own session (process group),
so it and every process it spawns (MLflow's uvicorn workers, job runners)
are measured together and stopped together, by that group's id only.
"""

import os
import signal
import socket
import subprocess
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        kids.setdefault(int(fields[1]), []).append(int(d))
    return kids


def process_tree(pid):
    kids = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _kib(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(pid):
    """(processes, summed RSS bytes, summed PSS bytes) of pid and its descendants.
    RSS counts pages shared between forked workers once per process (what the
    issue asks for); PSS splits them, the fairer figure for forking servers."""
    procs = process_tree(pid)
    rss = sum(_kib(f"/proc/{p}/status", "VmRSS") for p in procs)
    pss = sum(_kib(f"/proc/{p}/smaps_rollup", "Pss") for p in procs)
    return len(procs), rss * 1024, pss * 1024


def cpu_seconds(pid):
    """CPU time (user + system, including reaped children) of pid and its
    descendants so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        # utime, stime, cutime, cstime are fields 14-17 (1-based) of stat.
        total += sum(int(x) for x in fields[11:15])
    return total / tick


def io_bytes(pid):
    """(bytes handed to write(), bytes sent to storage) by pid and its
    descendants so far (/proc/<pid>/io: wchar, write_bytes)."""
    wchar = written = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/io") as f:
                d = dict(line.split(": ") for line in f.read().splitlines() if ": " in line)
        except OSError:
            continue
        wchar += int(d.get("wchar", 0))
        written += int(d.get("write_bytes", 0))
    return wchar, written


def wait_idle(pid, cap=1800, threshold=0.2):
    """Waits until the process tree used less than `threshold` CPU seconds
    in 2 s (at most `cap` seconds)."""
    t_end = time.time() + cap
    last = cpu_seconds(pid)
    while time.time() < t_end:
        time.sleep(2)
        now = cpu_seconds(pid)
        if now - last < threshold:
            return
        last = now


def dir_size(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def http_ok(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except Exception:
        return False


class Server:
    """A server process; `start()` returns seconds until `/health` answered 200."""

    name = "server"

    def __init__(self, data_dir, log_path):
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.peak = (0, 0, 0)

    def command(self):
        raise NotImplementedError

    def env(self):
        return dict(os.environ)

    def start(self, timeout=300):
        os.makedirs(self.data_dir, exist_ok=True)
        log = open(self.log_path, "ab")
        t = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command(), cwd=self.data_dir, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        while time.perf_counter() - t < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if http_ok(self.url + "/health", timeout=1):
                return time.perf_counter() - t
            time.sleep(0.01)
        raise RuntimeError(f"{self.name} not healthy after {timeout}s; see {self.log_path}")

    def memory(self):
        m = memory(self.proc.pid)
        if m[1] > self.peak[1]:
            self.peak = m
        return m

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def io(self):
        return io_bytes(self.proc.pid)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        # Stray children of the group (MLflow's workers) go with it.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, AttributeError):
            pass


class Tracebox(Server):
    name = "tracebox"

    def __init__(self, binary, data_dir, log_path):
        super().__init__(data_dir, log_path)
        self.binary = binary

    def command(self):
        return [self.binary, "serve", "--data", self.data_dir, "--host", "127.0.0.1",
                "--port", str(self.port), "--otlp-grpc-port", "0"]

    def env(self):
        return dict(os.environ, RUST_LOG="warn")

    def disk(self):
        return dir_size(self.data_dir)

    def db_path(self):
        for name in ("tracebox.db", "tracebox.sqlite", "db.sqlite"):
            p = os.path.join(self.data_dir, name)
            if os.path.exists(p):
                return p
        for f in sorted(os.listdir(self.data_dir)):
            if f.endswith((".db", ".sqlite", ".sqlite3")):
                return os.path.join(self.data_dir, f)
        return None


class Mlflow(Server):
    name = "mlflow"

    def __init__(self, venv, data_dir, log_path):
        super().__init__(data_dir, log_path)
        self.venv = venv
        self.db_file = os.path.join(data_dir, "mlflow.db")
        self.db_uri = "sqlite:///" + self.db_file
        self.artifacts = os.path.join(data_dir, "mlartifacts")

    def command(self):
        # Defaults otherwise: 4 uvicorn workers, proxied artifact serving.
        return [os.path.join(self.venv, "bin", "mlflow"), "server",
                "--backend-store-uri", self.db_uri, "--artifacts-destination", self.artifacts,
                "--host", "127.0.0.1", "--port", str(self.port)]

    def env(self):
        return dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")

    def disk(self):
        return dir_size(self.data_dir)

    def db_path(self):
        return self.db_file
