"""Chat completions: the ``ChatProvider`` interface and an OpenAI-compatible implementation over httpx.

Tests replace the provider with their own object implementing ``complete``; nothing else talks to an LLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel

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
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
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
        try:
            resp = await self._client.post("chat/completions", json=body)
            resp.raise_for_status()
            content = resp.json()["choices"][0]["message"]["content"]
        except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise LLMError(f"chat endpoint {self._client.base_url}: {exc!r}") from exc
        if not isinstance(content, str):
            raise LLMError(f"chat endpoint {self._client.base_url}: reply has no text content")
        return content

    async def aclose(self) -> None:
        await self._client.aclose()


def make_chat_provider(settings: TernSettings) -> ChatProvider | None:
    """The provider configured by ``settings.llm_provider`` (None for 'none')."""
    if settings.llm_provider == "openai":
        assert settings.llm_url
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return OpenAICompatibleChat(settings.llm_url, settings.llm_model, key, settings.llm_timeout_s)
    return None
