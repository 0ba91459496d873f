"""Chat completions through the official SDKs: the ``ChatProvider`` interface, ``OpenAIChat`` (any
OpenAI-compatible server) and ``AnthropicChat`` (the Messages API).

One client object per worker and role holds one connection pool (the SDK's ``httpx2`` client; up to
``llm_max_concurrency`` connections). SDK retries are off by default (``llm_max_retries``): retries with backoff
are the calling activity's retry policy, so they are visible in history. Neither the prompt nor the key is
logged here; errors carry the endpoint, the HTTP status and the server's message only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import httpx2
from pydantic import BaseModel

from tern import metrics, tracing
from tern.config import TernSettings

log = logging.getLogger(__name__)

SDK_LOGGERS = ("openai", "anthropic", "httpx2")
"""The SDKs log request options, prompts included, at DEBUG; their loggers are kept at INFO or above so that a
worker run with DEBUG logging does not write prompts (or anything read from the logbook) to its log."""


def _quiet_sdk_loggers() -> None:
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


LLMRole = Literal["planner", "code", "answer"]
SchemaField = Literal["response_format", "guided_json", "json_schema"]
SCHEMA_FIELDS: tuple[SchemaField, ...] = ("response_format", "guided_json", "json_schema")
PLAN_TOOL = "submit_plan"
"""The tool an Anthropic model is made to call (``tool_choice``) when a schema is asked for: its input is the plan."""


def schema_request(field: SchemaField, schema: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``chat.completions.create`` that ask an OpenAI-compatible server for output
    matching ``schema`` (a JSON Schema object), by dialect:

    - ``response_format``: ``response_format={"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``
      (OpenAI structured outputs; Ollama >= 0.5 maps it to its ``format``; vLLM and llama.cpp's server accept it);
    - ``guided_json``: ``extra_body={"guided_json": schema}`` (vLLM's guided decoding parameter);
    - ``json_schema``: ``extra_body={"json_schema": schema}`` (llama.cpp server: converted to a GBNF grammar).
    """
    if field == "response_format":
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "plan", "schema": schema, "strict": False},
            }
        }
    if field == "guided_json":
        return {"extra_body": {"guided_json": schema}}
    if field == "json_schema":
        return {"extra_body": {"json_schema": schema}}
    raise ValueError(f"unknown schema field {field!r}")


class LLMError(RuntimeError):
    """The LLM could not answer (endpoint unreachable, HTTP error, malformed answer).

    ``retryable`` is False when repeating the same request cannot help (HTTP 400/401/403/404/422: a bad request,
    key or model); the calling activity raises a non-retryable failure then.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatReply(BaseModel):
    """One reply: its text, the model that answered and the tokens counted by the server (0 when not reported)."""

    text: str
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0


@runtime_checkable
class ChatProvider(Protocol):
    model: str

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int = 800, temperature: float = 0.0
    ) -> str:
        """The assistant's reply text. Raises ``LLMError``."""
        ...


_NOT_RETRYABLE = {400, 401, 403, 404, 422}


def _http_client(max_connections: int, transport: Any = None) -> httpx2.AsyncClient:
    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx2.AsyncClient(limits=limits, transport=transport)


class _SDKChat:
    """Shared part of the SDK clients: ``complete`` is ``reply(...).text``."""

    model: str
    endpoint: str
    role: str = "chat"  # what the calls are for (planner, code, answer): a label of tern_llm_tokens_total

    async def reply(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 800,
        temperature: float = 0.0,
        json_schema: dict[str, Any] | None = None,
    ) -> ChatReply:
        """One call (see the subclass's ``_reply``), in an ``llm.chat`` span (model, role, tokens), its tokens
        counted in ``tern_llm_tokens_total{role,kind}``. Raises ``LLMError``."""
        with tracing.span("llm.chat", {"llm.model": self.model, "llm.role": self.role}) as span:
            r = await self._reply(messages, max_tokens=max_tokens, temperature=temperature, json_schema=json_schema)
            for kind, n in (("prompt", r.prompt_tokens), ("completion", r.completion_tokens)):
                metrics.llm_tokens.labels(role=self.role, kind=kind).inc(n)
                span.set_attribute(f"llm.tokens.{kind}", n)
        return r

    async def _reply(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        json_schema: dict[str, Any] | None,
    ) -> ChatReply:
        raise NotImplementedError

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int = 800, temperature: float = 0.0
    ) -> str:
        """The assistant's reply text. Raises ``LLMError``."""
        return (await self.reply(messages, max_tokens=max_tokens, temperature=temperature)).text

    def _error(self, exc: Exception) -> LLMError:
        status = getattr(exc, "status_code", None)
        kind = f"HTTP {status}" if status else type(exc).__name__
        return LLMError(f"chat endpoint {self.endpoint}: {kind}: {exc}", retryable=status not in _NOT_RETRYABLE)


