"""Trace search through the real `mlflow-tracing` SDK: every filter form,
ordering, pagination with `mlflow.search_traces` and
`TracingClient().search_traces`, MLflow's error messages for bad filters,
and tracebox's full-text search (`trace.text LIKE`, the `text` parameter)."""

import json

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracing.client import TracingClient

import tempfile

from conftest import Tracebox, run_client, wait_for

APP = r'''
import json, os, time
import mlflow
from mlflow.entities import SpanType

mlflow.set_experiment(os.environ["EXPERIMENT"])

ROWS = [
    # message, user, session, env, order, answer
    ("Where is my refund?", "alice", "s1", "production", "o-1", "Our refund policy allows returns within 30 days."),
    ("Can I change my shipping address?", "bob", "s1", "staging", "bad-2", "Yes, the shipping address can be changed before dispatch."),
    ("我要退款，谢谢", "carol", "s2", "production", "o-3", "退款已经处理。"),
    ("Wie lange dauert der Versand?", "alice", "s3", "production", "o-4", "Der Versand dauert zwei Tage."),
    ("Reset my password please", "dave", "s4", "development", "bad-5", "I sent you a password reset link."),
    ("Is the warranty still valid?", "bob", "s5", "production", "o-6", "Your warranty is valid for two years."),
    ("Refund for a damaged item", "carol", "s2", "staging", "o-7", "A full refund for damaged items is issued in 5 days."),
    ("Track my parcel", "alice", "s1", "production", "o-8", "Your tracking number is TRK-8."),
]

@mlflow.trace(span_type=SpanType.RETRIEVER)
def retrieve(query):
    return [{"page_content": f"policy document about {query}"}]

@mlflow.trace(span_type=SpanType.TOOL)
def lookup_order(order_id):
    if order_id.startswith("bad"):
        raise ValueError(f"order {order_id} not found")
    return {"status": "shipped"}

@mlflow.trace(span_type=SpanType.CHAT_MODEL)
def call_llm(messages, answer, delay):
    mlflow.get_current_active_span().set_attribute("model", "gpt-4o-mini" if delay else "gpt-4o")
    time.sleep(delay)
    return {"choices": [{"message": {"role": "assistant", "content": answer}}]}

@mlflow.trace(name="support_chat")
def chat(i, row):
    message, user, session, env, order, answer = row
    mlflow.update_current_trace(client_request_id=f"req-{i}", tags={"environment": env, "tier": "gold" if i % 2 else "free"},
                                session_id=session, user=user)
    retrieve(message)
    try:
        lookup_order(order)
    except ValueError:
        pass
    out = call_llm([{"role": "user", "content": message}], answer, delay=(i % 4) * 0.03)
    return out["choices"][0]["message"]["content"]

ids = []
for i, row in enumerate(ROWS):
    chat(i, row)
    ids.append(mlflow.get_last_active_trace_id())
    time.sleep(0.01)
mlflow.flush_trace_async_logging()
print(json.dumps(ids))
'''


def text_search(tb, exp_id, text, filter=None):
    body = {"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp_id}}],
            "max_results": 100, "text": text}
    if filter:
        body["filter"] = filter
    r = tb.post("/api/3.0/mlflow/traces/search", json=body)
    assert r.status_code == 200, r.text
    return {t["client_request_id"] for t in r.json().get("traces", [])}


def reqs(filter_string, **kw):
    traces = mlflow.search_traces(filter_string=filter_string, return_type="list", include_spans=False, **kw)
    return {t.info.client_request_id for t in traces}


@pytest.fixture(scope="module")
def data():
    # One server and one logging run for the whole module: the tests only
    # read (the feedback test adds assessments no other test filters on).
    tmp = tempfile.TemporaryDirectory(prefix="tracebox-e2e-search-")
    tracebox = Tracebox(tmp.name)
    yield from _logged(tracebox)
    tracebox.stop()
    tmp.cleanup()


def _logged(tracebox):
    out = run_client(APP, {"MLFLOW_TRACKING_URI": tracebox.url, "EXPERIMENT": "search-e2e"})
    ids = json.loads(out.strip().splitlines()[-1])
    mlflow.set_tracking_uri(tracebox.url)
    exp = mlflow.set_experiment("search-e2e")
    exp_id = exp.experiment_id
    wait_for(lambda: tracebox.count(exp_id) == len(ids), what="all traces stored")
    tracebox.wait_for_index()
    yield tracebox, exp_id, ids


