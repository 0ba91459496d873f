"""Scripted LLM servers for tests: an OpenAI-compatible one (``POST /v1/chat/completions``) and an
Anthropic-compatible one (``POST /v1/messages``), real FastAPI apps served by uvicorn on loopback, so the real
SDK clients talk real HTTP to them.

Each request is recorded (its JSON body). The reply is the next scripted item for the request's role (planner
or answer, told apart by the system message Tern sends): a string (the reply text), an int (an HTTP error status
with an OpenAI-shaped error body), or a callable taking the request body and returning either. With nothing
scripted for a role, ``default[role]`` answers (a string or callable), else HTTP 500.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tests.ariel.conftest import serve

Reply = str | int | Callable[[dict[str, Any]], "str | int"]


def role_of(body: dict[str, Any]) -> str:
    """'planner', 'answer' or 'other', from the system text of an OpenAI or Anthropic request body."""
    system = body.get("system") or ""
    if not system:
        system = "".join(m["content"] for m in body.get("messages", []) if m.get("role") == "system")
    if isinstance(system, list):
        system = "".join(b.get("text", "") for b in system)
    if "You are the planner" in system:
        return "planner"
    if "You answer" in system:
        return "answer"
    return "other"


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the request's last user message."""
    msgs = [m for m in body.get("messages", []) if m.get("role") == "user"]
    content = msgs[-1]["content"] if msgs else ""
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def plan_json(*steps: dict[str, Any]) -> str:
    return json.dumps({"steps": list(steps)})


@dataclass
class ScriptedLLM:
    """The script and the record of one scripted server."""

    script: dict[str, list[Reply]] = field(default_factory=lambda: {"planner": [], "answer": [], "other": []})
    default: dict[str, Reply] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    refuse_response_format: bool = False
    delay_s: float = 0.0
    base: str = ""
    in_flight: int = 0
    provider: str = "openai"  # which API the test's client speaks (for the test's own use)
    max_in_flight: int = 0

    def by_role(self, role: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if role_of(r) == role]

    def _next(self, body: dict[str, Any]) -> str | int:
        role = role_of(body)
        queue = self.script.setdefault(role, [])
        item: Reply | None = queue.pop(0) if queue else self.default.get(role)
        if item is None:
            return 500
        return item(body) if callable(item) else item

    def app(self) -> FastAPI:
        app = FastAPI()
        llm = self

        def error(status: int, message: str) -> JSONResponse:
            return JSONResponse(
                {"error": {"message": message, "type": "invalid_request_error", "code": None}}, status_code=status
            )

        async def wait() -> None:
            llm.in_flight += 1
            llm.max_in_flight = max(llm.max_in_flight, llm.in_flight)
            try:
                await asyncio.sleep(llm.delay_s)
            finally:
                llm.in_flight -= 1

        @app.post("/v1/chat/completions")
        async def chat(body: dict[str, Any]) -> Any:
            llm.requests.append(body)
            if llm.delay_s:
                await wait()
            if llm.refuse_response_format and "response_format" in body:
                return error(400, "response_format is not supported by this server")
            out = llm._next(body)
            if isinstance(out, int):
                return error(out, "scripted failure")
            return {
                "id": f"c{len(llm.requests)}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
            }

        @app.post("/v1/messages")
        async def messages(body: dict[str, Any]) -> Any:
            llm.requests.append(body)
            if llm.delay_s:
                await wait()
            out = llm._next(body)
            if isinstance(out, int):
                return JSONResponse(
                    {"type": "error", "error": {"type": "api_error", "message": "scripted failure"}}, status_code=out
                )
            return {
                "id": f"msg_{len(llm.requests)}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": out}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 90, "output_tokens": 15},
            }

        return app


@asynccontextmanager
async def scripted_llm(llm: ScriptedLLM | None = None) -> AsyncIterator[ScriptedLLM]:
    """Serve ``llm`` (a new one when None) on a free loopback port; ``llm.base`` is ``http://127.0.0.1:PORT``."""
    llm = llm or ScriptedLLM()
    async with serve(llm.app()) as base:
        llm.base = base
        yield llm
