"""Loads dataset traces into tracebox over its public HTTP API.

Runs in the mlflow-tracing venv. Per batch: one StartTraceV3 `POST /api/3.0/mlflow/traces`
per trace, then one OTLP/HTTP protobuf request to `/v1/traces` holding the
batch's spans (as the SDK's async mode batches them, only bigger),
the same bodies the SDK sends and `load_mlflow.py` hands to MLflow's store.
Batches go out from a few threads so the server, not this script, sets the
pace.
"""

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dataset  # noqa: E402
import requests  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.resource.v1.resource_pb2 import Resource  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import Span  # noqa: E402

_local = threading.local()


def session():
    s = getattr(_local, "s", None)
    if s is None:
        s = _local.s = requests.Session()
    return s


def post(url, retries=20, **kw):
    """POST with retries on 503 (tracebox's back-pressure) and connection resets."""
    for attempt in range(retries):
        try:
            r = session().post(url, timeout=120, **kw)
        except requests.ConnectionError:
            if attempt == retries - 1:
                raise
            time.sleep(0.5)
            continue
        if r.status_code == 503 and attempt < retries - 1:
            time.sleep(float(r.headers.get("Retry-After", "0.2") or 0.2))
            continue
        r.raise_for_status()
        return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--experiment-id", required=True)
    ap.add_argument("--templates", required=True)
    ap.add_argument("--t0", type=int, required=True)
    ap.add_argument("--step", type=int, required=True)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()

    ds = dataset.Dataset(args.templates, args.t0, args.step)
    resource = Resource()
    resource.ParseFromString(ds.templates.resource)
    exp = str(args.experiment_id)
    headers_otlp = {"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": exp}
    headers_json = {"Content-Type": "application/json"}

    def load(start, stop):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.CopyFrom(resource)
        ss = rs.scope_spans.add()
        infos = []
        for i in range(start, stop):
            _, span_bytes, body = ds.clone(i)
            for b in span_bytes:
                ss.spans.add().ParseFromString(b)
            infos.append(dataset.body_for(body, exp))
        for text in infos:
            post(args.url + "/api/3.0/mlflow/traces", data=text.encode(), headers=headers_json)
        post(args.url + "/v1/traces", data=req.SerializeToString(), headers=headers_otlp)

    t = time.time()
    end = args.first + args.count
    with ThreadPoolExecutor(args.threads) as pool:
        futures = [pool.submit(load, s, min(s + args.batch, end)) for s in range(args.first, end, args.batch)]
        for f in futures:
            f.result()
    print("RESULT " + json.dumps({"loaded": args.count, "seconds": time.time() - t}), flush=True)


if __name__ == "__main__":
    main()
