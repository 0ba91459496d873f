"""Archived history: a client of the EPICS Archiver Appliance retrieval API (:mod:`.client`), binning
(:mod:`.binning`), series (:mod:`.series`), and the embedded archiver that
serves the same API from PostgreSQL (:mod:`.server`, :mod:`.monitor`, :mod:`.backfill`). Time ranges are
parsed by :mod:`tern.models.timerange` (plans validate them). No Temporal import."""
