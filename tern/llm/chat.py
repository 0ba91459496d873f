"""Chat completions: the ``ChatProvider`` interface and an OpenAI-compatible implementation over httpx.

Tests replace the provider with their own object implementing ``complete``; nothing else talks to an LLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel

from tern import metrics, tracing
from tern.config import TernSettings


class LLMError(RuntimeError):
    """The LLM could not answer (endpoint unreachable, HTTP error, malformed answer)."""


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


@runtime_checkable
class ChatProvider(Protocol):
    model: str

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int = 800, temperature: float = 0.0
    ) -> str:
        """The assistant's reply text. Raises ``LLMError``."""
        ...


class OpenAICompatibleChat:
    """``POST {base_url}/chat/completions`` (OpenAI, vLLM, Ollama, llama.cpp server...).

    Args:
        base_url: API root including the version, e.g. ``http://127.0.0.1:8000/v1``.
        model: model name sent in the request.
        api_key: bearer token, if the endpoint needs one.
        timeout_s: request timeout in seconds.
        transport: an httpx transport (tests).
        role: what the calls are for (``codegen``, ``rag``, ``chat``): the ``role`` label of
            ``tern_llm_tokens_total`` and an attribute of each call's span.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        role: str = "chat",
    ) -> None:
        self.model = model
        self.role = role
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/", headers=headers, timeout=timeout_s, transport=transport
        )

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int = 800, temperature: float = 0.0
    ) -> str:
        body = {
            "model": self.model,
            "messages": [m.model_dump() for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        with tracing.span("llm.chat", {"llm.model": self.model, "llm.role": self.role}) as span:
            try:
                resp = await self._client.post("chat/completions", json=body)
                resp.raise_for_status()
                reply = resp.json()
                content = reply["choices"][0]["message"]["content"]
            except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
                raise LLMError(f"chat endpoint {self._client.base_url}: {exc!r}") from exc
            self._count_usage(reply.get("usage"), span)
        if not isinstance(content, str):
            raise LLMError(f"chat endpoint {self._client.base_url}: reply has no text content")
        return content

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
        await self._client.aclose()


def make_chat_provider(settings: TernSettings, role: str = "chat") -> ChatProvider | None:
    """The provider configured by ``settings.llm_provider`` (None for 'none'); ``role`` labels its token counts
    and spans (see :class:`OpenAICompatibleChat`)."""
    if settings.llm_provider == "openai":
        assert settings.llm_url
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return OpenAICompatibleChat(settings.llm_url, settings.llm_model, key, settings.llm_timeout_s, role=role)
    return None
