"""LLM judges driven by the real full `mlflow` client (mlflow.genai.scorers)
against the real tracebox binary, with a fake OpenAI-compatible judge model.
Traces come from the MLflow SDK in a separate process, as an app sends them.
"""

import json
import os
import subprocess
import time

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.genai.judges import make_judge
from mlflow.genai.scorers import (
    Guidelines,
    ScorerSamplingConfig,
    UserFrustration,
    delete_scorer,
    get_scorer,
    list_scorers,
)
from mlflow.genai.scorers.base import ScorerStatus

from conftest import BIN, run_client, wait_for

APP = r'''
import json, os, mlflow
mlflow.set_tracking_uri(os.environ["URI"])
mlflow.set_experiment(os.environ["EXPERIMENT"])
items = json.loads(os.environ["ITEMS"])
current = {}

@mlflow.trace(name="chat")
def chat(question: str):
    kw = {"tags": {"env": current["env"]}}
    if current.get("session"):
        kw["session_id"] = current["session"]
    mlflow.update_current_trace(**kw)
    return current["answer"]

ids = []
for it in items:
    current.clear()
    current.update(it)
    chat(it["question"])
    ids.append(mlflow.get_last_active_trace_id())
mlflow.flush_trace_async_logging()
print(json.dumps(ids))
'''


