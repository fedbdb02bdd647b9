"""The production flow of an app instrumented with the real `mlflow-tracing`
SDK, against the real tracebox binary.

Traces are logged from a separate Python process (as an app would), then read
back from this process with a fresh SDK, so every read really goes through
tracebox and not through the SDK's in-process buffer."""

import json

import mlflow
import pytest
from mlflow.tracing.client import TracingClient

from conftest import run_client, wait_for

APP = r'''
import json, os, sys
import mlflow
from mlflow.entities import SpanType
from fastapi import FastAPI
from fastapi.testclient import TestClient

mlflow.set_experiment(os.environ["EXPERIMENT"])
app = FastAPI()

@mlflow.trace(span_type=SpanType.RETRIEVER)
def retrieve(query: str, k: int = 2):
    return [{"page_content": f"doc {i} about {query}", "metadata": {"doc_uri": f"kb://{i}"}} for i in range(k)]

@mlflow.trace(span_type=SpanType.TOOL)
def lookup_order(order_id: str):
    if order_id.startswith("bad"):
        raise ValueError(f"order {order_id} not found")
    return {"order_id": order_id, "status": "shipped"}

@mlflow.trace(span_type=SpanType.LLM)
def call_llm(messages, model="gpt-4o-mini", temperature=0.2):
    span = mlflow.get_current_active_span()
    if span is not None:  # None when the trace was not sampled
        span.set_attribute("llm.temperature", temperature)
        span.set_attribute("llm.max_tokens", 256)
    return {"choices": [{"message": {"role": "assistant", "content": "Your order has shipped."}}],
            "usage": {"prompt_tokens": 42, "completion_tokens": 7}}

@app.post("/chat")
@mlflow.trace(name="chat_handler")
def chat(body: dict):
    mlflow.update_current_trace(
        client_request_id=body["request_id"],
        tags={"mlflow.trace.session": body["session"], "mlflow.trace.user": body["user"],
              "environment": body.get("env", "production"), "app_version": "1.4.2",
              "deployment_id": "dep-7", "region": "eu-west-1"})
    docs = retrieve(body["message"])
    try:
        lookup_order(body.get("order", "bad-1"))
    except ValueError:
        pass
    out = call_llm([{"role": "system", "content": "You are helpful."},
                    {"role": "user", "content": body["message"]}])
    return {"answer": out["choices"][0]["message"]["content"], "sources": len(docs)}

client = TestClient(app)
n = int(os.environ.get("N", "1"))
ids = []
for i in range(n):
    r = client.post("/chat", json={"request_id": f"req-{i}", "session": f"s-{i % 5}", "user": f"u{i % 3}",
                                   "env": "production" if i % 2 == 0 else "staging",
                                   "message": f"where is my order {i}?"})
    assert r.status_code == 200, r.text
    ids.append(mlflow.get_last_active_trace_id())
mlflow.flush_trace_async_logging()
print(json.dumps(ids))
'''


def log_traces(tb, n, experiment="prod-app", **env):
    out = run_client(APP, {"MLFLOW_TRACKING_URI": tb.url, "EXPERIMENT": experiment, "N": str(n), **env})
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def sdk(tracebox):
    mlflow.set_tracking_uri(tracebox.url)
    return tracebox


