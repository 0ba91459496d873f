"""The OpenAI-compatible chat and embeddings clients against an in-process HTTP app shaped like the OpenAI API,
and LLM enhancement (keywords and summary) of stored entries."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import httpx2
import pytest
from fastapi import FastAPI

from tern.ariel import store
from tern.ariel.embeddings import EmbeddingError, OpenAIEmbedder
from tern.ariel.ingest import parse_summary, summarize_pending
from tern.llm import ChatMessage, LLMError, OpenAICompatibleChat


def openai_like_app(seen: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        seen.append(body)
        text = body["messages"][-1]["content"]
        reply = '{"keywords": ["klystron", "fault"], "summary": "A klystron faulted."}' if "Klystron" in text else "no"
        return {
            "id": "c1",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        }

    @app.post("/v1/embeddings")
    async def embeddings(body: dict[str, Any]) -> dict[str, Any]:
        seen.append(body)
        return {
            "object": "list",
            "model": body["model"],
            "data": [
                {"object": "embedding", "index": i, "embedding": [3.0, 4.0]}
                for i, _ in reversed(list(enumerate(body["input"])))
            ],
        }

    return app


async def test_chat_and_embeddings_clients() -> None:
    seen: list[dict[str, Any]] = []
    transport = httpx.ASGITransport(app=openai_like_app(seen))
    chat_transport = httpx2.ASGITransport(app=openai_like_app(seen))  # the SDK's HTTP client is httpx2
    chat = OpenAICompatibleChat("http://llm/v1", "m1", api_key="k", transport=chat_transport)
    reply = await chat.complete([ChatMessage(role="user", content="Klystron?")], max_tokens=50)
    assert parse_summary(reply) == ("A klystron faulted.", ["klystron", "fault"])
    assert seen[0]["model"] == "m1" and seen[0]["max_tokens"] == 50
    emb = OpenAIEmbedder("http://llm/v1", "e1", transport=transport)
    assert await emb.probe() == 2
    assert await emb.embed(["a", "b"]) == [[0.6, 0.8], [0.6, 0.8]]  # unit length, put back in input order
    down = OpenAICompatibleChat("http://llm/v2", "m1", transport=chat_transport)
    with pytest.raises(LLMError, match="404"):
        await down.complete([ChatMessage(role="user", content="x")])
    with pytest.raises(EmbeddingError):
        await OpenAIEmbedder("http://llm/v2", "e1", transport=transport).embed(["x"])


def test_parse_summary_accepts_fenced_json_and_refuses_prose() -> None:
    assert parse_summary('```json\n{"keywords": ["a"], "summary": "s"}\n```') == ("s", ["a"])
    with pytest.raises(ValueError):
        parse_summary("I cannot do that")


async def test_summaries_are_stored_and_bad_replies_recorded(loaded_pool: asyncpg.Pool) -> None:
    llm = OpenAICompatibleChat("http://llm/v1", "m1", transport=httpx2.ASGITransport(app=openai_like_app([])))
    total = 0
    while (r := await summarize_pending(loaded_pool, llm, batch_size=40)).processed + r.failed:
        total += r.processed
    assert total >= 1 and r.remaining == 0
    async with loaded_pool.acquire() as conn:
        e = await store.get_entry(conn, "J20002")
        assert e is not None and e.summary == "A klystron faulted." and e.keywords == ["klystron", "fault"]
        err = await conn.fetchval("SELECT enhancement_error FROM ariel_entries WHERE entry_id = 'GEN-001'")
        assert err.startswith("unusable LLM reply")
        # keywords are searchable (weight C of the search vector)
        assert (
            await conn.fetchval("SELECT count(*) FROM ariel_entries WHERE search @@ to_tsquery('english', 'klystron')")
            >= 3
        )
