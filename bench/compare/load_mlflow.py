"""Loads dataset traces into a real MLflow tracking store, in-process.

Runs in the full-mlflow venv against the SQLite database the MLflow server
uses (the server may be running; SQLite serialises the writers). For each
batch it does exactly what the server's handlers do with the SDK's requests,
minus HTTP: `/v1/traces` (mlflow/server/otel_api.py) parses the OTLP body,
turns each span into `Span.from_otel_proto(span, resource=...)` and calls
`store.log_spans(experiment_id, spans)`; StartTraceV3
(mlflow/server/handlers.py `_start_trace_v3`) parses the JSON into the
`StartTraceV3` proto and calls `store.start_trace(TraceInfo.from_proto(...))`.
Trace infos first, then the batch's spans: an order the SDK's async mode
produces too, and MLflow's cheaper one (spans first makes every start_trace
take the store's conflict-and-merge path: 3x slower here).
"""

import argparse
import json
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dataset  # noqa: E402


def retry(fn, *args):
    """Parallel loaders share one SQLite file: a write that still finds it
    locked after SQLite's busy timeout is tried again (both calls are
    idempotent for the same trace)."""
    for attempt in range(10):
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - only lock contention is retried
            if "locked" not in str(e).lower() or attempt == 9:
                raise
            time.sleep(1 + attempt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db-uri", required=True)
    ap.add_argument("--artifact-root", required=True)
    ap.add_argument("--experiment-id", required=True)
    ap.add_argument("--templates", required=True)
    ap.add_argument("--t0", type=int, required=True)
    ap.add_argument("--step", type=int, required=True)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--no-fsync", action="store_true")
    ap.add_argument("--order", choices=["spans-first", "info-first"], default="info-first")
    args = ap.parse_args()

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    from google.protobuf.json_format import Parse
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtelSpan

    from mlflow.entities import TraceInfo
    from mlflow.entities.span import Span
    from mlflow.protos.service_pb2 import StartTraceV3
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(args.db_uri, args.artifact_root)
    if args.no_fsync:
        # Loading only: skip the fsync at each commit (the rows written are the
        # same; the server's own connections keep MLflow's settings).
        from sqlalchemy import event

        event.listen(store.engine, "connect", lambda conn, _rec: conn.execute("PRAGMA synchronous=OFF"))
        store.engine.dispose()
    ds = dataset.Dataset(args.templates, args.t0, args.step)
    resource = Resource()
    resource.ParseFromString(ds.templates.resource)
    exp = str(args.experiment_id)

    t = time.time()
    end = args.first + args.count
    for start in range(args.first, end, args.batch):
        spans, infos = [], []
        for i in range(start, min(start + args.batch, end)):
            _, span_bytes, body = ds.clone(i)
            for b in span_bytes:
                p = OtelSpan()
                p.ParseFromString(b)
                spans.append(Span.from_otel_proto(p, resource=resource))
            infos.append(dataset.body_for(body, exp))
        if args.order == "spans-first":
            retry(store.log_spans, exp, spans)
        for text in infos:
            msg = Parse(text, StartTraceV3(), ignore_unknown_fields=True)
            retry(store.start_trace, TraceInfo.from_proto(msg.trace.trace_info))
        if args.order == "info-first":
            retry(store.log_spans, exp, spans)
    print("RESULT " + json.dumps({"loaded": args.count, "seconds": time.time() - t}), flush=True)


if __name__ == "__main__":
    main()