def test_get_trace_round_trip(sdk):
    [tid] = log_traces(sdk, 1)
    t = mlflow.get_trace(tid)
    assert t is not None
    info = t.info
    assert info.client_request_id == "req-0"
    assert info.state.value == "OK"
    assert info.tags["mlflow.trace.user"] == "u0"
    assert info.tags["mlflow.trace.session"] == "s-0"
    assert info.tags["environment"] == "production"
    assert info.tags["region"] == "eu-west-1"
    assert info.tags["mlflow.traceName"] == "chat_handler"

    spans = {s.name: s for s in t.data.spans}
    assert set(spans) == {"chat_handler", "retrieve", "lookup_order", "call_llm"}
    root = spans["chat_handler"]
    assert root.parent_id is None
    for name in ("retrieve", "lookup_order", "call_llm"):
        assert spans[name].parent_id == root.span_id
        assert spans[name].trace_id == tid
    assert spans["retrieve"].span_type == "RETRIEVER"
    assert spans["lookup_order"].span_type == "TOOL"
    assert spans["call_llm"].span_type == "LLM"
    assert spans["retrieve"].inputs == {"query": "where is my order 0?", "k": 2}
    assert spans["retrieve"].outputs[1] == {"page_content": "doc 1 about where is my order 0?", "metadata": {"doc_uri": "kb://1"}}
    assert spans["call_llm"].inputs["messages"][1] == {"role": "user", "content": "where is my order 0?"}
    assert spans["call_llm"].inputs["temperature"] == 0.2
    assert spans["call_llm"].outputs["usage"] == {"prompt_tokens": 42, "completion_tokens": 7}
    assert spans["call_llm"].attributes["llm.temperature"] == 0.2
    assert spans["call_llm"].attributes["llm.max_tokens"] == 256
    assert isinstance(spans["call_llm"].attributes["llm.max_tokens"], int)
    assert root.outputs == {"answer": "Your order has shipped.", "sources": 2}

    # The exception inside the tool span: error status and an exception event.
    tool = spans["lookup_order"]
    assert tool.status.status_code.value == "ERROR"
    assert "order bad-1 not found" in tool.status.description
    [ev] = [e for e in tool.events if e.name == "exception"]
    assert ev.attributes["exception.type"] == "ValueError"
    assert "Traceback" in ev.attributes["exception.stacktrace"]
    assert tool.outputs is None
    # ... caught by the handler, so the root and the trace are OK.
    assert root.status.status_code.value == "OK"
    # Durations survive to the nanosecond.
    assert all(s.end_time_ns >= s.start_time_ns for s in t.data.spans)


def test_500_async_traces_all_arrive(sdk):
    ids = log_traces(sdk, 500)
    assert len(set(ids)) == 500
    exp = mlflow.get_experiment_by_name("prod-app") if hasattr(mlflow, "get_experiment_by_name") else None
    exp_id = exp.experiment_id if exp else sdk.get("/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "prod-app"}).json()["experiment"]["experiment_id"]
    assert sdk.count(exp_id) == 500
    # Every trace is complete: 4 spans each.
    sample = mlflow.get_trace(ids[-1])
    assert len(sample.data.spans) == 4


def test_sync_logging_delivers_each_trace_before_returning(sdk):
    ids = log_traces(sdk, 30, MLFLOW_ENABLE_ASYNC_TRACE_LOGGING="false")
    exp_id = sdk.get("/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "prod-app"}).json()["experiment"]["experiment_id"]
    assert sdk.count(exp_id) == 30
    assert {t["trace_id"] for t in sdk.search(exp_id)} == set(ids)


def test_sampling_ratio_behaves_as_on_mlflow(sdk):
    # Sampling is client-side: unsampled traces never reach the server, and
    # get_last_active_trace_id keeps returning the previous sampled id.
    ids = log_traces(sdk, 200, MLFLOW_TRACE_SAMPLING_RATIO="0.5")
    sampled = {i for i in ids if i}
    exp_id = sdk.get("/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "prod-app"}).json()["experiment"]["experiment_id"]
    n = sdk.count(exp_id)
    assert n == len(sampled)
    assert 60 <= n <= 140, n


def test_search_by_user_and_environment_then_delete(sdk):
    log_traces(sdk, 12)
    mlflow.set_experiment("prod-app")
    by_user = mlflow.search_traces(filter_string="tags.`mlflow.trace.user` = 'u1'", return_type="list")
    assert len(by_user) == 4
    assert all(t.info.tags["mlflow.trace.user"] == "u1" for t in by_user)
    assert all(len(t.data.spans) == 4 for t in by_user)
    prod = mlflow.search_traces(filter_string="tags.environment = 'production'", return_type="list", include_spans=False)
    assert len(prod) == 6
    # Newest first by default.
    times = [t.info.request_time for t in prod]
    assert times == sorted(times, reverse=True)
    both = mlflow.search_traces(filter_string="tags.environment = 'production' AND tags.`mlflow.trace.user` = 'u0'", return_type="list")
    assert {t.info.client_request_id for t in both} == {"req-0", "req-6"}

    client = TracingClient()
    exp_id = by_user[0].info.experiment_id
    deleted = client.delete_traces(experiment_id=exp_id, trace_ids=[t.info.trace_id for t in by_user])
    assert deleted == 4
    assert mlflow.search_traces(filter_string="tags.`mlflow.trace.user` = 'u1'", return_type="list") == []
    assert sdk.count(exp_id) == 8


def test_restart_keeps_everything(sdk):
    ids = log_traces(sdk, 5)
    sdk.restart()
    mlflow.set_tracking_uri(sdk.url)
    for tid in ids:
        t = mlflow.get_trace(tid)
        assert t is not None and len(t.data.spans) == 4
