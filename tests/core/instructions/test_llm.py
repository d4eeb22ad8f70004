"""The optional LLM interpreter against a real HTTP server in the test that speaks chat completions.

Good JSON is used; invalid JSON, options that do not validate, an HTTP error and a timeout each leave the
offline reading in place, with a note that says why. Nothing is sent when the offline reading is complete.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from matteflow.core.instructions import LlmConfig, interpret, resolve_options


class ChatServer:
    """A chat-completions endpoint whose next reply the test sets: content text, an HTTP status, or a delay."""

    def __init__(self) -> None:
        self.content = "{}"
        self.status = 200
        self.delay_s = 0.0
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                server.requests.append(
                    {
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "body": json.loads(self.rfile.read(length)),
                    }
                )
                time.sleep(server.delay_s)
                payload = {"choices": [{"index": 0, "message": {"role": "assistant", "content": server.content}}]}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(server.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout case)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    server = ChatServer()
    yield server
    server.close()


def config(chat: ChatServer, timeout_s: float = 5.0) -> LlmConfig:
    found = LlmConfig.from_values(chat.url, "test-model", "secret-key", timeout_s)
    assert found is not None
    return found


UNKNOWN = "蓝底，加点闪光特效"  # the offline reader knows 蓝底 but not 闪光特效


def test_good_json_is_used(chat: ChatServer) -> None:
    chat.content = '```json\n{"options": {"background": "#438edb", "feather": true}, "mapped": [{"text": "闪光特效", "options": {"feather": true}}], "not_understood": []}\n```'  # noqa: E501
    result = interpret(UNKNOWN, config(chat))
    assert result.interpreter == "llm"
    assert result.options == {"background": "#438edb", "feather": True}
    assert any("did not understand" in note for note in result.notes)
    request = chat.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer secret-key"
    assert request["body"]["model"] == "test-model"
    assert request["body"]["messages"][-1] == {"role": "user", "content": UNKNOWN}
    assert "id_size" in request["body"]["messages"][0]["content"]  # the schema is in the prompt


@pytest.mark.parametrize(
    ("content", "status", "reason"),
    [
        ("I think you want a blue background!", 200, "not JSON"),
        ('{"options": {"background": "sky"}}', 200, "invalid options"),
        ('{"options": {"colour": "#ffffff"}}', 200, "unknown option"),
        ("{}", 500, "HTTP 500"),
    ],
)
def test_bad_answers_leave_the_offline_reading(chat: ChatServer, content: str, status: int, reason: str) -> None:
    chat.content, chat.status = content, status
    result = interpret(UNKNOWN, config(chat))
    assert result.interpreter == "offline"
    assert result.options == {"background": "#438edb"}
    assert result.not_understood == ["加点", "闪光", "特效"]
    assert any(reason in note and "offline reading stands" in note for note in result.notes), result.notes


def test_timeout_leaves_the_offline_reading(chat: ChatServer) -> None:
    chat.content, chat.delay_s = '{"options": {"feather": true}}', 2.0
    started = time.monotonic()
    result = interpret(UNKNOWN, config(chat, timeout_s=0.5))
    assert time.monotonic() - started < 1.8
    assert result.interpreter == "offline" and result.options == {"background": "#438edb"}
    assert any("no answer within 0.5 s" in note for note in result.notes), result.notes


def test_unreachable_endpoint_leaves_the_offline_reading() -> None:
    llm = LlmConfig.from_values("http://127.0.0.1:9/v1", "m", timeout_s=1.0)
    assert llm is not None
    result = interpret(UNKNOWN, llm)
    assert result.interpreter == "offline" and any("cannot reach" in n for n in result.notes)


def test_nothing_is_sent_when_the_offline_reading_is_complete(chat: ChatServer) -> None:
    result = interpret("蓝底二寸证件照", config(chat))
    assert result.interpreter == "offline" and chat.requests == []


def test_not_configured_means_offline_only() -> None:
    assert LlmConfig.from_values("", "model") is None
    assert LlmConfig.from_values("http://x/v1", "") is None


def test_explicit_options_still_win_over_the_llm(chat: ChatServer) -> None:
    chat.content = '{"options": {"background": "#438edb", "format": "jpeg"}}'
    resolved = resolve_options({"format": "webp"}, UNKNOWN, config(chat))
    assert resolved.options.format == "webp" and resolved.options.background == (67, 142, 219)
    assert resolved.overridden == [{"option": "format", "instruction": "jpeg", "explicit": "webp"}]
    assert "LLM" in resolved.explanation("en")
