"""Instrumentation of the SDK's HTTP transport, for the benchmark clients.

The mlflow-tracing SDK sends every request through `requests`, so patching
`requests.adapters.HTTPAdapter.send` sees all of it. Two uses:

* `measure()`: time spent waiting on the server (the whole `send`, i.e. the
  socket round trip and the server's work) versus the rest of the client's
  time, which is the SDK's own overhead.
* `NoopSink`: answers every request in-process like a server that takes no
  time, so the SDK still does all of its work (span conversion, protobuf and
  JSON serialisation, `requests` preparation) but nothing leaves the process.
  That is the clients' own production rate, the ceiling any server can reach
  with this SDK. It can also record what the SDK would have sent, grouped per
  trace, which is how the query datasets are made (see `record_dataset`).

Runs inside the mlflow-tracing venv (needs `requests`, `opentelemetry-proto`).
"""

import base64
import json
import threading
import time

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

_ORIGINAL_SEND = HTTPAdapter.send


class HttpTimer:
    """Sums wall time spent inside `HTTPAdapter.send`, over all threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seconds = 0.0
        self.requests = 0

    def add(self, dt):
        with self.lock:
            self.seconds += dt
            self.requests += 1

    def reset(self):
        with self.lock:
            self.seconds, self.requests = 0.0, 0

    def snapshot(self):
        with self.lock:
            return {"http_seconds": self.seconds, "http_requests": self.requests}


def measure(timer, replay=None):
    """Patches the transport to time every real request (and, with a
    `Replay`, to record responses or answer from the recording)."""

    def send(self, request, *args, **kwargs):
        if replay is not None and replay.mode == "replay":
            return replay.answer(request)
        t = time.perf_counter()
        try:
            resp = _ORIGINAL_SEND(self, request, *args, **kwargs)
        finally:
            timer.add(time.perf_counter() - t)
        if replay is not None and replay.mode == "record":
            replay.keep(request, resp)
        return resp

    HTTPAdapter.send = send


class Replay:
    """Records a call's HTTP exchanges, then answers the same requests from
    memory: re-running the same SDK call then costs only the SDK's own work
    (building requests, parsing responses into Trace objects), the floor that
    no server can go below."""

    def __init__(self):
        self.mode = None
        self.lock = threading.Lock()
        self.store = {}
        self.requests = []

    def clear(self):
        with self.lock:
            self.store.clear()
            self.requests.clear()

    @staticmethod
    def _key(request):
        body = request.body
        if isinstance(body, str):
            body = body.encode()
        return (request.method, request.url, body)

    def keep(self, request, resp):
        with self.lock:
            self.store[self._key(request)] = (resp.status_code, dict(resp.headers), resp.content)
            self.requests.append((request.method, request.url, request.body, dict(request.headers)))

    def reissue(self, session):
        """Sends the recorded requests again, sequentially, with a plain
        session; returns the total seconds."""
        with self.lock:
            reqs = list(self.requests)
        total = 0.0
        for method, url, body, headers in reqs:
            headers = {k: v for k, v in headers.items() if k.lower() in ("content-type", "x-mlflow-experiment-id")}
            t = time.perf_counter()
            r = session.request(method, url, data=body, headers=headers, timeout=3600)
            total += time.perf_counter() - t
            r.raise_for_status()
        return total

    def answer(self, request):
        with self.lock:
            hit = self.store.get(self._key(request))
        if hit is None:
            raise RuntimeError(f"replay: no recorded answer for {request.method} {request.url}")
        status, headers, content = hit
        r = _response(request, status, content, headers.get("Content-Type", "application/json"))
        return r


def _response(request, status, body, content_type):
    r = requests.Response()
    r.status_code = status
    r._content = body
    r.headers = CaseInsensitiveDict({"Content-Type": content_type, "Content-Length": str(len(body))})
    r.url = request.url
    r.request = request
    r.encoding = "utf-8"
    r.reason = "OK"
    return r


class NoopSink:
    """An in-process stand-in for a server that answers instantly."""

    def __init__(self, timer, recorder=None):
        self.timer = timer
        self.recorder = recorder

    def install(self):
        sink = self

        def send(adapter, request, *args, **kwargs):
            t = time.perf_counter()
            try:
                return sink.answer(request)
            finally:
                sink.timer.add(time.perf_counter() - t)

        HTTPAdapter.send = send

    def answer(self, request):
        path = request.path_url.split("?", 1)[0]
        if path.endswith("/version"):
            return _response(request, 200, b"3.17.2", "text/plain")
        if path.endswith("/v1/traces"):
            if self.recorder:
                self.recorder.spans(request.body)
            return _response(request, 200, b"", "application/x-protobuf")
        if path.endswith("/api/3.0/mlflow/traces") and request.method == "POST":
            body = json.loads(request.body)
            info = body["trace"]["trace_info"]
            if self.recorder:
                self.recorder.info(info["trace_id"], request.body)
            info.setdefault("tags", {})["mlflow.trace.spansLocation"] = "TRACKING_STORE"
            return _response(request, 200, json.dumps({"trace": {"trace_info": info}}).encode(), "application/json")
        if "/experiments/get" in path:
            exp = {"experiment_id": "1", "name": "bench", "artifact_location": "mlflow-artifacts:/1", "lifecycle_stage": "active"}
            return _response(request, 200, json.dumps({"experiment": exp}).encode(), "application/json")
        return _response(request, 200, b"{}", "application/json")


class Recorder:
    """Collects what the SDK sends, one JSON line per finished trace:
    `{"trace_id", "resource": b64, "spans": [b64 Span protos], "info": StartTraceV3 body}`.
    Needs synchronous logging (spans of a trace precede its StartTraceV3)."""

    def __init__(self, out):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self._req = ExportTraceServiceRequest
        self.out = out
        self.pending = {}
        self.resource = None
        self.lock = threading.Lock()
        self.written = 0

    def spans(self, body):
        req = self._req()
        req.ParseFromString(body)
        with self.lock:
            for rs in req.resource_spans:
                if self.resource is None:
                    self.resource = base64.b64encode(rs.resource.SerializeToString()).decode()
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        tid = "tr-" + s.trace_id.hex()
                        self.pending.setdefault(tid, []).append(base64.b64encode(s.SerializeToString()).decode())

    def info(self, trace_id, body):
        with self.lock:
            spans = self.pending.pop(trace_id, [])
            text = body.decode() if isinstance(body, bytes) else body
            self.out.write(json.dumps({"trace_id": trace_id, "resource": self.resource, "spans": spans, "info": text}) + "\n")
            self.written += 1
