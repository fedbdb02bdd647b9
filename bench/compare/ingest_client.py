"""One benchmark client process: logs traces `first .. first+count-1` of the
workload with the real mlflow-tracing SDK and prints its timings as JSON.

Runs in the mlflow-tracing venv. Synchronous or asynchronous logging is chosen
by the caller through `MLFLOW_ENABLE_ASYNC_TRACE_LOGGING` (read by the SDK at
import); everything else is the SDK's default. The experiment comes from
--experiment (by name, as `mlflow.set_experiment` does).

Sinks:
  server    send to the server at --uri (the measurement)
  noop      answer in-process (transport.NoopSink): the SDK's own production time
  disabled  `mlflow.tracing.disable()`: the application code alone
  record    like noop, and write what would have been sent to --out (datasets)

With --barrier the client imports and sets up, prints READY, and waits for a
line on stdin, so that several clients start producing at the same moment.
"""

import argparse
import gzip
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import transport  # noqa: E402
import workload  # noqa: E402


def log_trace(mlflow, i):
    c = workload.trace_content(i)
    with mlflow.start_span(name="chat_turn", span_type="CHAIN") as root:
        root.set_inputs(c["root_inputs"])
        mlflow.update_current_trace(
            tags={"environment": c["environment"]},
            session_id=c["session"],
            user=c["user"],
            client_request_id=c["client_request_id"],
        )
        with mlflow.start_span(name="retrieve_docs", span_type="RETRIEVER") as s:
            s.set_inputs(c["retriever_inputs"])
            s.set_outputs(c["retriever_outputs"])
        with mlflow.start_span(name=c["tool"], span_type="TOOL") as s:
            s.set_inputs(c["tool_inputs"])
            s.set_outputs(c["tool_outputs"])
        with mlflow.start_span(name="chat_completion", span_type="LLM") as s:
            s.set_inputs(c["llm_inputs"])
            s.set_attributes(c["llm_attributes"])
            s.set_outputs(c["llm_outputs"])
        root.set_outputs(c["root_outputs"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", default="http://127.0.0.1:5000")
    ap.add_argument("--experiment", default="bench")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--sink", choices=["server", "noop", "disabled", "record"], default="server")
    ap.add_argument("--out", help="dataset file (gzip JSON lines) for --sink record")
    ap.add_argument("--barrier", action="store_true")
    ap.add_argument("--warmup", help="experiment id for one untimed warm-up trace")
    args = ap.parse_args()

    timer = transport.HttpTimer()
    recorder = None
    out = None
    if args.sink == "record":
        out = gzip.open(args.out, "wt", compresslevel=1)
        recorder = transport.Recorder(out)
    if args.sink in ("noop", "record", "disabled"):
        transport.NoopSink(timer, recorder).install()
    else:
        transport.measure(timer)

    t_import = time.perf_counter()
    import mlflow

    mlflow.set_tracking_uri(args.uri)
    # As an application does; the orchestrator has created the experiment
    # (four clients creating it at once would race).
    mlflow.set_experiment(args.experiment)
    if args.sink == "disabled":
        mlflow.tracing.disable()
    import_seconds = time.perf_counter() - t_import

    if args.warmup:
        # One trace to another experiment, flushed: the SDK's lazy set-up
        # (tracer provider, server version check, HTTP connection) happens
        # here rather than inside the timed run, for every sink alike.
        from mlflow.entities.trace_location import MlflowExperimentLocation

        with mlflow.start_span(name="warmup", trace_destination=MlflowExperimentLocation(args.warmup)):
            pass
        mlflow.flush_trace_async_logging()
        timer.reset()

    if args.barrier:
        print("READY", flush=True)
        sys.stdin.readline()

    t0 = time.time()
    c0 = time.process_time()
    for i in range(args.first, args.first + args.count):
        log_trace(mlflow, i)
    t_produced = time.time()
    mlflow.flush_trace_async_logging()
    t_flushed = time.time()
    cpu = time.process_time() - c0
    if out:
        out.close()
    result = {
        "first": args.first,
        "count": args.count,
        "sink": args.sink,
        "async": os.environ.get("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "true").lower() != "false",
        "t_start": t0,
        "t_produced": t_produced,
        "t_flushed": t_flushed,
        "cpu_seconds": cpu,
        "import_seconds": import_seconds,
        "recorded": recorder.written if recorder else None,
        **timer.snapshot(),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
