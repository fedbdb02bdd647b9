"""Fills a running tracebox with realistic demo traces through the real
MLflow tracing SDK: a support agent with chat-model calls (tool calls
included), retrieval, tools, sessions, users, errors with stack traces,
and human feedback.

    .venv-tracing/bin/python scripts/demo_data.py http://127.0.0.1:5000 [N]

Used for screenshots and for trying the UI; tests ingest their own data.
"""

import random
import sys
import time

import mlflow
from mlflow.entities import SpanType

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5000"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
mlflow.set_tracking_uri(url)
mlflow.set_experiment("support-agent")
rng = random.Random(7)

QUESTIONS = [
    "How do I reset my password?",
    "Can I get a refund for order #4521?",
    "What are your opening hours on Sunday?",
    "My package says delivered but I never got it.",
    "Do you ship to Norway?",
    "How can I change the email address on my account?",
    "Welche Zahlungsmethoden akzeptieren Sie?",
    "Is the blue jacket available in size M?",
]
USERS = ["alice", "bob", "carol", "dmitri", "eve"]
DOCS = [
    "Refunds are issued within 14 days of receiving the returned item.",
    "Passwords can be reset from the login page via 'Forgot password'.",
    "We ship to all EU countries and Norway; delivery takes 3-5 days.",
    "Stores are open Mon-Sat 9:00-19:00 and Sunday 11:00-17:00.",
]


@mlflow.trace(span_type=SpanType.RETRIEVER)
def retrieve(query: str):
    time.sleep(rng.uniform(0.005, 0.03))
    picked = rng.sample(DOCS, 2)
    return [{"page_content": d, "metadata": {"source": f"kb/{i}.md"}} for i, d in enumerate(picked)]


@mlflow.trace(span_type=SpanType.TOOL)
def lookup_order(order_id: str):
    time.sleep(rng.uniform(0.01, 0.05))
    if order_id.endswith("1") and rng.random() < 0.5:
        raise TimeoutError(f"orders-service did not answer for order {order_id} within 2s")
    return {"order_id": order_id, "status": "delivered", "total": 89.9}


def chat(messages, tools=False):
    with mlflow.start_span(name="ChatOpenAI", span_type=SpanType.CHAT_MODEL) as span:
        span.set_inputs({"model": "gpt-4o-mini", "messages": messages, "temperature": 0.2})
        time.sleep(rng.uniform(0.05, 0.25))
        if tools:
            out = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup_order", "arguments": "{\"order_id\": \"4521\"}"}}]}}]}
        else:
            answer = "Sure! " + rng.choice(DOCS) + " Is there anything else I can help with?"
            out = {"choices": [{"message": {"role": "assistant", "content": answer}}]}
        span.set_outputs(out)
        pt, ct = rng.randint(200, 900), rng.randint(20, 160)
        span.set_attributes({"mlflow.chat.tokenUsage": {"input_tokens": pt, "output_tokens": ct, "total_tokens": pt + ct},
                             "llm.model_name": "gpt-4o-mini"})
        return out


@mlflow.trace(name="support_agent", span_type=SpanType.AGENT)
def agent(question: str, user: str, session: str):
    mlflow.update_current_trace(tags={"env": rng.choice(["prod", "prod", "staging"]), "app_version": "1.4.2"},
                                metadata={"mlflow.trace.user": user, "mlflow.trace.session": session})
    docs = retrieve(question)
    messages = [
        {"role": "system", "content": "You are a helpful support agent for Acme Outdoor. Answer briefly."},
        {"role": "user", "content": question},
    ]
    if "order" in question or "refund" in question:
        first = chat(messages, tools=True)
        messages.append(first["choices"][0]["message"])
        result = lookup_order("4521")
        messages.append({"role": "tool", "tool_call_id": "call_1", "content": str(result)})
    messages[0]["content"] += "\nContext:\n" + "\n".join(d["page_content"] for d in docs)
    out = chat(messages)
    return out["choices"][0]["message"]["content"]


ids = []
for i in range(n):
    q = rng.choice(QUESTIONS)
    user = rng.choice(USERS)
    session = f"sess-{user}-{i // 3}"
    try:
        agent(q, user, session)
    except Exception:
        pass
    ids.append(mlflow.get_last_active_trace_id())

for tid in ids[:: 4]:
    if tid:
        mlflow.log_feedback(trace_id=tid, name="helpful", value=rng.random() < 0.75,
                            source=mlflow.entities.AssessmentSource(source_type="HUMAN", source_id=rng.choice(USERS)),
                            rationale="Answered the question directly." if rng.random() < 0.5 else None)
for tid in ids[1:: 5]:
    if tid:
        mlflow.log_feedback(trace_id=tid, name="groundedness", value=round(rng.uniform(0.4, 1.0), 2),
                            source=mlflow.entities.AssessmentSource(source_type="LLM_JUDGE", source_id="gpt-4o-mini"))
print(f"sent {len(ids)} traces to {url}")
