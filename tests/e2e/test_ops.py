"""Operations with the real SDKs: authentication as the MLflow SDK and the
OpenTelemetry exporter send it (bearer token, basic auth, wrong token), and
an export that MLflow's own `Trace.from_json` reads, imported into a second
server where the SDK finds the same trace."""

import json
import os
import subprocess

import requests

from conftest import BIN, Tracebox, run_client, wait_for

TOKEN = "e2e-secret-token"

APP = r'''
import json, os
import mlflow
mlflow.set_experiment("ops-e2e")

@mlflow.trace(name="secured")
def work(x):
    with mlflow.start_span(name="child") as s:
        s.set_inputs({"x": x})
        s.set_outputs({"y": x * 2})
    return x * 2

work(21)
mlflow.flush_trace_async_logging()
print(json.dumps(mlflow.get_last_active_trace_id()))
'''


def traces_with_token(tb, trace_id):
    r = requests.get(f"{tb.url}/api/3.0/mlflow/traces/get", params={"trace_id": trace_id},
                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    return r


def test_sdk_with_token_and_with_basic_auth(make_tracebox):
    tb = make_tracebox(["--auth-token", TOKEN])
    assert requests.get(tb.url + "/health", timeout=10).status_code == 200
    r = requests.post(tb.url + "/api/3.0/mlflow/traces/search", json={}, timeout=10)
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"

    base = {"MLFLOW_TRACKING_URI": tb.url}
    for env in ({"MLFLOW_TRACKING_TOKEN": TOKEN},
                {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": TOKEN}):
        trace_id = json.loads(run_client(APP, {**base, **env}).strip().splitlines()[-1])
        got = wait_for(lambda: traces_with_token(tb, trace_id).status_code == 200 and traces_with_token(tb, trace_id),
                       what=f"trace {trace_id} with {sorted(env)}")
        spans = got.json()["trace"]["spans"]
        assert sorted(s["name"] for s in spans) == ["child", "secured"]


def test_sdk_with_a_wrong_token_fails_instead_of_retrying(make_tracebox):
    tb = make_tracebox(["--auth-token", TOKEN])
    script = r'''
import mlflow
try:
    mlflow.set_experiment("nope")
except Exception as e:
    print("refused:", type(e).__name__, str(e)[:300])
else:
    raise SystemExit("a wrong token was accepted")
'''
    out = run_client(script, {"MLFLOW_TRACKING_URI": tb.url, "MLFLOW_TRACKING_TOKEN": "wrong-token-xyz",
                              "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}, timeout=60)
    assert "refused" in out and ("401" in out or "UNAUTHENTICATED" in out or "credentials" in out), out


def test_otel_exporter_sends_the_token_in_headers(make_tracebox):
    tb = make_tracebox(["--auth-token", TOKEN])
    script = r'''
import os
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
with trace.get_tracer("e2e").start_as_current_span("otel-secured") as s:
    print(format(s.get_span_context().trace_id, "032x"))
provider.shutdown()
'''
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": tb.url + "/v1/traces",
           "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{TOKEN}"}
    hexid = run_client(script, env).strip().splitlines()[-1]
    r = traces_with_token(tb, f"tr-{hexid}")
    assert r.status_code == 200, r.text
    assert r.json()["trace"]["spans"][0]["name"] == "otel-secured"


def test_export_is_mlflow_trace_json_and_imports_into_another_server(make_tracebox, tmp_path):
    src = make_tracebox()
    trace_id = json.loads(run_client(APP, {"MLFLOW_TRACKING_URI": src.url}).strip().splitlines()[-1])
    wait_for(lambda: requests.get(f"{src.url}/api/3.0/mlflow/traces/get", params={"trace_id": trace_id},
                                  timeout=10).status_code == 200, what="trace stored")
    out = tmp_path / "traces.jsonl"
    subprocess.run([BIN, "export", "--data", src.data_dir, "-o", str(out)], check=True, capture_output=True)
    lines = out.read_text().splitlines()
    assert len(lines) == 1

    # MLflow's own parser reads the export line as a Trace.
    from mlflow.entities import Trace
    t = Trace.from_json(lines[0])
    assert t.info.trace_id == trace_id
    assert sorted(s.name for s in t.data.spans) == ["child", "secured"]
    child = next(s for s in t.data.spans if s.name == "child")
    assert child.inputs == {"x": 21} and child.outputs == {"y": 42}

    # Import into a fresh directory, twice (idempotent), then read it back
    # through a server with a fresh SDK client.
    dest = tmp_path / "dest"
    for _ in range(2):
        subprocess.run([BIN, "import", str(out), "--data", str(dest), "--experiment", "0"], check=True,
                       capture_output=True)
    dst = make_tracebox(data_dir=str(dest))
    reader = r'''
import json, os
from mlflow.tracing.client import TracingClient
t = TracingClient(os.environ["MLFLOW_TRACKING_URI"]).get_trace(os.environ["TRACE_ID"])
print(json.dumps({"spans": sorted(s.name for s in t.data.spans),
                  "child": [s.inputs for s in t.data.spans if s.name == "child"]}))
'''
    got = json.loads(run_client(reader, {"MLFLOW_TRACKING_URI": dst.url, "TRACE_ID": trace_id}).strip().splitlines()[-1])
    assert got == {"spans": ["child", "secured"], "child": [{"x": 21}]}
    assert dst.count() == 1
