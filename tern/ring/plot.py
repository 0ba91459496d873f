"""The predicted orbit change as a picture: a PNG of the change at every BPM (x and y, mm, against the BPM index)
for the chat cards (:mod:`tern.chat.bridge` attaches it to a write's card).

Drawn with matplotlib's Agg backend (no display). The numbers plotted travel inside the PNG too, as a ``tEXt``
chunk (PNG specification 11.3.4) keyed :data:`DATA_KEY` holding ``{"x_mm": [...], "y_mm": [...]}``: whoever holds
the picture can check what it shows against the prediction it came from.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

from tern.models.ring import PredictedEffect

DATA_KEY = "tern:orbit_change_mm"
FILE_NAME = "orbit-change.png"


def orbit_change_png(effect: PredictedEffect, title: str = "") -> bytes | None:
    """A PNG (about 900 x 450 px) of ``effect.orbit_change_mm``: x and y orbit change in mm against the BPM index
    (1 = the lattice's first monitor), with the plotted values in its ``tEXt`` chunk :data:`DATA_KEY`.

    Returns None when the effect has no per-BPM change (not predicted, no closed orbit, or predicted before the
    field existed). ``title``: a line above the plot (the channel and value, say)."""
    profile = effect.orbit_change_mm
    if not effect.predicted or not effect.closed_orbit_exists or not profile:
        return None
    return _png([p[0] for p in profile], [p[1] for p in profile], title)


def _png(x_mm: Sequence[float], y_mm: Sequence[float], title: str) -> bytes:
    from matplotlib.figure import Figure  # the object API: no pyplot state, safe from several threads

    fig = Figure(figsize=(9, 4.5), dpi=100)
    ax = fig.add_subplot()
    index = list(range(1, len(x_mm) + 1))
    ax.plot(index, x_mm, marker="o", markersize=3, linewidth=1, label="x")
    ax.plot(index, y_mm, marker="s", markersize=3, linewidth=1, label="y")
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.set_xlabel("BPM index")
    ax.set_ylabel("predicted orbit change (mm)")
    ax.set_title(title or "predicted orbit change at every BPM", fontsize=10)
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    data = json.dumps({"x_mm": list(x_mm), "y_mm": list(y_mm)}, separators=(",", ":"))
    fig.savefig(buf, format="png", metadata={DATA_KEY: data})
    return buf.getvalue()


def plotted_data(png: bytes) -> dict[str, list[float]]:
    """The values a PNG from :func:`orbit_change_png` shows (``{"x_mm": [...], "y_mm": [...]}``), read from its
    ``tEXt`` chunk. Raises ``ValueError`` when ``png`` is not a PNG or carries no such chunk."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(png)) as img:
            img.verify()
        with Image.open(io.BytesIO(png)) as img:
            text = dict(getattr(img, "text", {}))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"not a valid PNG: {exc}") from exc
    if DATA_KEY not in text:
        raise ValueError(f"the PNG carries no {DATA_KEY!r} text chunk")
    data = json.loads(text[DATA_KEY])
    return {"x_mm": [float(v) for v in data["x_mm"]], "y_mm": [float(v) for v in data["y_mm"]]}
