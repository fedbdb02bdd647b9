"""Fixtures for tests that drive tracebox with the full `mlflow` client
(.venv-mlflow): the shared server fixtures from ../conftest.py, and a fake
OpenAI-compatible judge model on loopback."""

import importlib.util
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

_spec = importlib.util.spec_from_file_location(
    "tracebox_e2e_common", os.path.join(os.path.dirname(__file__), "..", "conftest.py"))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)
sys.modules["tracebox_e2e_common"] = common

make_tracebox = common.make_tracebox
run_client = common.run_client
wait_for = common.wait_for
BIN = common.BIN


class FakeLlm:
    """Answers chat completions like a judge model: "no" when the prompt
    mentions RUDE, else "yes" (overridable with `decide`), and records
    every request."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        self.decide = self.default_decide
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                with fake.lock:
                    fake.requests.append(body)
                result, rationale = fake.decide(body)
                content = json.dumps({"rationale": rationale, "result": result})
                out = json.dumps({
                    "id": "chatcmpl-fake", "object": "chat.completion", "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                }).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        class Server(ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def default_decide(body):
        text = json.dumps(body)
        if "RUDE" in text:
            return "no", "Let's think step by step. The answer is rude."
        return "yes", "Let's think step by step. The answer is polite."

    def prompts(self):
        with self.lock:
            return ["\n".join(m["content"] for m in r["messages"]) for r in self.requests]

    def count(self):
        with self.lock:
            return len(self.requests)

    def close(self):
        self.server.shutdown()


@pytest.fixture
def fake_llm():
    f = FakeLlm()
    yield f
    f.close()


@pytest.fixture
def judged_tracebox(make_tracebox, fake_llm, tmp_path):
    """A tracebox whose `gateway:/judge` endpoint is the fake model, with
    short settle and idle times."""

    def start(extra_judges=""):
        data = tmp_path / "data"
        data.mkdir(exist_ok=True)
        (data / "tracebox.toml").write_text(
            f'[gateway.judge]\nbase_url = "{fake_llm.base_url}"\nmodel = "fake-judge"\n\n'
            f"[judges]\ntrace_settle_secs = 0.5\nsession_idle_secs = 2\n{extra_judges}\n")
        return make_tracebox(data_dir=str(data))

    return start
