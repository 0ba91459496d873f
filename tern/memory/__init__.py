"""Operator memory: per-user notes in PostgreSQL (:mod:`.store`), searched by keyword and embedding."""
