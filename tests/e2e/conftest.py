"""Fixtures for end-to-end tests: the real tracebox binary, started on port 0
with a temporary data directory, driven by the real MLflow / OpenTelemetry
Python SDKs.

The binary comes from $TRACEBOX_BIN (the Makefile points it at the debug
build)."""

import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import requests

BIN = os.environ.get("TRACEBOX_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "target", "debug", "tracebox"))


class Tracebox:
    def __init__(self, data_dir, extra_args=(), env=None):
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.env = env or {}
        self.proc = None
        self.url = None
        self.grpc = None
        self.start()

    def start(self):
        args = [BIN, "serve", "--data", self.data_dir, "--host", "127.0.0.1", "--port", "0"]
        if "--otlp-grpc-port" not in self.extra_args:
            args += ["--otlp-grpc-port", "0"]
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"), **self.env)
        self.proc = subprocess.Popen(args + self.extra_args, stdout=subprocess.PIPE, stderr=None, text=True, env=env)
        want_grpc = "--otlp-grpc-port" in self.extra_args
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.match(r"tracebox listening on (\S+)", line)
            if m:
                self.url = m.group(1)
            m = re.match(r"tracebox OTLP/gRPC on (\S+)", line)
            if m:
                self.grpc = m.group(1)
            if self.url and (self.grpc or not want_grpc):
                break
        assert self.url, "tracebox did not start"
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for _ in self.proc.stdout:
            pass

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        self.kill9()
        self.start()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def get(self, path, **kw):
        return requests.get(self.url + path, timeout=30, **kw)

    def post(self, path, **kw):
        return requests.post(self.url + path, timeout=30, **kw)

    def search(self, experiment_id="0", filter=None, max_results=500, **extra):
        body = {"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": str(experiment_id)}}],
                "max_results": max_results, **extra}
        if filter:
            body["filter"] = filter
        r = self.post("/api/3.0/mlflow/traces/search", json=body)
        r.raise_for_status()
        return r.json().get("traces", [])

    def wait_for_index(self, timeout=120):
        """Waits until the full-text index holds everything committed so
        far (the status endpoint's `index.caught_up`); text searches made
        after it see every trace written before the call."""
        def caught_up():
            r = self.get("/api/tracebox/v1/status")
            r.raise_for_status()
            return (r.json().get("index") or {}).get("caught_up") is True
        wait_for(caught_up, timeout=timeout, interval=0.05, what="full-text index caught up")

    def count(self, experiment_id="0", filter=None):
        n, token = 0, None
        while True:
            extra = {"page_token": token} if token else {}
            body = {"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": str(experiment_id)}}],
                    "max_results": 500, **extra}
            if filter:
                body["filter"] = filter
            r = self.post("/api/3.0/mlflow/traces/search", json=body)
            r.raise_for_status()
            j = r.json()
            n += len(j.get("traces", []))
            token = j.get("next_page_token")
            if not token:
                return n


@pytest.fixture
def tracebox():
    with tempfile.TemporaryDirectory(prefix="tracebox-e2e-") as d:
        tb = Tracebox(d)
        yield tb
        tb.stop()


def free_port():
    """A loopback port that is free right now (gRPC needs an explicit port
    next to HTTP's port 0)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tracebox_grpc():
    """A server with OTLP/gRPC on an explicit free port (`tb.grpc`)."""
    with tempfile.TemporaryDirectory(prefix="tracebox-e2e-") as d:
        tb = Tracebox(d, ["--otlp-grpc-port", str(free_port())])
        yield tb
        tb.stop()


@pytest.fixture
def make_tracebox():
    """Factory for servers with extra arguments or environment."""
    started = []
    dirs = []

    def make(extra_args=(), env=None, data_dir=None):
        if data_dir is None:
            d = tempfile.TemporaryDirectory(prefix="tracebox-e2e-")
            dirs.append(d)
            data_dir = d.name
        tb = Tracebox(data_dir, extra_args, env)
        started.append(tb)
        return tb

    yield make
    for tb in started:
        tb.stop()
    for d in dirs:
        d.cleanup()


def run_client(script, env, timeout=300):
    """Runs a Python script in a fresh interpreter of this venv (so SDK
    environment variables such as sampling take effect at import) and returns
    its stdout; fails the test with its output on error."""
    p = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, **env), capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"client script failed ({p.returncode}):\nSTDOUT:\n{p.stdout}\nSTDERR:\n{p.stderr[-4000:]}")
    return p.stdout


def wait_for(pred, timeout=30, interval=0.1, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
