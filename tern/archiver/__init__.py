"""Archived history: a client of the EPICS Archiver Appliance retrieval API (:mod:`.client`), binning
(:mod:`.binning`), time ranges (:mod:`.timerange`), series (:mod:`.series`), and the embedded archiver that
serves the same API from PostgreSQL (:mod:`.server`, :mod:`.monitor`, :mod:`.backfill`). No Temporal import."""
