"""Tern domain core: models, config, ARIEL, control-system connectors, sandbox, the embedded stack.

Nothing in this package imports Temporal; workflows and activities adapt it.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
