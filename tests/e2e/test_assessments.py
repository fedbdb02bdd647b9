"""Assessments (feedback and expectations) through the real `mlflow-tracing`
SDK against the real tracebox binary: log, read back inside traces, update,
override, delete; bad input refused with nothing written. Then the session
and user views of tracebox's own API over traces the SDK logged.

Traces are logged from a separate Python process (as an app would); the
assessments are logged from this process, as a feedback endpoint of the app or
an evaluation script would."""

import json

import mlflow
import pytest
import requests
from mlflow.entities import AssessmentError, AssessmentSource, AssessmentSourceType, Expectation, Feedback
from mlflow.exceptions import MlflowException
from mlflow.tracing.client import TracingClient

from conftest import run_client

# A chat app: each request is one turn of a session. The session and user go
# into metadata (`update_current_trace(session_id=, user=)`) or into tags,
# both of which the SDK supports.
APP = r'''
import json, os
import mlflow
from mlflow.entities import SpanType

mlflow.set_experiment(os.environ["EXPERIMENT"])

@mlflow.trace(span_type=SpanType.CHAT_MODEL)
def call_llm(messages):
    last = messages[-1]["content"]
    if "crash" in last:
        raise RuntimeError("model unavailable")
    mlflow.get_current_active_span().set_attribute(
        "mlflow.chat.tokenUsage", {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15})
    return {"choices": [{"message": {"role": "assistant", "content": f"answer to: {last}"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}

@mlflow.trace(name="chat")
def chat(req):
    if req.get("in_tags"):
        mlflow.update_current_trace(client_request_id=req["request_id"],
                                    tags={"mlflow.trace.session": req["session"], "mlflow.trace.user": req["user"]})
    else:
        mlflow.update_current_trace(client_request_id=req["request_id"], session_id=req["session"], user=req["user"])
    history = req.get("history", [])
    return call_llm(history + [{"role": "user", "content": req["message"]}])["choices"][0]["message"]["content"]

ids = []
for req in json.loads(os.environ["REQUESTS"]):
    try:
        chat(req)
    except RuntimeError:
        pass
    ids.append(mlflow.get_last_active_trace_id())
mlflow.flush_trace_async_logging()
print(json.dumps(ids))
'''


def log_requests(tb, requests_, experiment="assess-app"):
    out = run_client(APP, {"MLFLOW_TRACKING_URI": tb.url, "EXPERIMENT": experiment, "REQUESTS": json.dumps(requests_)})
    return json.loads(out.strip().splitlines()[-1])


def simple_requests(n, session="s-1", user="u-1"):
    return [{"request_id": f"req-{i}", "session": session, "user": user, "message": f"question {i}"} for i in range(n)]


@pytest.fixture
def sdk(tracebox):
    mlflow.set_tracking_uri(tracebox.url)
    return tracebox