class OpenAIChat(_SDKChat):
    """``POST {base_url}/chat/completions`` through the ``openai`` SDK (OpenAI, vLLM, Ollama, llama.cpp server,
    LiteLLM/CBORG-style gateways).

    Args:
        base_url: API root including the version, e.g. ``http://127.0.0.1:8000/v1``.
        model: model name sent in the request.
        api_key: bearer token, if the endpoint needs one (local servers accept any; "none" is sent then).
        timeout_s: request timeout in seconds.
        max_retries: SDK retries (0: retries are the activity's).
        max_connections: connection pool size.
        transport: an ``httpx2`` transport (tests).
        json_schema: send the schema when one is asked for (in the field ``schema_field`` names); a server that
            answers 400 to it is asked again without it, and not asked with it again by this client.
        schema_field: how the schema travels (:data:`SCHEMA_FIELDS`): ``"response_format"`` (OpenAI structured
            outputs, also Ollama >= 0.5, vLLM and llama.cpp's server), ``"guided_json"`` (vLLM's extra parameter)
            or ``"json_schema"`` (llama.cpp server's own field, turned into a grammar).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        *,
        max_retries: int = 0,
        max_connections: int = 50,
        transport: Any = None,
        json_schema: bool = True,
        schema_field: SchemaField = "response_format",
    ) -> None:
        import openai

        if schema_field not in SCHEMA_FIELDS:
            raise ValueError(f"schema_field {schema_field!r} is not one of {', '.join(SCHEMA_FIELDS)}")
        _quiet_sdk_loggers()
        self.model = model
        self.endpoint = base_url.rstrip("/")
        self._schema_ok = json_schema
        self.schema_field = schema_field
        self._client = openai.AsyncOpenAI(
            base_url=self.endpoint,
            api_key=api_key or "none",
            timeout=timeout_s,
            max_retries=max_retries,
            http_client=_http_client(max_connections, transport),
        )

    async def _reply(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 800,
        temperature: float = 0.0,
        json_schema: dict[str, Any] | None = None,
    ) -> ChatReply:
        """One chat completion. ``json_schema`` (a JSON Schema object) asks for structured output where the server
        supports it, in the field ``schema_field`` names (:func:`schema_request`). Raises ``LLMError``."""
        import openai

        extra: dict[str, Any] = {}
        if json_schema is not None and self._schema_ok:
            extra = schema_request(self.schema_field, json_schema)
        body: Any = [m.model_dump() for m in messages]
        try:
            try:
                resp = await self._client.chat.completions.create(
                    model=self.model, messages=body, max_tokens=max_tokens, temperature=temperature, **extra
                )
            except openai.BadRequestError:
                if not extra:
                    raise
                log.info("chat endpoint %s refused response_format json_schema; using instructions", self.endpoint)
                self._schema_ok = False
                resp = await self._client.chat.completions.create(
                    model=self.model, messages=body, max_tokens=max_tokens, temperature=temperature
                )
        except openai.APIError as exc:
            raise self._error(exc) from exc
        try:
            content = resp.choices[0].message.content
        except (AttributeError, IndexError, TypeError) as exc:
            raise LLMError(f"chat endpoint {self.endpoint}: reply has no choices") from exc
        if not isinstance(content, str):
            raise LLMError(f"chat endpoint {self.endpoint}: reply has no text content")
        usage = resp.usage
        return ChatReply(
            text=content,
            model=resp.model or self.model,
            prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
            completion_tokens=(usage.completion_tokens or 0) if usage else 0,
        )

    def _count_usage(self, usage: Any, span: tracing.Span) -> None:
        """Count the reply's ``usage`` (OpenAI chat completions: ``prompt_tokens``, ``completion_tokens``) in
        ``tern_llm_tokens_total`` and on the span; a reply without usage counts nothing."""
        if not isinstance(usage, dict):
            return
        for kind in ("prompt", "completion"):
            n = usage.get(f"{kind}_tokens")
            if isinstance(n, int) and n >= 0:
                metrics.llm_tokens.labels(role=self.role, kind=kind).inc(n)
                span.set_attribute(f"llm.tokens.{kind}", n)

    async def aclose(self) -> None:
        await self._client.close()


OpenAICompatibleChat = OpenAIChat
"""The former name of :class:`OpenAIChat` (it was an httpx client before the SDK)."""


class AnthropicChat(_SDKChat):
    """``POST {base_url}/v1/messages`` through the ``anthropic`` SDK (Anthropic's Messages API).

    System messages become the request's ``system`` text. Structured output is Anthropic tool use: when a schema
    is asked for (and ``json_schema`` is True) the request offers one tool, :data:`PLAN_TOOL`, whose
    ``input_schema`` is the schema, and forces it with ``tool_choice``; the reply's ``tool_use`` input is returned
    as JSON text. A server that answers 400 to the tool is asked again without it (the schema is also in the
    planner's system message) and not asked with it again by this client. Args as :class:`OpenAIChat`;
    ``base_url`` is the API root without ``/v1`` (None: the SDK's default).
    """

    def __init__(
        self,
        base_url: str | None,
        model: str,
        api_key: str | None,
        timeout_s: float = 60.0,
        *,
        max_retries: int = 0,
        max_connections: int = 50,
        transport: Any = None,
        json_schema: bool = True,
    ) -> None:
        import anthropic

        _quiet_sdk_loggers()
        self.model = model
        self._schema_ok = json_schema
        self.endpoint = (base_url or "anthropic").rstrip("/")
        self._client = anthropic.AsyncAnthropic(
            base_url=base_url.rstrip("/") if base_url else None,
            api_key=api_key,
            timeout=timeout_s,
            max_retries=max_retries,
            http_client=_http_client(max_connections, transport),
        )

    async def _reply(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 800,
        temperature: float = 0.0,
        json_schema: dict[str, Any] | None = None,
    ) -> ChatReply:
        """One Messages API call; ``json_schema`` forces the :data:`PLAN_TOOL` tool (class docstring). ``temperature``
        is ignored (the current Messages API has no such parameter). Raises ``LLMError``."""
        import anthropic

        system = "\n\n".join(m.content for m in messages if m.role == "system")
        turns: Any = [{"role": m.role, "content": m.content} for m in messages if m.role != "system"]
        tools: dict[str, Any] = {}
        if json_schema is not None and self._schema_ok:
            tools = {
                "tools": [
                    {
                        "name": PLAN_TOOL,
                        "description": "Submit the plan (the JSON object).",
                        "input_schema": json_schema,
                    }
                ],
                "tool_choice": {"type": "tool", "name": PLAN_TOOL},
            }

        async def create(extra: dict[str, Any]) -> Any:
            return await self._client.messages.create(
                model=self.model, max_tokens=max_tokens, messages=turns, system=system or anthropic.omit, **extra
            )

        try:
            try:
                resp = await create(tools)
            except anthropic.BadRequestError:
                if not tools:
                    raise
                log.info("chat endpoint %s refused tool use for the plan schema; using instructions", self.endpoint)
                self._schema_ok = False
                resp = await create({})
        except anthropic.APIError as exc:
            raise self._error(exc) from exc
        blocks = list(resp.content or [])
        used = [b for b in blocks if getattr(b, "type", "") == "tool_use" and getattr(b, "name", "") == PLAN_TOOL]
        if used:
            text = json.dumps(used[0].input)
        else:
            text = "".join(getattr(block, "text", "") for block in blocks)
        if not text:
            raise LLMError(f"chat endpoint {self.endpoint}: reply has no text content")
        return ChatReply(
            text=text,
            model=resp.model or self.model,
            prompt_tokens=resp.usage.input_tokens or 0,
            completion_tokens=resp.usage.output_tokens or 0,
        )

    async def aclose(self) -> None:
        await self._client.close()


LLMClient = OpenAIChat | AnthropicChat


def make_chat_provider(settings: TernSettings, role: LLMRole = "answer") -> LLMClient | None:
    """The client configured by ``settings.llm.provider`` for ``role`` (its model from
    ``settings.llm.model_for(role)``; ``role`` also labels its token counts and spans), or None for 'none'."""
    key = settings.llm.api_key.get_secret_value() if settings.llm.api_key else None
    model = settings.llm.model_for(role)
    common: dict[str, Any] = {
        "timeout_s": settings.llm.timeout_s,
        "max_retries": settings.llm.max_retries,
        "max_connections": settings.llm.max_concurrency,
    }
    client: LLMClient
    if settings.llm.provider == "openai":
        assert settings.llm.url
        client = OpenAIChat(
            settings.llm.url,
            model,
            key,
            json_schema=settings.llm.json_schema,
            schema_field=settings.llm.schema_field,
            **common,
        )
    elif settings.llm.provider == "anthropic":
        client = AnthropicChat(settings.llm.url, model, key, json_schema=settings.llm.json_schema, **common)
    else:
        return None
    client.role = role
    return client
