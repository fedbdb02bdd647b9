"""Times the read side through the real mlflow-tracing SDK, as a user would
call it: `mlflow.search_traces(...)` (first page of up to 100 traces, with
spans -- the SDK default -- and without) and `mlflow.get_trace(id)`.

Runs in the mlflow-tracing venv against one server holding dataset traces
0..size-1 (dataset.py). Parameters are drawn from a seeded generator, so both
servers answer the same sequence of questions; the number of results of each
call is reported so the orchestrator can check that they agree.

For the first few repetitions the same call is run once more with the
responses replayed from memory (transport.Replay): the SDK's own time for
that query, which no server can beat.

A query the server rejects (4xx: e.g. a filter form it does not implement)
is reported as unsupported, not as a crash.
"""

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dataset  # noqa: E402
import transport  # noqa: E402
import workload  # noqa: E402

MAX_RESULTS = 100

# name -> (description shown in the table, kind)
QUERIES = {
    "user": "search_traces by user",
    "session": "search_traces by session",
    "env_time": "search_traces by environment + time range",
    "ordered": "search_traces, ordered first page",
    "get_trace": "get_trace by id",
    # Last: on MLflow these take seconds to minutes.
    "span_name": "search_traces by span.name",
    "fulltext": "search_traces full text (trace.text LIKE)",
}