def experiment_id(tb, name="assess-app"):
    r = tb.get("/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name})
    r.raise_for_status()
    return r.json()["experiment"]["experiment_id"]


def assessments_of(trace_id):
    return {a.assessment_id: a for a in mlflow.get_trace(trace_id).info.assessments}


# ---------------------------------------------------------------- the seed flow


def test_seed_flow_feedback_by_client_request_id(sdk):
    log_requests(sdk, simple_requests(3))
    mlflow.set_experiment("assess-app")
    [t] = mlflow.search_traces(filter_string="trace.client_request_id = 'req-1'", return_type="list")
    trace_id = t.info.trace_id
    assert t.info.client_request_id == "req-1"

    fb = mlflow.log_feedback(
        trace_id=trace_id,
        name="user_satisfaction",
        value=True,
        source=AssessmentSource(source_type="HUMAN", source_id="user_123"),
        rationale="User clicked thumbs up",
    )
    assert fb.assessment_id.startswith("a-") and len(fb.assessment_id) == 34
    assert fb.trace_id == trace_id

    # Visible in get_trace exactly as logged.
    got = mlflow.get_trace(trace_id)
    [a] = got.info.assessments
    assert isinstance(a, Feedback)
    assert a.assessment_id == fb.assessment_id
    assert a.name == "user_satisfaction"
    assert a.value is True
    assert a.source.source_type == "HUMAN" and a.source.source_id == "user_123"
    assert a.rationale == "User clicked thumbs up"
    assert a.valid is True
    assert a.overrides is None and a.span_id is None and a.error is None
    assert a.trace_id == trace_id
    assert a.create_time_ms == fb.create_time_ms and a.last_update_time_ms == fb.last_update_time_ms

    # ... and in search_traces (with and without spans), on that trace only.
    for include_spans in (True, False):
        found = mlflow.search_traces(return_type="list", include_spans=include_spans)
        by_req = {x.info.client_request_id: x for x in found}
        assert [x.assessment_id for x in by_req["req-1"].info.assessments] == [fb.assessment_id]
        assert by_req["req-0"].info.assessments == [] and by_req["req-2"].info.assessments == []
    # The full-text of the shape: raw JSON from search is MLflow's.
    raw = sdk.search(experiment_id(sdk), filter="trace.client_request_id = 'req-1'")
    [ra] = raw[0]["assessments"]
    assert ra["assessment_name"] == "user_satisfaction"
    assert ra["feedback"] == {"value": True}
    assert ra["source"] == {"source_type": "HUMAN", "source_id": "user_123"}
    assert ra["valid"] is True and ra["trace_id"] == trace_id
    assert ra["create_time"].endswith("Z") and ra["last_update_time"].endswith("Z")


# ---------------------------------------------------------------- values, sources, fields


FEEDBACK_VALUES = [
    ("thumbs", True, AssessmentSourceType.HUMAN, "user_1"),
    ("relevance", 0.75, AssessmentSourceType.LLM_JUDGE, "openai:/gpt-4o-mini"),
    ("stars", 4, AssessmentSourceType.HUMAN, "user_2"),
    ("verdict", "yes", AssessmentSourceType.LLM_JUDGE, "judge-1"),
    ("labels", ["polite", "concise"], AssessmentSourceType.CODE, "labeler.py"),
    ("scores", {"accuracy": 0.9, "tone": "friendly", "flags": [1, 2], "nested": {"ok": False}}, AssessmentSourceType.CODE, "metrics.py"),
    ("negative", False, AssessmentSourceType.HUMAN, "user_3"),
]


def test_feedback_values_sources_and_fields(sdk):
    [tid] = log_requests(sdk, simple_requests(1))
    trace = mlflow.get_trace(tid)
    llm_span = next(s for s in trace.data.spans if s.name == "call_llm")
    logged = {}
    for name, value, stype, sid in FEEDBACK_VALUES:
        fb = mlflow.log_feedback(
            trace_id=tid, name=name, value=value,
            source=AssessmentSource(source_type=stype, source_id=sid),
            rationale=f"because {name}",
            metadata={"reviewer_team": "qa", "round": "2"},
            span_id=llm_span.span_id if name == "relevance" else None,
        )
        logged[name] = fb.assessment_id
    # A judge that failed: feedback with an error and no value, from an
    # exception and from an AssessmentError.
    try:
        raise TimeoutError("judge timed out")
    except TimeoutError as e:
        err_fb = mlflow.log_feedback(trace_id=tid, name="judge_failed", error=e,
                                     source=AssessmentSource(source_type="LLM_JUDGE", source_id="gpt"))
    err_fb2 = mlflow.log_feedback(trace_id=tid, name="judge_failed2",
                                  error=AssessmentError(error_code="RATE_LIMIT", error_message="429 from provider"))

    by_id = assessments_of(tid)
    assert len(by_id) == len(FEEDBACK_VALUES) + 2
    for name, value, stype, sid in FEEDBACK_VALUES:
        a = by_id[logged[name]]
        assert isinstance(a, Feedback)
        assert a.name == name
        assert a.value == value, (name, a.value)
        assert type(a.value) is type(value) or isinstance(value, (int, float)), (name, a.value)
        assert a.source.source_type == stype and a.source.source_id == sid
        assert a.rationale == f"because {name}"
        assert a.metadata == {"reviewer_team": "qa", "round": "2"}
        assert a.valid is True
        assert a.span_id == (llm_span.span_id if name == "relevance" else None)
        # get_assessment returns the same thing.
        g = mlflow.get_assessment(tid, logged[name])
        assert (g.name, g.value, g.span_id, g.metadata) == (a.name, a.value, a.span_id, a.metadata)

    e1 = by_id[err_fb.assessment_id]
    assert e1.value is None
    assert e1.error.error_code == "TimeoutError"
    assert e1.error.error_message == "judge timed out"
    assert "Traceback" in e1.error.stack_trace
    assert e1.source.source_type == "LLM_JUDGE"
    e2 = by_id[err_fb2.assessment_id]
    assert (e2.error.error_code, e2.error.error_message) == ("RATE_LIMIT", "429 from provider")
    # The SDK's default source for feedback is CODE.
    assert e2.source.source_type == "CODE"


def test_expectations_round_trip(sdk):
    [tid] = log_requests(sdk, simple_requests(1))
    values = {
        "expected_answer": "Paris",
        "expected_count": 3,
        "expected_score": 0.5,
        "expected_flag": False,
        "expected_docs": ["kb://1", "kb://2"],
        "expected_facts": {"city": "Paris", "population_m": 2.1, "tags": ["capital"], "none": None},
    }
    ids = {}
    for name, v in values.items():
        e = mlflow.log_expectation(trace_id=tid, name=name, value=v,
                                   source=AssessmentSource(source_type="HUMAN", source_id="annotator@example.com"),
                                   metadata={"dataset": "golden"})
        ids[name] = e.assessment_id
    by_id = assessments_of(tid)
    for name, v in values.items():
        a = by_id[ids[name]]
        assert isinstance(a, Expectation)
        assert a.value == v, (name, a.value)
        assert a.source.source_type == "HUMAN" and a.source.source_id == "annotator@example.com"
        assert a.metadata == {"dataset": "golden"}
    # Non-scalars travel as serialized JSON, as MLflow sends them.
    raw = sdk.get(f"/api/3.0/mlflow/traces/{tid}").json()["trace"]["trace_info"]["assessments"]
    raw_by_name = {r["assessment_name"]: r for r in raw}
    assert raw_by_name["expected_answer"]["expectation"] == {"value": "Paris"}
    sv = raw_by_name["expected_facts"]["expectation"]["serialized_value"]
    assert sv["serialization_format"] == "JSON_FORMAT" and json.loads(sv["value"]) == values["expected_facts"]
    assert "valid" in raw_by_name["expected_answer"]

    # Updating an expectation's value (and name, metadata merged).
    upd = mlflow.update_assessment(tid, ids["expected_docs"],
                                   Expectation(name="expected_sources", value={"docs": ["kb://3"]}, metadata={"v": "2"}))
    assert upd.name == "expected_sources" and upd.value == {"docs": ["kb://3"]}
    assert upd.metadata == {"dataset": "golden", "v": "2"}
    again = mlflow.get_assessment(tid, ids["expected_docs"])
    assert (again.name, again.value) == ("expected_sources", {"docs": ["kb://3"]})
    assert again.source.source_id == "annotator@example.com"
    # A feedback value on an expectation is refused, nothing changes.
    with pytest.raises(MlflowException) as ei:
        mlflow.update_assessment(tid, ids["expected_count"], Feedback(name="expected_count", value=True))
    assert ei.value.error_code == "INVALID_PARAMETER_VALUE"
    assert mlflow.get_assessment(tid, ids["expected_count"]).value == 3


# ---------------------------------------------------------------- update / override / delete


def test_update_override_and_delete_chain(sdk):
    [tid] = log_requests(sdk, simple_requests(1))
    judge = AssessmentSource(source_type="LLM_JUDGE", source_id="gpt-4o-mini")
    human = AssessmentSource(source_type="HUMAN", source_id="reviewer@example.com")
    trace = mlflow.get_trace(tid)
    root = next(s for s in trace.data.spans if s.parent_id is None)
    first = mlflow.log_feedback(trace_id=tid, name="relevance", value=0.4, source=judge,
                                rationale="partially relevant", span_id=root.span_id)

    # In-place update: value, name, rationale, metadata; source, span, create time kept.
    upd = mlflow.update_assessment(tid, first.assessment_id,
                                   Feedback(name="relevance_v2", value=0.5, rationale="re-judged", metadata={"k": "v"}))
    assert (upd.name, upd.value, upd.rationale, upd.metadata) == ("relevance_v2", 0.5, "re-judged", {"k": "v"})
    assert upd.source.source_type == "LLM_JUDGE" and upd.source.source_id == "gpt-4o-mini"
    assert upd.span_id == root.span_id
    assert upd.create_time_ms == first.create_time_ms
    assert upd.last_update_time_ms >= first.last_update_time_ms
    # Metadata merges (new keys win, old kept).
    upd2 = mlflow.update_assessment(tid, first.assessment_id, Feedback(name="relevance_v2", value=0.6, metadata={"k2": "v2"}))
    assert upd2.metadata == {"k": "v", "k2": "v2"}
    assert upd2.value == 0.6
    assert upd2.rationale == "re-judged"  # not in the mask: kept

    # A human overrides the judge: a new assessment, the old one invalid.
    over = mlflow.override_feedback(trace_id=tid, assessment_id=first.assessment_id, value=0.9,
                                    rationale="fully relevant", source=human, metadata={"reason": "judge too strict"})
    assert over.assessment_id != first.assessment_id
    assert over.overrides == first.assessment_id
    assert over.valid is True
    assert over.name == "relevance_v2" and over.span_id == root.span_id
    old = mlflow.get_assessment(tid, first.assessment_id)
    assert old.valid is False
    assert old.value == 0.6  # otherwise unchanged
    by_id = assessments_of(tid)
    assert by_id[first.assessment_id].valid is False
    assert by_id[over.assessment_id].valid is True and by_id[over.assessment_id].overrides == first.assessment_id
    # Overrides chain: a second override of the override.
    over2 = mlflow.override_feedback(trace_id=tid, assessment_id=over.assessment_id, value=1.0, source=human)
    assert mlflow.get_assessment(tid, over.assessment_id).valid is False
    assert mlflow.get_assessment(tid, first.assessment_id).valid is False

    # Deleting the newest override restores the one it replaced, only that one.
    mlflow.delete_assessment(tid, over2.assessment_id)
    assert mlflow.get_assessment(tid, over.assessment_id).valid is True
    assert mlflow.get_assessment(tid, first.assessment_id).valid is False
    mlflow.delete_assessment(tid, over.assessment_id)
    assert mlflow.get_assessment(tid, first.assessment_id).valid is True
    # Deleted is gone (404), and deleting again is not an error (as in MLflow).
    with pytest.raises(MlflowException) as ei:
        mlflow.get_assessment(tid, over.assessment_id)
    assert ei.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    mlflow.delete_assessment(tid, over.assessment_id)
    TracingClient().delete_assessment(tid, "a-" + "0" * 32)
    assert list(assessments_of(tid)) == [first.assessment_id]

    # Overriding something that is not there: 404, nothing written.
    with pytest.raises(MlflowException) as ei:
        mlflow.override_feedback(trace_id=tid, assessment_id="a-" + "f" * 32, value=1)
    assert ei.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert list(assessments_of(tid)) == [first.assessment_id]


def test_feedback_logged_inside_the_active_trace(sdk):
    # Assessments logged while the trace is still open travel inside
    # StartTraceV3's trace_info.
    script = r'''
import json, os
import mlflow
from mlflow.entities import AssessmentSource
mlflow.set_experiment("assess-app")
with mlflow.start_span(name="root") as span:
    span.set_inputs({"q": "hi"})
    tid = span.trace_id
    mlflow.log_feedback(trace_id=tid, name="inline", value="good", source=AssessmentSource(source_type="CODE", source_id="guard"))
    mlflow.log_expectation(trace_id=tid, name="inline_expected", value={"a": [1, 2]})
    span.set_outputs("hello")
mlflow.flush_trace_async_logging()
print(json.dumps([tid]))
'''
    [tid] = json.loads(run_client(script, {"MLFLOW_TRACKING_URI": sdk.url}).strip().splitlines()[-1])
    by_name = {a.name: a for a in mlflow.get_trace(tid).info.assessments}
    assert by_name["inline"].value == "good" and by_name["inline"].source.source_id == "guard"
    assert by_name["inline"].assessment_id.startswith("a-")
    assert by_name["inline_expected"].value == {"a": [1, 2]}
    assert all(a.trace_id == tid for a in by_name.values())


# ---------------------------------------------------------------- bad input


def test_bad_input_is_refused_and_writes_nothing(sdk):
    [tid] = log_requests(sdk, simple_requests(1))
    # Unknown trace: 404 RESOURCE_DOES_NOT_EXIST through the SDK.
    with pytest.raises(MlflowException) as ei:
        mlflow.log_feedback(trace_id="tr-" + "0" * 32, name="x", value=True)
    assert ei.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as ei:
        mlflow.get_assessment("tr-" + "0" * 32, "a-" + "0" * 32)
    assert ei.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as ei:
        mlflow.update_assessment("tr-" + "0" * 32, "a-" + "0" * 32, Feedback(name="x", value=1))
    assert ei.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    url = f"{sdk.url}/api/3.0/mlflow/traces/{tid}/assessments"
    good = {"assessment_name": "ok", "trace_id": tid, "source": {"source_type": "HUMAN", "source_id": "u"},
            "create_time": "2026-11-25T16:59:44.668Z", "last_update_time": "2026-11-25T16:59:44.668Z",
            "feedback": {"value": True}}
    bad_bodies = {
        "non-string name": {**good, "assessment_name": 123},
        "missing name": {k: v for k, v in good.items() if k != "assessment_name"},
        "malformed timestamp": {**good, "create_time": "yesterday"},
        "unknown source type": {**good, "source": {"source_type": "ROBOT", "source_id": "r"}},
        "non-string source id": {**good, "source": {"source_type": "HUMAN", "source_id": 7}},
        "non-string metadata value": {**good, "metadata": {"k": 1}},
        "metadata not a map": {**good, "metadata": ["k"]},
        "both feedback and expectation": {**good, "expectation": {"value": 1}},
        "neither feedback nor expectation": {k: v for k, v in good.items() if k != "feedback"},
        "bad serialized expectation": {**{k: v for k, v in good.items() if k != "feedback"},
                                       "expectation": {"serialized_value": {"serialization_format": "JSON_FORMAT", "value": "{not json"}}},
        "unknown serialization format": {**{k: v for k, v in good.items() if k != "feedback"},
                                         "expectation": {"serialized_value": {"serialization_format": "PICKLE", "value": "x"}}},
        "non-string rationale": {**good, "rationale": ["a"]},
        "valid not a bool": {**good, "valid": "yes"},
    }
    for what, body in bad_bodies.items():
        r = requests.post(url, json={"assessment": body}, timeout=30)
        assert r.status_code == 400, (what, r.status_code, r.text)
        assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE", (what, r.text)
        assert r.json()["message"], what
    r = requests.post(url, data="{not json", headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400
    r = requests.post(url, json={}, timeout=30)
    assert r.status_code == 400
    # Nothing was written by any of them.
    assert mlflow.get_trace(tid).info.assessments == []
    # The good body is accepted (the refusals were about the bad fields).
    r = requests.post(url, json={"assessment": good}, timeout=30)
    assert r.status_code == 200, r.text
    aid = r.json()["assessment"]["assessment_id"]

    # A bad update changes nothing either.
    one = f"{url}/{aid}"
    for what, body in {
        "unknown mask path": {"assessment": {"assessment_name": "z"}, "update_mask": "sourceType"},
        "empty name": {"assessment": {"assessment_name": ""}, "update_mask": "assessmentName"},
        "non-string name": {"assessment": {"assessment_name": 5}, "update_mask": "assessmentName"},
        "expectation on feedback": {"assessment": {"expectation": {"value": 1}}, "update_mask": "expectation"},
        "both values": {"assessment": {"feedback": {"value": 1}, "expectation": {"value": 1}}, "update_mask": "feedback,expectation"},
    }.items():
        r = requests.patch(one, json=body, timeout=30)
        assert r.status_code == 400, (what, r.status_code, r.text)
    [a] = mlflow.get_trace(tid).info.assessments
    assert (a.name, a.value, a.last_update_time_ms) == ("ok", True, 1795625984668)


# ---------------------------------------------------------------- sessions and users


def api(tb, path, **params):
    r = tb.get("/api/tracebox/v1/" + path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_sessions_and_users_from_sdk_traces_and_feedback(sdk):
    # Two users, three sessions; session/user in metadata for some turns and
    # in tags for others; one turn fails inside the model call.
    reqs = []
    for s, user, n in [("conv-a", "alice", 3), ("conv-b", "bob", 2), ("conv-c", "alice", 1)]:
        history = []
        for k in range(n):
            msg = f"{s} message {k}" + (" crash" if (s, k) == ("conv-b", 1) else "")
            reqs.append({"request_id": f"{s}-{k}", "session": s, "user": user, "message": msg,
                         "history": list(history), "in_tags": k % 2 == 1})
            history += [{"role": "user", "content": msg}, {"role": "assistant", "content": f"answer to: {msg}"}]
    ids = log_requests(sdk, reqs)
    by_req = dict(zip([r["request_id"] for r in reqs], ids))
    exp = experiment_id(sdk)

    # End users rate some answers; a judge rates one; a reviewer overrides it.
    human = lambda who: AssessmentSource(source_type="HUMAN", source_id=who)
    mlflow.log_feedback(trace_id=by_req["conv-a-0"], name="user_satisfaction", value=True, source=human("alice"))
    mlflow.log_feedback(trace_id=by_req["conv-a-2"], name="user_satisfaction", value=False, source=human("alice"))
    mlflow.log_feedback(trace_id=by_req["conv-b-0"], name="user_satisfaction", value=True, source=human("bob"))
    judged = mlflow.log_feedback(trace_id=by_req["conv-a-1"], name="relevance", value="no",
                                 source=AssessmentSource(source_type="LLM_JUDGE", source_id="gpt"))

    sessions = {s["session_id"]: s for s in api(sdk, "sessions", experiment_id=exp)["sessions"]}
    assert set(sessions) == {"conv-a", "conv-b", "conv-c"}
    a = sessions["conv-a"]
    assert (a["user"], a["turns"], a["error_count"]) == ("alice", 3, 0)
    assert a["first_trace_id"] == by_req["conv-a-0"]
    assert a["tokens"] == {"input": 30, "output": 15, "total": 45}
    assert a["assessments"]["feedback"] == 3
    assert (a["assessments"]["positive"], a["assessments"]["negative"]) == (1, 2)
    assert (a["assessments"]["human_positive"], a["assessments"]["human_negative"]) == (1, 1)
    assert a["assessments"]["human_positive_share"] == 0.5
    b = sessions["conv-b"]
    assert (b["user"], b["turns"], b["error_count"]) == ("bob", 2, 1)
    assert b["tokens"] == {"input": 10, "output": 5, "total": 15}  # the failed call reported none
    assert a["last_time_ms"] >= a["first_time_ms"]

    users = {u["user"]: u for u in api(sdk, "users", experiment_id=exp)["users"]}
    assert (users["alice"]["traces"], users["alice"]["sessions"]) == (4, 2)
    assert (users["bob"]["traces"], users["bob"]["sessions"], users["bob"]["error_count"]) == (2, 1, 1)
    assert users["bob"]["assessments"]["human_positive_share"] == 1.0
    assert [s["session_id"] for s in api(sdk, "users/alice/sessions", experiment_id=exp)["sessions"]] == ["conv-c", "conv-a"]

    # One session as its turns: the chat exchange of each, in order.
    detail = api(sdk, "sessions/conv-a", experiment_id=exp)
    assert [t["trace_id"] for t in detail["turns"]] == [by_req[f"conv-a-{k}"] for k in range(3)]
    assert [t["user_message"] for t in detail["turns"]] == [f"conv-a message {k}" for k in range(3)]
    assert [t["assistant_message"] for t in detail["turns"]] == [f"answer to: conv-a message {k}" for k in range(3)]
    assert [[x["name"] for x in t["assessments"]] for t in detail["turns"]] == [["user_satisfaction"], ["relevance"], ["user_satisfaction"]]

    # The reviewer overrides the judge: the overridden "no" stops counting.
    mlflow.override_feedback(trace_id=by_req["conv-a-1"], assessment_id=judged.assessment_id, value="yes",
                             source=human("reviewer"))
    a = {s["session_id"]: s for s in api(sdk, "sessions", experiment_id=exp)["sessions"]}["conv-a"]
    assert (a["assessments"]["feedback"], a["assessments"]["positive"], a["assessments"]["negative"]) == (3, 2, 1)
    # Moving a turn to another user by tag moves it in the user view.
    TracingClient().set_trace_tag(by_req["conv-c-0"], "mlflow.trace.user", "carol")
    users = {u["user"]: u for u in api(sdk, "users", experiment_id=exp)["users"]}
    assert (users["alice"]["traces"], users["alice"]["sessions"]) == (3, 1)
    assert (users["carol"]["traces"], users["carol"]["sessions"]) == (1, 1)
    # Deleting a session's traces removes it; deleting a user's last trace removes the user.
    TracingClient().delete_traces(experiment_id=exp, trace_ids=[by_req["conv-c-0"]])
    assert "conv-c" not in {s["session_id"] for s in api(sdk, "sessions", experiment_id=exp)["sessions"]}
    assert "carol" not in {u["user"] for u in api(sdk, "users", experiment_id=exp)["users"]}
    r = sdk.get("/api/tracebox/v1/sessions/conv-c", params={"experiment_id": exp})
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
