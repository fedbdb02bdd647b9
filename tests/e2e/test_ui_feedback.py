"""Human feedback entered in the web UI, read back with the real SDK.

A trace is logged by an app process with `mlflow-tracing`; a reviewer then
posts the trace page's feedback and expectation forms (as a browser without
JavaScript would: cookie, CSRF token, form encoding); a fresh SDK must see
them exactly as if `mlflow.log_feedback` / `log_expectation` had been
called."""

import re

import mlflow
import requests

from conftest import run_client, wait_for

APP = r'''
import mlflow
mlflow.set_experiment("ui-feedback")

@mlflow.trace(name="answer")
def answer(q):
    return "Paris"

answer("capital of France?")
print(mlflow.get_last_active_trace_id())
'''


def csrf_of(html):
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert m, "the page has a form with a CSRF token"
    return m.group(1)


def test_feedback_from_the_ui_is_what_the_sdk_reads(tracebox):
    trace_id = run_client(APP, {"MLFLOW_TRACKING_URI": tracebox.url}).strip().splitlines()[-1]

    browser = requests.Session()
    page = browser.get(f"{tracebox.url}/traces/{trace_id}", headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 200
    token = csrf_of(page.text)

    # Without the token the form is refused and nothing is stored.
    r = browser.post(f"{tracebox.url}/traces/{trace_id}/feedback",
                     data={"verdict": "up", "name": "correct"}, allow_redirects=False, timeout=30)
    assert r.status_code == 403

    r = browser.post(f"{tracebox.url}/traces/{trace_id}/feedback",
                     data={"csrf": token, "verdict": "up", "name": "correct",
                           "comment": "Right answer.", "source_id": "reviewer@example.com"},
                     allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text
    r = browser.post(f"{tracebox.url}/traces/{trace_id}/feedback",
                     data={"csrf": token, "score": "0.25", "name": "style"}, allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text
    r = browser.post(f"{tracebox.url}/traces/{trace_id}/expectations",
                     data={"csrf": token, "name": "expected_response", "value": "Paris"},
                     allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text

    mlflow.set_tracking_uri(tracebox.url)
    trace = mlflow.get_trace(trace_id)
    by_name = {a.name: a for a in trace.info.assessments}
    assert set(by_name) == {"correct", "style", "expected_response"}

    correct = by_name["correct"]
    assert correct.feedback.value is True
    assert correct.rationale == "Right answer."
    assert correct.source.source_type == "HUMAN"
    assert correct.source.source_id == "reviewer@example.com"
    assert by_name["style"].feedback.value == 0.25
    assert by_name["expected_response"].expectation.value == "Paris"

    # The SDK can override what the UI saved, and the UI shows the override.
    mlflow.override_feedback(trace_id=trace_id, assessment_id=correct.assessment_id, value=False,
                             rationale="Actually ambiguous.")
    html = browser.get(f"{tracebox.url}/traces/{trace_id}", headers={"Accept": "text/html"}, timeout=30).text
    assert "Actually ambiguous." in html
    assert "overridden" in html


CONVERSATION = r'''
import mlflow
exp = mlflow.set_experiment("ui-session-feedback")

@mlflow.trace(name="chat")
def chat(message):
    mlflow.update_current_trace(session_id="conv-1", user="ann")
    return "ok: " + message

ids = []
for m in ["hello", "refund please", "thanks"]:
    chat(m)
    ids.append(mlflow.get_last_active_trace_id())
print(exp.experiment_id)
print(" ".join(ids))
'''


def test_session_feedback_from_the_ui_is_what_mlflow_reads(tracebox):
    """Feedback on a whole session, posted from the session page, is stored
    the way MLflow stores session-level assessments: on the session's first
    trace, with metadata `mlflow.trace.session`."""
    out = run_client(CONVERSATION, {"MLFLOW_TRACKING_URI": tracebox.url}).strip().splitlines()
    exp, ids = out[-2].strip(), out[-1].split()
    assert len(ids) == 3

    browser = requests.Session()
    url = f"{tracebox.url}/experiments/{exp}/sessions/conv-1"
    # The SDK exports in the background; the session is complete once all
    # three turns arrived.
    def transcript():
        p = browser.get(url, headers={"Accept": "text/html"}, timeout=30)
        return p if p.status_code == 200 and p.text.count('data-turn="') == 3 else None
    page = wait_for(transcript, what="the three turns")
    for m in ["hello", "refund please", "thanks", "ok: thanks"]:
        assert m in page.text
    token = csrf_of(page.text)
    r = browser.post(f"{url}/feedback",
                     data={"csrf": token, "verdict": "down", "comment": "Never got the refund.",
                           "source_id": "qa@example.com"},
                     allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text

    mlflow.set_tracking_uri(tracebox.url)
    first = mlflow.get_trace(ids[0])
    (fb,) = [a for a in first.info.assessments if a.name == "session_feedback"]
    assert fb.feedback.value is False
    assert fb.rationale == "Never got the refund."
    assert fb.source.source_type == "HUMAN"
    assert fb.source.source_id == "qa@example.com"
    assert fb.metadata == {"mlflow.trace.session": "conv-1"}
    for later in ids[1:]:
        assert not [a for a in mlflow.get_trace(later).info.assessments if a.name == "session_feedback"]
