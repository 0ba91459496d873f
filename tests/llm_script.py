"""Scripted LLM servers for tests: an OpenAI-compatible one (``POST /v1/chat/completions``) and an
Anthropic-compatible one (``POST /v1/messages``), real FastAPI apps served by uvicorn on loopback, so the real
SDK clients talk real HTTP to them.

Each request is recorded (its JSON body). The reply is the next scripted item for the request's role (planner
or answer, told apart by the system message Tern sends): a string (the reply text), an int (an HTTP error status
with an OpenAI-shaped error body), or a callable taking the request body and returning either. With nothing
scripted for a role, ``default[role]`` answers (a string or callable), else HTTP 500.

``dialect`` picks which OpenAI-compatible server the chat endpoint behaves as, at its HTTP boundary:
``openai`` (structured output in ``response_format``), ``vllm`` (also the ``guided_json`` extra parameter; reply
without ``system_fingerprint``), ``llamacpp`` (also the ``json_schema`` field; a ``timings`` object in the reply,
model "gpt-3.5-turbo" when none is loaded by alias) and ``ollama`` (``response_format`` only, as its OpenAI
compatibility layer; ``system_fingerprint`` "fp_ollama"). Each records the schema it was sent in ``schemas``
(None for a request without one). A field the dialect does not know is refused with HTTP 400 when
``strict_fields`` is set, as a server validating its request model would. The Anthropic endpoint answers a
request that forces a tool (``tool_choice``) with a ``tool_use`` block whose input is the scripted text parsed
as JSON (a text block when it is not a JSON object: a model that ignored the tool).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
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


DIALECT_SCHEMA_FIELDS: dict[str, tuple[str, ...]] = {
    "openai": ("response_format",),
    "vllm": ("response_format", "guided_json"),
    "llamacpp": ("response_format", "json_schema"),
    "ollama": ("response_format",),
}
"""The request fields that carry a JSON Schema, per server dialect (what each server's request model accepts)."""


def schema_sent(
    body: dict[str, Any], fields: tuple[str, ...] = ("response_format", "guided_json", "json_schema")
) -> Any:
    """The JSON Schema a chat-completions request body asks for in one of ``fields``, or None."""
    rf = body.get("response_format")
    if "response_format" in fields and isinstance(rf, dict):
        if rf.get("type") == "json_schema":
            return rf.get("json_schema", {}).get("schema")
        if rf.get("type") == "json_object" and "schema" in rf:  # llama.cpp's own form
            return rf["schema"]
    for f in ("guided_json", "json_schema"):
        if f in fields and isinstance(body.get(f), dict):
            return body[f]
    return None


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
    dialect: str = "openai"  # openai | vllm | llamacpp | ollama: which server /v1/chat/completions behaves as
    strict_fields: bool = False
    schemas: list[dict[str, Any] | None] = field(default_factory=list)
    before: Callable[[dict[str, Any]], Awaitable[None]] | None = None  # awaited before a chat reply (counted in flight)

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

        async def wait(body: dict[str, Any] | None = None) -> None:
            llm.in_flight += 1
            llm.max_in_flight = max(llm.max_in_flight, llm.in_flight)
            try:
                if llm.before is not None and body is not None:
                    await llm.before(body)
                else:
                    await asyncio.sleep(llm.delay_s)
            finally:
                llm.in_flight -= 1

        @app.post("/v1/chat/completions")
        async def chat(body: dict[str, Any]) -> Any:
            llm.requests.append(body)
            if llm.delay_s or llm.before is not None:
                await wait(body)
            if llm.refuse_response_format and "response_format" in body:
                return error(400, "response_format is not supported by this server")
            known = DIALECT_SCHEMA_FIELDS[llm.dialect]
            unknown = [f for f in ("response_format", "guided_json", "json_schema") if f in body and f not in known]
            if llm.strict_fields and unknown:
                return error(400, f"unknown field(s) {unknown} for {llm.dialect}")
            llm.schemas.append(schema_sent(body, known))
            out = llm._next(body)
            if isinstance(out, int):
                return error(out, "scripted failure")
            reply: dict[str, Any] = {
                "id": f"c{len(llm.requests)}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
            }
            if llm.dialect == "ollama":
                reply["system_fingerprint"] = "fp_ollama"
            elif llm.dialect == "llamacpp":
                reply["timings"] = {"prompt_n": 100, "predicted_n": 20, "prompt_ms": 1.0, "predicted_ms": 1.0}
            elif llm.dialect == "openai":
                reply["system_fingerprint"] = "fp_scripted"
            return reply

        @app.post("/v1/messages")
        async def messages(body: dict[str, Any]) -> Any:
            llm.requests.append(body)
            if llm.delay_s:
                await wait()
            forced = (body.get("tool_choice") or {}).get("name")
            tools = {t["name"]: t for t in body.get("tools", [])}
            if llm.refuse_response_format and tools:
                return JSONResponse(
                    {"type": "error", "error": {"type": "invalid_request_error", "message": "tools not supported"}},
                    status_code=400,
                )
            llm.schemas.append(tools[forced]["input_schema"] if forced in tools else None)
            out = llm._next(body)
            if isinstance(out, int):
                return JSONResponse(
                    {"type": "error", "error": {"type": "api_error", "message": "scripted failure"}}, status_code=out
                )
            block: dict[str, Any] = {"type": "text", "text": out}
            if forced in tools:
                try:
                    parsed = json.loads(out)
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict):
                    block = {"type": "tool_use", "id": f"toolu_{len(llm.requests)}", "name": forced, "input": parsed}
            return {
                "id": f"msg_{len(llm.requests)}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [block],
                "stop_reason": "tool_use" if block["type"] == "tool_use" else "end_turn",
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
