"""The benchmark's trace contents, derived deterministically from a trace index.

Standard library only: it is imported by the SDK client (mlflow-tracing venv),
the loaders (both venvs) and the orchestrator, so trace number i has the same
user, session, environment, texts and tool everywhere. It knows nothing about
MLflow or tracebox.

Texts, the tool and the environment depend only on the template number
`i % TEMPLATES`; the user, session, order number and client request id depend
on i and have a fixed width. So trace i is template `i % TEMPLATES` with those
identifiers (and ids and times) replaced by equal-length ones, which is how
`dataset.py` makes 100,000 traces from what the SDK sent for `TEMPLATES`.

Each trace is a chat turn: a root CHAIN span, a RETRIEVER span, a TOOL span
(one of eight tools, so `span.name` filters select about 1/8 of the traces)
and an LLM span, with chat inputs/outputs of about 1 KB. Every question
mentions an order number `ORD<7 digits>` unique to the trace: a full-text
search for it has exactly one match.
"""

import random

TEMPLATES = 1000  # distinct texts; see dataset.py
USERS = 200  # distinct users; sessions belong to one user
SESSION_LEN = 5  # consecutive traces per session
ENVIRONMENTS = ("production",) * 7 + ("staging",) * 2 + ("development",)
TOOLS = (
    "get_weather",
    "lookup_order",
    "search_web",
    "calculator",
    "send_email",
    "get_calendar",
    "translate_text",
    "query_database",
)
MODEL = "gpt-4o-mini"

_WORDS = (
    "the a an and or but if then when while because so that this these those it its we you they "
    "order account shipment refund invoice payment card address delivery package warehouse return "
    "policy customer support agent question answer please thanks help issue problem status update "
    "week month day hour minute yesterday today tomorrow morning evening late early fast slow "
    "price discount coupon subscription plan upgrade downgrade cancel renew trial premium basic "
    "product item size color quantity stock available backorder replace exchange warranty repair "
    "login password email phone verify code security reset locked access permission profile "
    "report error crash screen button page link download upload file document export import "
    "can could would should will may might must need want like know think see check confirm "
    "tracking number carrier courier express standard international domestic customs fee tax "
    "store location hours open closed holiday weekend schedule appointment booking reservation "
    "travel flight hotel train ticket seat luggage gate boarding departure arrival delay "
    "weather forecast rain sun snow wind temperature humidity storm cloudy clear warm cold"
).split()

SYSTEM_PROMPT = (
    "You are a helpful customer-support assistant for an online store. Answer briefly and "
    "politely, cite the retrieved documents when you use them, never invent order details, "
    "and call a tool when the user asks for live information such as weather, order status "
    "or calendar availability."
)


def _sentence(rng, n):
    words = [rng.choice(_WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def _paragraph(rng, chars):
    out = []
    total = 0
    while total < chars:
        s = _sentence(rng, rng.randint(8, 16))
        out.append(s)
        total += len(s) + 1
    return " ".join(out)


def user_of(i):
    return f"user-{(i // SESSION_LEN) % USERS:04d}"


def session_of(i):
    return f"session-{i // SESSION_LEN:07d}"


def environment_of(i):
    t = i % TEMPLATES
    return ENVIRONMENTS[(t * 7 + t // 10) % len(ENVIRONMENTS)]


def tool_of(i):
    t = i % TEMPLATES
    return TOOLS[(t * 5 + t // 8) % len(TOOLS)]


def order_number(i):
    return f"ORD{i:07d}"


def client_request_id(i):
    return f"req-{i:08d}"


def trace_content(i):
    """Everything the SDK client logs for trace number i (plain data)."""
    rng = random.Random((i % TEMPLATES) * 7919 + 17)
    question = (
        f"Hi, about my order {order_number(i)}: " + _paragraph(rng, 380)
    )
    docs = [
        {
            "page_content": _paragraph(rng, 200),
            "metadata": {"doc_uri": f"https://docs.example.com/kb/{rng.randint(1, 5000)}", "chunk_id": str(rng.randint(0, 40))},
            "id": f"doc-{rng.randint(1, 10**6)}",
        }
        for _ in range(3)
    ]
    answer = _paragraph(rng, 600)
    tool = tool_of(i)
    tool_args = {"query": _sentence(rng, 6), "order": order_number(i)}
    tool_result = {"status": "ok", "result": _sentence(rng, 12)}
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": question},
    ]
    llm_messages = messages + [
        {"role": "tool", "content": tool_result["result"]},
    ]
    return {
        "i": i,
        "user": user_of(i),
        "session": session_of(i),
        "environment": environment_of(i),
        "client_request_id": client_request_id(i),
        "question": question,
        "root_inputs": {"messages": messages},
        "root_outputs": {"role": "assistant", "content": answer},
        "retriever_inputs": {"query": question[:200]},
        "retriever_outputs": docs,
        "tool": tool,
        "tool_inputs": tool_args,
        "tool_outputs": tool_result,
        "llm_inputs": {"messages": llm_messages, "model": MODEL, "temperature": 0.2},
        "llm_outputs": {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 412, "completion_tokens": 131, "total_tokens": 543},
        },
        "llm_attributes": {"model": MODEL, "temperature": 0.2},
    }
