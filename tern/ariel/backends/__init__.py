"""Search backends behind one interface (``SearchBackend``), chosen by ``TernSettings.ariel_backend``."""

from tern.ariel.backends.base import SearchBackend, SearchIndexMissing

__all__ = ["SearchBackend", "SearchIndexMissing"]