FILTERS = [
    ("tags.environment = 'production'", {"req-0", "req-2", "req-3", "req-5", "req-7"}),
    ("tag.environment != 'production'", {"req-1", "req-4", "req-6"}),
    ("tags.environment LIKE 'prod%'", {"req-0", "req-2", "req-3", "req-5", "req-7"}),
    ("tags.environment LIKE 'PROD%'", set()),
    ("tags.environment ILIKE 'PROD%'", {"req-0", "req-2", "req-3", "req-5", "req-7"}),
    ("tags.environment RLIKE '^(dev|stag)'", {"req-1", "req-4", "req-6"}),
    ("tags.missing IS NULL AND tags.tier = 'gold'", {"req-1", "req-3", "req-5", "req-7"}),
    ("tags.`mlflow.traceName` = 'support_chat'", {f"req-{i}" for i in range(8)}),
    ("name = 'support_chat' AND trace.status = 'OK'", {f"req-{i}" for i in range(8)}),
    ("status IN ('ERROR', 'IN_PROGRESS')", set()),
    ("client_request_id = 'req-3'", {"req-3"}),
    ("client_request_id IN ('req-3', 'req-4')", {"req-3", "req-4"}),
    ("metadata.`mlflow.trace.user` = 'alice'", {"req-0", "req-3", "req-7"}),
    ("request_metadata.`mlflow.trace.session` = 's2'", {"req-2", "req-6"}),
    ("metadata.`mlflow.trace.user` = 'bob' AND tags.environment = 'production'", {"req-5"}),
    ("span.name = 'lookup_order' AND span.status = 'ERROR'", {"req-1", "req-4"}),
    ("span.type = 'CHAT_MODEL' AND span.name = 'retrieve'", set()),
    ("span.attributes.model = 'gpt-4o'", {"req-0", "req-4"}),
    ("trace.text LIKE '%refund%'", {"req-0", "req-6"}),
    ("trace.text ILIKE '%REFUND%' AND tags.environment = 'staging'", {"req-6"}),
    ("trace.text LIKE '%退款%'", {"req-2"}),
    ("trace.text LIKE '%not found%'", {"req-1", "req-4"}),
    ("trace.execution_time_ms > 0", {f"req-{i}" for i in range(8)}),
    # tracebox extensions: OR and parentheses.
    ("tags.environment = 'development' OR (metadata.`mlflow.trace.user` = 'carol' AND tags.tier = 'free')",
     {"req-4", "req-2", "req-6"}),
]


@pytest.mark.parametrize("filter_string,expected", FILTERS)
def test_filter_forms(data, filter_string, expected):
    assert reqs(filter_string) == expected


def test_time_filters_and_ordering(data):
    tb, exp_id, ids = data
    infos = mlflow.search_traces(return_type="list", include_spans=False)
    assert [t.info.client_request_id for t in infos] == [f"req-{i}" for i in reversed(range(8))], "newest first"
    t3 = next(t.info for t in infos if t.info.client_request_id == "req-3")
    later = reqs(f"timestamp_ms > {t3.request_time}")
    assert later == {"req-4", "req-5", "req-6", "req-7"}
    assert reqs(f"trace.timestamp_ms >= {t3.request_time} AND trace.timestamp_ms < {t3.request_time + 1}") == {"req-3"}

    asc = mlflow.search_traces(order_by=["timestamp_ms ASC"], return_type="list", include_spans=False)
    assert [t.info.client_request_id for t in asc] == [f"req-{i}" for i in range(8)]
    by_exec = mlflow.search_traces(order_by=["execution_time_ms DESC"], return_type="list", include_spans=False)
    durations = [t.info.execution_duration for t in by_exec]
    assert durations == sorted(durations, reverse=True)
    by_tag = mlflow.search_traces(order_by=["tags.environment ASC", "timestamp_ms ASC"], return_type="list",
                                  include_spans=False)
    assert [t.info.client_request_id for t in by_tag] == ["req-4", "req-0", "req-2", "req-3", "req-5", "req-7",
                                                          "req-1", "req-6"]


