"""The query datasets: any number of traces, byte-for-byte what the
mlflow-tracing SDK sends, made from a few recorded templates.

Recording 100,000 traces through the SDK would take half an hour of client
CPU here (about 10 ms per trace, most of it in the SDK's request plumbing), so
`ingest_client.py --sink record` records `workload.TEMPLATES` traces once
(synchronous logging, in-process no-op sink: the exact OTLP spans and
StartTraceV3 bodies the SDK produced), and trace i of a dataset is template
`i % TEMPLATES` with its trace id, span ids and times replaced and its
identifiers (order number, client request id, user, session) swapped for trace
i's equal-length ones (see workload.py). Trace and span ids derive from i, so
every loader and the query client agree on them without sharing a file.

Both loaders (tracebox over HTTP, MLflow through its store in-process) read
the same templates and call `clone()`, so both systems store identical traces.

Needs only `opentelemetry-proto` (present in both venvs).
"""

import base64
import datetime
import gzip
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workload  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import Span  # noqa: E402

EXPERIMENT_PLACEHOLDER = "__EXPERIMENT__"


def trace_bytes(i):
    return hashlib.blake2b(f"tracebox-bench-trace-{i}".encode(), digest_size=16).digest()


def trace_id(i):
    """The MLflow trace id of dataset trace i."""
    return "tr-" + trace_bytes(i).hex()


def _span_bytes(i, k):
    return hashlib.blake2b(f"tracebox-bench-span-{i}-{k}".encode(), digest_size=8).digest()


def _identifiers(i):
    return [
        workload.order_number(i),
        workload.client_request_id(i),
        workload.user_of(i),
        workload.session_of(i),
    ]


class Templates:
    def __init__(self, path):
        self.items = []
        with gzip.open(path, "rt") as f:
            for line in f:
                rec = json.loads(line)
                spans = []
                for b in rec["spans"]:
                    s = Span()
                    s.ParseFromString(base64.b64decode(b))
                    spans.append(s)
                info = json.loads(rec["info"])
                self.items.append({
                    "trace_id": rec["trace_id"],
                    "resource": base64.b64decode(rec["resource"]),
                    "spans": spans,
                    "info": info,
                    "root_start_ns": min(s.start_time_unix_nano for s in spans),
                })
        if len(self.items) != workload.TEMPLATES:
            raise SystemExit(f"{path}: {len(self.items)} templates, expected {workload.TEMPLATES}")
        self.resource = self.items[0]["resource"]


class Dataset:
    """Trace i starts at `t0_ms + i * step_ms` (plus the template's sub-ms part)."""

    def __init__(self, templates_path, t0_ms, step_ms):
        self.templates = Templates(templates_path)
        self.t0_ms = int(t0_ms)
        self.step_ms = int(step_ms)

    def time_ms(self, i):
        return self.t0_ms + i * self.step_ms

    def clone(self, i):
        """(trace_id, [serialised OTLP Span], StartTraceV3 body as a dict with
        EXPERIMENT_PLACEHOLDER as experiment id) of trace i."""
        t = i % workload.TEMPLATES
        tpl = self.templates.items[t]
        new_tid = trace_bytes(i)
        old_hex = tpl["trace_id"][3:]
        subs = [(old_hex, new_tid.hex())] + [
            (a, b) for a, b in zip(_identifiers(t), _identifiers(i)) if a != b
        ]
        target_ns = self.time_ms(i) * 1_000_000 + tpl["root_start_ns"] % 1_000_000
        delta = target_ns - tpl["root_start_ns"]
        ids = {}
        for k, s in enumerate(sorted(tpl["spans"], key=lambda s: s.start_time_unix_nano)):
            ids[s.span_id] = _span_bytes(i, k)
        out = []
        for s in tpl["spans"]:
            c = Span()
            c.CopyFrom(s)
            c.trace_id = new_tid
            c.span_id = ids[s.span_id]
            if s.parent_span_id:
                c.parent_span_id = ids[s.parent_span_id]
            c.start_time_unix_nano = s.start_time_unix_nano + delta
            c.end_time_unix_nano = s.end_time_unix_nano + delta
            b = c.SerializeToString()
            for a, z in subs:
                b = b.replace(a.encode(), z.encode())
            out.append(b)
        text = json.dumps(tpl["info"])
        for a, z in subs:
            text = text.replace(a, z)
        body = json.loads(text)
        ti = body["trace"]["trace_info"]
        ti["trace_id"] = "tr-" + new_tid.hex()
        ms = target_ns // 1_000_000
        ti["request_time"] = (
            datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{ms % 1000:03d}Z"
        )
        ti["trace_location"]["mlflow_experiment"]["experiment_id"] = EXPERIMENT_PLACEHOLDER
        return ti["trace_id"], out, body


def body_for(body, experiment_id):
    """The StartTraceV3 JSON text for an experiment."""
    return json.dumps(body).replace(EXPERIMENT_PLACEHOLDER, str(experiment_id))


def _normalise_span(b):
    s = Span()
    s.ParseFromString(b)
    from google.protobuf.json_format import MessageToDict

    d = MessageToDict(s)
    for k in ("traceId", "spanId", "parentSpanId", "startTimeUnixNano", "endTimeUnixNano"):
        d.pop(k, None)
    for a in d.get("attributes", []):
        if a["key"] == "mlflow.traceRequestId":
            a["value"] = "<trace id>"
    return d


def verify(templates_path, recorded_path):
    """Compares traces the SDK sent (recorded with `--sink record`) with the
    clones of the same indices: equal except ids and times. Returns the
    number of traces compared; raises on a difference."""
    ds = Dataset(templates_path, 0, 1)
    n = 0
    with gzip.open(recorded_path, "rt") as f:
        for line in f:
            rec = json.loads(line)
            info = json.loads(rec["info"])["trace"]["trace_info"]
            i = int(info["client_request_id"].split("-")[1])
            _, spans, body = ds.clone(i)
            got = sorted((_normalise_span(b) for b in spans), key=lambda d: d["name"])
            want = sorted((_normalise_span(base64.b64decode(b)) for b in rec["spans"]), key=lambda d: d["name"])
            if got != want:
                raise AssertionError(f"trace {i}: spans differ from the SDK's")
            ci = body["trace"]["trace_info"]
            for k in ("trace_id", "request_time", "execution_duration", "trace_location"):
                ci.pop(k, None)
                info.pop(k, None)
            # The serialised size includes times and durations, whose digits vary.
            a, b = ci["trace_metadata"], info["trace_metadata"]
            if abs(int(a.pop("mlflow.trace.sizeBytes")) - int(b.pop("mlflow.trace.sizeBytes"))) > 64:
                raise AssertionError(f"trace {i}: sizes differ")
            if json.loads(a.pop("mlflow.trace.sizeStats"))["num_spans"] != json.loads(b.pop("mlflow.trace.sizeStats"))["num_spans"]:
                raise AssertionError(f"trace {i}: span counts differ")
            if ci != info:
                diff = {k: (ci.get(k), info.get(k)) for k in set(ci) | set(info) if ci.get(k) != info.get(k)}
                raise AssertionError(f"trace {i}: trace info differs from the SDK's: {str(diff)[:2000]}")
            n += 1
    return n


if __name__ == "__main__":
    print(f"{verify(sys.argv[1], sys.argv[2])} traces identical to the SDK's output")