def search_args(name, rng, size, t0, step):
    if name == "user":
        return {"filter_string": f"metadata.`mlflow.trace.user` = 'user-{rng.randrange(workload.USERS):04d}'"}
    if name == "session":
        return {"filter_string": f"metadata.`mlflow.trace.session` = '{workload.session_of(rng.randrange(size))}'"}
    if name == "env_time":
        span = size * step
        window = max(span // 10, 1)
        a = t0 + rng.randrange(max(span - window, 1))
        return {"filter_string": f"tags.environment = 'production' AND attributes.timestamp_ms >= {a} "
                                 f"AND attributes.timestamp_ms < {a + window}"}
    if name == "ordered":
        return {"order_by": ["timestamp_ms DESC"]}
    if name == "span_name":
        return {"filter_string": f"span.name = '{rng.choice(workload.TOOLS)}'"}
    if name == "fulltext":
        return {"filter_string": f"trace.text LIKE '%{workload.order_number(rng.randrange(size))}%'"}
    raise KeyError(name)


def wait_idle(pid):
    """After a client-side timeout the server may still be working on the
    abandoned query: wait until it is idle so later figures are not skewed."""
    if pid:
        import servers

        servers.wait_idle(pid, cap=600)


def classify(exc):
    """'unsupported' for a server's 4xx answer, 'timeout', else 'error'."""
    text = str(exc)
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return "timeout"
    code = getattr(exc, "error_code", "") or ""
    if any(c in text or c in code for c in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST", "NOT_IMPLEMENTED",
                                            "ENDPOINT_NOT_FOUND", "400", "404", "501")):
        return "unsupported"
    return "error"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--experiment-id", required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--t0", type=int, required=True)
    ap.add_argument("--step", type=int, required=True)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--min-reps", type=int, default=5)
    ap.add_argument("--budget", type=float, default=120.0, help="seconds per query before stopping at min-reps")
    ap.add_argument("--queries", default=",".join(QUERIES))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--replays", type=int, default=5, help="reps also re-run from recorded responses")
    ap.add_argument("--timeout", type=float, default=0, help="the SDK's HTTP timeout, for the report")
    ap.add_argument("--server-pid", type=int, default=0, help="to wait for the server to be idle after a timeout")
    args = ap.parse_args()

    timer = transport.HttpTimer()
    replay = transport.Replay()
    transport.measure(timer, replay)
    import mlflow
    import requests

    mlflow.set_tracking_uri(args.uri)
    exp = str(args.experiment_id)

    # The floor: one bare HTTP round trip from this client (no SDK).
    s = requests.Session()
    floor = []
    for _ in range(30):
        t = time.perf_counter()
        s.get(args.uri + "/health", timeout=30)
        floor.append(time.perf_counter() - t)

    out = {"http_floor_seconds": sorted(floor)[len(floor) // 2], "queries": {}}
    plan = []
    for name in args.queries.split(","):
        if name == "get_trace":
            plan.append(("get_trace", None))
        else:
            plan.append((name, True))
            plan.append((name, False))

    timed_out = set()  # filters that timed out once: the other variant would too

    def wait_if_more(i):
        """Waits for the server to drop an abandoned query only if a query
        that will actually run follows."""
        if any(n not in timed_out for n, _ in plan[i + 1 :]):
            wait_idle(args.server_pid)

    for i, (name, spans) in enumerate(plan):
        key = name if spans is None else f"{name}/{'spans' if spans else 'nospans'}"
        rng = random.Random(f"{args.seed}-{name}")
        if name in timed_out:
            # The server's time is spent on the filter, not on the spans: on
            # MLflow a span.name or full-text search that timed out once takes
            # as long again without spans (and minutes more to abandon).
            out["queries"][key] = {"status": "skipped", "times": [],
                                   "error": "not run: the same filter timed out in the other variant"}
            print(f"  {key}: skipped (same filter timed out)", file=sys.stderr, flush=True)
            continue

        def params():
            if name == "get_trace":
                return dataset.trace_id(rng.randrange(args.size))
            return search_args(name, rng, args.size, args.t0, args.step)

        def call(p):
            if name == "get_trace":
                tr = mlflow.get_trace(p)
                if tr is None:
                    raise RuntimeError("get_trace returned None (trace not found)")
                return 1, len(tr.data.spans)
            res = mlflow.search_traces(locations=[exp], max_results=MAX_RESULTS, include_spans=spans,
                                       return_type="list", **p)
            return len(res), sum(len(t.data.spans) for t in res)

        entry = {"times": [], "http": [], "results": [], "spans": [], "sdk_alone": [], "raw_http": []}
        out["queries"][key] = entry
        # Warm-up (connections, caches, lazy imports), timed: a query so slow
        # that min-reps of it would exceed the budget keeps this as its only
        # sample (marked cold) instead of running for hours.
        p = params()
        t = time.perf_counter()
        try:
            n, nspans = call(p)
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            entry["status"] = classify(e)
            entry["error"] = str(e)[:300]
            if entry["status"] == "timeout":
                entry["timeout_seconds"] = args.timeout
                timed_out.add(name)
                wait_if_more(i)
            print(f"  {key}: {entry['status']}", file=sys.stderr, flush=True)
            continue
        warm = time.perf_counter() - t
        entry["status"] = "ok"
        if warm * args.min_reps > args.budget:
            entry.update(times=[warm], results=[n], spans=[nspans], cold=True)
            print(f"  {key}: ok, 1 cold sample ({warm:.1f} s)", file=sys.stderr, flush=True)
            continue
        start = time.perf_counter()
        for rep in range(args.reps):
            p = params()
            replaying = rep < args.replays
            replay.mode = "record" if replaying else None
            h0 = timer.snapshot()["http_seconds"]
            t = time.perf_counter()
            try:
                n, nspans = call(p)
            except Exception as e:  # noqa: BLE001
                entry["status"] = "error" if classify(e) != "timeout" else "timeout"
                entry["error"] = f"rep {rep}: {str(e)[:300]}"
                replay.mode = None
                break
            entry["times"].append(time.perf_counter() - t)
            entry["http"].append(timer.snapshot()["http_seconds"] - h0)
            entry["results"].append(n)
            entry["spans"].append(nspans)
            if replaying:
                # The same call again, answered from memory: the SDK's own time.
                replay.mode = "replay"
                t = time.perf_counter()
                try:
                    call(p)
                    entry["sdk_alone"].append(time.perf_counter() - t)
                except Exception as e:  # noqa: BLE001 - the floor is optional
                    entry["sdk_alone_error"] = str(e)[:300]
                # And its requests once more, one after another, without the
                # SDK: the servers' own time (plus one HTTP round trip each).
                replay.mode = None
                try:
                    entry["raw_http"].append(replay.reissue(s))
                except Exception as e:  # noqa: BLE001
                    entry["raw_http_error"] = str(e)[:300]
                replay.clear()
            if rep + 1 >= args.min_reps and time.perf_counter() - start > args.budget:
                break
        print(f"  {key}: {entry['status']} {len(entry['times'])} reps", file=sys.stderr, flush=True)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