def test_pagination_with_both_clients(data):
    tb, exp_id, ids = data
    # mlflow.search_traces pages internally until max_results.
    five = mlflow.search_traces(max_results=5, return_type="list", include_spans=False)
    assert len(five) == 5
    client = TracingClient()
    seen, token, pages = [], None, 0
    while True:
        page = client.search_traces(locations=[exp_id], max_results=3, page_token=token, include_spans=False,
                                    order_by=["execution_time_ms DESC"])
        seen += [t.info.trace_id for t in page]
        pages += 1
        token = page.token
        if not token:
            break
    assert pages == 3
    assert sorted(seen) == sorted(ids) and len(set(seen)) == len(ids)
    # Traces logged while paging do not shift pages: a fresh walk sees them.
    with_spans = client.search_traces(locations=[exp_id], max_results=2,
                                      filter_string="metadata.`mlflow.trace.user` = 'alice'")
    assert len(with_spans) == 2 and all(len(t.data.spans) == 4 for t in with_spans)


def test_feedback_filters(data):
    tb, exp_id, ids = data
    mlflow.log_feedback(trace_id=ids[0], name="correct", value=True)
    mlflow.log_feedback(trace_id=ids[1], name="score", value=0.25)
    mlflow.log_feedback(trace_id=ids[2], name="score", value=0.9)
    mlflow.log_expectation(trace_id=ids[3], name="answer", value="two days")
    assert reqs("feedback.correct = 'true'") == {"req-0"}
    assert reqs("feedback.score > 0.5") == {"req-2"}
    assert reqs("feedback.score <= 0.5") == {"req-1"}
    assert reqs("feedback.score IS NOT NULL") == {"req-1", "req-2"}
    assert reqs("expectation.answer LIKE '%two%'") == {"req-3"}


def test_full_text_parameter(data):
    tb, exp_id, ids = data
    assert text_search(tb, exp_id, "refund") == {"req-0", "req-6"}
    assert text_search(tb, exp_id, "\"refund policy\"") == {"req-0"}
    assert text_search(tb, exp_id, "pass*") == {"req-4"}
    assert text_search(tb, exp_id, "退款") == {"req-2"}
    assert text_search(tb, exp_id, "versand") == {"req-3"}
    assert text_search(tb, exp_id, "refund", filter="tags.environment = 'staging'") == {"req-6"}


@pytest.mark.parametrize("filter_string,fragments", [
    ("tags.environment = production", ["Parameter value is either not quoted", "at character 19", "'production'"]),
    ("tags.environment = 'x' AND", None),  # accepted, as in MLflow
    ("trace.state = 'OK'", ["Invalid attribute key 'state' specified", "at character 0"]),
    ("assessment.x = 'y'", ["Invalid entity type 'assessment'"]),
    ("status = 'OK'; tags.a = 'b'", ["Search filter contained multiple expression"]),
    ("tags.environment > 'a'", ["Invalid comparator '>' not one of"]),
    ("timestamp > 1.5", ["'timestamp', '>', '1.5'"]),
    ("text LIKE '%x%'", ["Use a prefix: trace.text"]),
    ("feedback.score > '0.5'", ["Expected a numeric value for feedback when using comparator '>'"]),
    ("(status = 'OK'", ["never closed", "at character 0"]),
])
def test_bad_filters_fail_with_mlflow_messages(data, filter_string, fragments):
    if fragments is None:
        mlflow.search_traces(filter_string=filter_string, return_type="list", include_spans=False)
        return
    with pytest.raises(MlflowException) as e:
        mlflow.search_traces(filter_string=filter_string, return_type="list", include_spans=False)
    msg = str(e.value)
    assert "INVALID_PARAMETER_VALUE" in msg or e.value.error_code == "INVALID_PARAMETER_VALUE", msg
    for f in fragments:
        assert f in msg, msg


def test_bad_order_by_and_max_results(data):
    with pytest.raises(MlflowException, match="Invalid order_by clause 'status, name'"):
        mlflow.search_traces(order_by=["status, name"], return_type="list")
    with pytest.raises(MlflowException, match="Invalid attribute key 'client_request_id'"):
        mlflow.search_traces(order_by=["client_request_id"], return_type="list")
    tb, exp_id, _ = data
    r = tb.post("/api/3.0/mlflow/traces/search", json={
        "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp_id}}],
        "max_results": 501})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
