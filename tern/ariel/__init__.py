"""ARIEL: the electronic-logbook search service (entries, ingestion adapters, storage, search)."""