def send(tb, experiment, items, sync=False):
    """Logs one trace per item from a separate process; returns trace ids.
    `sync` turns off the SDK's async export, whose bounded queue drops
    traces when an app logs faster than it exports."""
    env = {"URI": tb.url, "EXPERIMENT": experiment, "ITEMS": json.dumps(items)}
    if sync:
        env["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    out = run_client(APP, env)
    return json.loads(out.strip().splitlines()[-1])


def item(question, answer, env="prod", session=None):
    it = {"question": question, "answer": answer, "env": env}
    if session:
        it["session"] = session
    return it


def feedbacks(trace_id, name):
    trace = mlflow.get_trace(trace_id)
    return [a for a in trace.info.assessments if a.name == name]


def judge_status(tb, experiment_id):
    r = requests.get(f"{tb.url}/api/tracebox/v1/judges", params={"experiment_id": experiment_id}, timeout=30)
    r.raise_for_status()
    return {j["name"]: j for j in r.json()["judges"]}


def test_guidelines_judge_through_the_mlflow_client(judged_tracebox, fake_llm):
    tb = judged_tracebox()
    mlflow.set_tracking_uri(tb.url)
    exp_id = mlflow.set_experiment("judged-app").experiment_id

    registered = Guidelines(
        name="politeness", guidelines=["The response must be polite."], model="gateway:/judge"
    ).register(name="politeness")
    started = registered.start(
        sampling_config=ScorerSamplingConfig(sample_rate=1.0, filter_string="tags.env = 'prod'"))
    assert started.status == ScorerStatus.STARTED
    assert started.sample_rate == 1.0
    assert started.filter_string == "tags.env = 'prod'"

    ids = send(tb, "judged-app", [
        item("What is the capital of France?", "The capital of France is Paris."),
        item("What is 2+2?", "RUDE: figure it out yourself."),
        item("hello?", "hi there", env="dev"),
    ])
    wait_for(lambda: all(len(feedbacks(t, "politeness")) == 1 for t in ids[:2]),
             timeout=30, what="verdicts on the prod traces")
    polite, rude = feedbacks(ids[0], "politeness")[0], feedbacks(ids[1], "politeness")[0]
    assert polite.value == "yes" and rude.value == "no"
    assert polite.source.source_type == "LLM_JUDGE"
    assert polite.source.source_id == "gateway:/judge"
    assert polite.rationale == "The answer is polite."
    assert polite.metadata["guideline"] == "The response must be polite."
    time.sleep(1.5)
    assert feedbacks(ids[2], "politeness") == [], "the filter keeps dev traces out"

    # The judge got exactly the prompt MLflow's own Guidelines judge builds.
    from mlflow.genai.judges.prompts.guidelines import get_prompt
    from mlflow.genai.utils.trace_utils import parse_inputs_to_str, parse_outputs_to_str
    root = mlflow.get_trace(ids[0]).data._get_root_span()
    expected = get_prompt(["The response must be polite."], {
        "request": parse_inputs_to_str(root.inputs), "response": parse_outputs_to_str(root.outputs)})
    assert expected in fake_llm.prompts()

    # The registry, read back through the client.
    [listed] = list_scorers(experiment_id=exp_id)
    assert listed.name == "politeness" and listed.sample_rate == 1.0
    got = get_scorer(name="politeness", experiment_id=exp_id)
    assert got.filter_string == "tags.env = 'prod'" and got.status == ScorerStatus.STARTED
    status = judge_status(tb, exp_id)["politeness"]
    assert status["state"] == "running" and status["evaluated"] == 2 and status["pass_rate"] == 0.5
    assert status["filtered"] == 1

    updated = got.update(sampling_config=ScorerSamplingConfig(sample_rate=0.5))
    assert updated.sample_rate == 0.5 and updated.filter_string is None
    stopped = updated.stop()
    assert stopped.status == ScorerStatus.STOPPED
    calls = fake_llm.count()
    later = send(tb, "judged-app", [item("And Spain?", "Madrid.")])
    time.sleep(2.5)
    assert feedbacks(later[0], "politeness") == [], "stop() stops"
    assert fake_llm.count() == calls

    delete_scorer(name="politeness", experiment_id=exp_id, version="all")
    with pytest.raises(MlflowException, match="Scorer with name 'politeness' not found"):
        get_scorer(name="politeness", experiment_id=exp_id)


def test_sample_rate_over_1000_traces_is_mlflows_sample(judged_tracebox, fake_llm):
    tb = judged_tracebox()
    mlflow.set_tracking_uri(tb.url)
    exp_id = mlflow.set_experiment("sampled-app").experiment_id
    scorer = Guidelines(name="politeness", guidelines=["Be polite."], model="gateway:/judge")
    registered = scorer.register(name="politeness")
    registered.start(sampling_config=ScorerSamplingConfig(sample_rate=0.1))

    ids = send(tb, "sampled-app", [item(f"question {i}", f"answer {i}") for i in range(1000)], sync=True)
    assert len(set(ids)) == 1000

    # MLflow's own sampler decides which traces it would judge.
    from mlflow.genai.scorers.online.entities import OnlineScorer, OnlineScoringConfig
    from mlflow.genai.scorers.online.sampler import OnlineScorerSampler
    serialized = requests.get(f"{tb.url}/api/3.0/mlflow/scorers/get",
                              params={"experiment_id": exp_id, "name": "politeness"},
                              timeout=30).json()["scorer"]["serialized_scorer"]
    online = OnlineScorer(
        name="politeness", serialized_scorer=serialized,
        online_config=OnlineScoringConfig(
            online_scoring_config_id="x", scorer_id="y", sample_rate=0.1, experiment_id=exp_id))
    sampler = OnlineScorerSampler([online])
    [group] = sampler.group_scorers_by_filter(session_level=False).values()
    expected = {t for t in ids if sampler.sample(t, group)}
    assert 60 <= len(expected) <= 140, len(expected)

    wait_for(lambda: judge_status(tb, exp_id)["politeness"]["evaluated"] == len(expected),
             timeout=120, what=f"the {len(expected)} sampled traces judged")
    judged = set()
    token = None
    while True:
        body = {"experiment_ids": [exp_id], "max_results": 500}
        if token:
            body["page_token"] = token
        r = requests.post(f"{tb.url}/api/3.0/mlflow/traces/search", json=body, timeout=30).json()
        for t in r.get("traces", []):
            if any(a["assessment_name"] == "politeness" for a in t.get("assessments", [])):
                judged.add(t["trace_id"])
        token = r.get("next_page_token")
        if not token:
            break
    assert judged == expected
    assert fake_llm.count() == len(expected)


def test_session_judge_fires_after_idle(judged_tracebox, fake_llm):
    def decide(body):
        text = json.dumps(body)
        if "emotional trajectory" in text:
            return ("unresolved", "annoyed at the end") if "useless" in text else ("none", "calm")
        return "yes", "ok"

    fake_llm.decide = decide
    tb = judged_tracebox()
    mlflow.set_tracking_uri(tb.url)
    exp_id = mlflow.set_experiment("chat-app").experiment_id
    UserFrustration(model="gateway:/judge").register(name="frustration").start(
        sampling_config=ScorerSamplingConfig(sample_rate=1.0))
    ids = send(tb, "chat-app", [
        item("where is my order?", "It ships tomorrow.", session="conv-1"),
        item("this is useless, I asked yesterday", "Sorry about that!", session="conv-1"),
        item("hello", "hi", session="conv-2"),
    ])
    wait_for(lambda: len(feedbacks(ids[0], "frustration")) == 1 and len(feedbacks(ids[2], "frustration")) == 1,
             timeout=30, what="session verdicts")
    conv1 = feedbacks(ids[0], "frustration")[0]
    assert conv1.value == "unresolved"
    assert conv1.metadata["mlflow.trace.session"] == "conv-1"
    assert feedbacks(ids[2], "frustration")[0].value == "none"
    assert feedbacks(ids[1], "frustration") == [], "session results sit on the first trace"
    assert judge_status(tb, exp_id)["frustration"]["level"] == "session"


def test_make_judge_and_cli_added_judges_load_in_the_client(judged_tracebox, fake_llm):
    def decide(body):
        return (True, "short") if "concise" in json.dumps(body) else ("yes", "ok")

    fake_llm.decide = decide
    tb = judged_tracebox()
    mlflow.set_tracking_uri(tb.url)
    exp_id = mlflow.set_experiment("custom-app").experiment_id
    concise = make_judge(
        name="concise", instructions="Is {{ outputs }} a concise answer to {{ inputs }}?",
        model="gateway:/judge", feedback_value_type=bool).register(name="concise")
    concise.start(sampling_config=ScorerSamplingConfig(sample_rate=1.0))
    [tid] = send(tb, "custom-app", [item("Capital of France?", "Paris.")])
    wait_for(lambda: len(feedbacks(tid, "concise")) == 1, timeout=30, what="the make_judge verdict")
    assert feedbacks(tid, "concise")[0].value is True

    # Every kind `tracebox judges add` builds is a payload the client loads.
    kinds = [
        ("g", ["--kind", "guidelines", "--guidelines", "Be kind.", "--guidelines", "Be brief.",
               "--model", "gateway:/judge"]),
        ("s", ["--kind", "safety", "--model", "openai:/gpt-4o-mini"]),
        ("r", ["--kind", "relevance"]),
        ("gr", ["--kind", "groundedness", "--model", "gateway:/judge"]),
        ("c", ["--kind", "correctness"]),
        ("eg", ["--kind", "expectations-guidelines"]),
        ("uf", ["--kind", "user-frustration", "--model", "gateway:/judge"]),
        ("cc", ["--kind", "conversation-completeness"]),
        ("cs", ["--kind", "conversational-safety"]),
        ("cg", ["--kind", "conversational-guidelines", "--guidelines", "Stay on topic."]),
        ("pii", ["--kind", "pii"]),
        ("yn", ["--kind", "custom", "--instructions", "Does {{ outputs }} answer {{ inputs }}?"]),
        ("num", ["--kind", "custom", "--instructions", "Rate {{ outputs }} from 1 to 5.",
                 "--value-type", "int", "--model", "gateway:/judge"]),
        ("conv", ["--kind", "custom", "--instructions", "Was the user happy in {{ conversation }}?",
                  "--value-type", "bool"]),
    ]
    for name, args in kinds:
        p = subprocess.run([BIN, "judges", "add", name, "--data", tb.data_dir, "-e", "custom-app", *args],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
    scorers = {s.name: s for s in list_scorers(experiment_id=exp_id)}
    assert set(scorers) == {"concise"} | {n for n, _ in kinds}
    assert type(scorers["g"]).__name__ == "Guidelines"
    assert scorers["g"].guidelines == ["Be kind.", "Be brief."]
    assert scorers["g"].model == "gateway:/judge"
    assert type(scorers["pii"]).__name__ == "PIIDetection"
    assert type(scorers["uf"]).__name__ == "UserFrustration"
    assert scorers["uf"].is_session_level_scorer
    assert scorers["conv"].is_session_level_scorer
    assert type(scorers["cg"]).__name__ == "ConversationalGuidelines"
    # The CLI lists them too, with what each needs.
    p = subprocess.run([BIN, "judges", "list", "--url", tb.url, "-e", "custom-app"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "PIIDetection" in p.stdout and "make_judge" in p.stdout
