"""Ingestion adapters: turn a logbook export or service into validated ``LogbookEntry`` objects.

Every adapter is an async iterator of ``(cursor, item)`` pairs, where ``item`` is a ``LogbookEntry`` or a
``BadRecord`` (position and reason: a bad record is reported and the batch goes on) and ``cursor`` is an opaque
string that resumes the source just after that item (a byte offset in a JSONL file, a record index in a JSON
file, a time window and index for the ALS HTTP service). ``read_page`` cuts one page out of any adapter; the
ingestion workflow calls it page by page, so a source of any size is read in bounded steps and a crash resumes
at the last cursor.

Formats (samples in ``shared/data/osprey``), one module each:

=============  ===============  =====================================================================
name           module           source
=============  ===============  =====================================================================
``als``        ``als``          ALS eLog export, JSON lines: id, timestamp (Unix seconds), author,
                                subject, details, category (comma list), tag, linkedto, level,
                                attachments
``als-http``   ``als_http``     the ALS eLog service: ``GET URL?op=retrieve&start=<unix s>&end=<unix s>``
                                per time window, answering a JSON list (or JSON lines) of ALS records;
                                retried with exponential backoff
``jlab``       ``jlab``         JLab logbook JSON list: lognumber, created.timestamp, author, title,
                                body.content, books, tags, attachments
``ornl``       ``ornl``         ORNL/SNS logbook JSON list: ID, logbook, event_time, entry_time
                                (ISO 8601), author, title, content, attachments
``generic``    ``generic``      ``{"entries": [{id, timestamp (ISO 8601), author, text, tags, title?}]}``
``demo``       ``demo``         ``{"entries": [{id, when: {days_ago, time}, author, title, text, tags,
                                categories}]}``
``elog``       ``elog``         a PSI ELOG server: publishing only (``Adapter.publish``), no ingestion
=============  ===============  =====================================================================

Publishing (logbook write-back, ``tern.ariel.publish``): an adapter whose logbook has a documented write API
sets ``Adapter.publish`` (a ``base.Publisher``); today ``elog`` and ``jlab`` (``jlab_api``: the JLab logbook
server). The others leave it None and a publish to them is refused with "publishing not supported by adapter X"
before any approval is asked.

Shared pieces: ``base`` (errors, ``AdapterOptions``, ``Page``, the ``Adapter`` description), ``records``
(field parsers and ``to_item``, which validates one record or reports it as a ``BadRecord``), ``files`` (JSON
and JSON-lines file readers, run in a worker thread) and ``registry`` (``register``, ``get_adapter``, and the
entry points ``iter_entries``, ``read_page``, ``source_total``, ``collect``, ``check_adapter`` that take an
adapter's name).

The registry: this package registers the formats above, in the order of the table, when it is imported;
``adapter_names()`` lists what is registered, and an unknown name raises ``AdapterError`` listing them.

How to add a format:

1. Write ``tern/ariel/adapters/<format>.py`` with a mapper ``<format>_fields(rec, opts) -> dict`` (one raw
   record to ``LogbookEntry`` fields; use ``records.unix_ts``/``iso_ts``/``split_list``/``attachments``, and
   let a missing field raise ``KeyError``: ``to_item`` turns it into a ``BadRecord``) and
   ``ADAPTER = json_list_adapter("<name>", <format>_fields)`` (or ``jsonl_adapter`` for JSON lines). A
   service builds ``Adapter(name, items, total, incremental_source_system)`` itself, as ``als_http`` does.
2. Add the module to the ``register`` loop below. Tests: a sample in ``tests/ariel/data`` and a case in
   ``tests/ariel/test_adapters.py``.
3. Add the name to ``ADAPTERS`` in ``starters/ariel_cli.py`` (kept as a literal so ``tern --help`` does not
   import every adapter; ``tests/test_cli_startup.py`` checks it equals the registry).
"""

from __future__ import annotations

from tern.ariel.adapters import als, als_http, demo, elog, generic, jlab, ornl
from tern.ariel.adapters.base import Adapter, AdapterError, AdapterOptions, BadRecord, Item, Page, SourceUnavailable
from tern.ariel.adapters.registry import (
    adapter_names,
    check_adapter,
    collect,
    get_adapter,
    iter_entries,
    read_page,
    register,
    source_total,
)

for _format in (als, als_http, jlab, ornl, generic, demo, elog):
    register(_format.ADAPTER)

__all__ = [
    "Adapter",
    "AdapterError",
    "AdapterOptions",
    "BadRecord",
    "Item",
    "Page",
    "SourceUnavailable",
    "adapter_names",
    "check_adapter",
    "collect",
    "get_adapter",
    "iter_entries",
    "read_page",
    "register",
    "source_total",
]
