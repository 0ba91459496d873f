"""Every adapter on the shared samples and on broken input; ALS over real HTTP with retries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tern.ariel.adapters import AdapterError, AdapterOptions, BadRecord, collect, read_page, source_total
from tests.ariel.conftest import DATA, NOW


async def test_als_jsonl_maps_fields() -> None:
    entries, bad = await collect("als", str(DATA / "als_sample_entries.jsonl"))
    assert not bad and len(entries) == 12
    e = {x.entry_id: x for x in entries}["10003"]
    assert e.source_system == "als" and e.title == "Undulator temperature anomaly"
    assert e.timestamp == datetime(2024, 1, 1, 2, 0, tzinfo=UTC)
    assert e.tags == ["LOTO-2024-001"] and e.categories == ["Insertion Devices"]
    assert e.metadata["linked_to"] == "10001" and e.metadata["level"] == "entry"
    att = {x.entry_id: x for x in entries}["10012"].attachments
    assert [a.filename for a in att] == ["rf_trip_log.txt", "cavity3_photo.jpg"]
    assert att[1].type == "image/jpeg"


async def test_jlab_ornl_generic_demo() -> None:
    jlab, bad = await collect("jlab", str(DATA / "jlab_sample_entries.json"))
    assert not bad and len(jlab) == 7
    assert jlab[1].entry_id == "J20002" and jlab[1].logbook == "CEBAF Operations"
    assert jlab[1].raw_text.startswith("Klystron SL-5A") and jlab[1].tags == ["klystron", "fault"]
    ornl, bad = await collect("ornl", str(DATA / "ornl_sample_entries.json"))
    assert not bad and ornl[0].timestamp == datetime(2024, 1, 1, 13, 0, tzinfo=UTC)
    assert ornl[0].metadata["entry_time"] == "2024-01-01T13:15:00Z" and ornl[0].logbook == "SNS Operations"
    gen, bad = await collect("generic", str(DATA / "generic_sample_entries.json"))
    assert not bad and gen[0].title.startswith("System startup")
    demo, bad = await collect("demo", str(DATA / "demo_logbook.json"), AdapterOptions(now=NOW))
    assert not bad and len(demo) == 28
    assert demo[0].timestamp == datetime(2024, 3, 3, 8, 30, tzinfo=UTC)  # 17 days before NOW, at 08:30


async def test_bad_records_are_reported_and_the_batch_goes_on(tmp_path) -> None:
    good = {"id": "1", "timestamp": "1704067200", "author": "a", "subject": "ok", "details": "fine"}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "id": "2", "timestamp": "yesterday"}),
        json.dumps({"timestamp": "1704067200"}),
        "",
        json.dumps([1, 2]),
        json.dumps({**good, "id": "3"}),
    ]
    src = tmp_path / "als.jsonl"
    src.write_text("\n".join(lines) + "\n")
    entries, bad = await collect("als", str(src))
    assert [e.entry_id for e in entries] == ["1", "3"]
    assert [(b.position, b.reason.split(":")[0]) for b in bad] == [
        (1, "line is not JSON"),
        (2, "malformed record"),
        (3, "missing field 'id'"),
        (4, "record is a list, not an object"),
    ]


async def test_whole_source_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(AdapterError, match="not found"):
        await collect("jlab", str(tmp_path / "missing.json"))
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(AdapterError, match="not valid JSON"):
        await collect("ornl", str(tmp_path / "x.json"))
    with pytest.raises(AdapterError, match=r"unknown adapter .mantis.*als-http"):
        await collect("mantis", str(tmp_path / "x.json"))
    with pytest.raises(AdapterError, match="the elog adapter only publishes entries"):
        await collect("elog", str(tmp_path / "x.json"))


@pytest.mark.parametrize(
    ("adapter", "name", "n"), [("als", "als_logbook_entries.jsonl", 15), ("demo", "demo_logbook.json", 28)]
)
async def test_pages_resume_at_the_cursor(adapter: str, name: str, n: int) -> None:
    src = str(DATA / name)
    opts = AdapterOptions(now=NOW)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await read_page(adapter, src, cursor, 4, opts)
        pages += 1
        seen += [i.entry_id for i in page.items if not isinstance(i, BadRecord)]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    whole, _ = await collect(adapter, src, opts)
    assert seen == [e.entry_id for e in whole] and len(seen) == n
    assert pages == -(-n // 4)  # no empty trailing page
    assert await source_total(adapter, src) == n


async def test_als_http_windows_with_retries(als_server) -> None:
    """A real HTTP server (uvicorn on loopback) that fails twice with 503 before answering."""
    url, calls = als_server(fail_first=2)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    opts = AdapterOptions(
        since=start,
        until=start + timedelta(days=1),
        window=timedelta(hours=6),
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
    )
    entries, bad = await collect("als-http", url, opts)
    assert not bad
    assert sorted(e.entry_id for e in entries) == sorted(
        [f"E{i:03d}" for i in range(1, 16)] + [f"100{i:02d}" for i in range(1, 13)]
    )
    windows = [(c["start"], c["end"]) for c in calls if c["status"] == 200]
    assert len(windows) == 4 and windows[0] == (int(start.timestamp()), int(start.timestamp()) + 6 * 3600)
    assert [c["status"] for c in calls[:3]] == [503, 503, 200]


async def test_als_http_gives_up_and_4xx_is_not_retried(als_server) -> None:
    from tern.ariel.adapters import SourceUnavailable

    url, calls = als_server(fail_first=100)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    opts = AdapterOptions(
        since=start, until=start + timedelta(hours=1), attempts=3, backoff_initial_s=0.01, backoff_max_s=0.02
    )
    with pytest.raises(SourceUnavailable, match=r"503.*after 3 attempts"):
        await collect("als-http", url, opts)
    assert len(calls) == 3
    url404, calls404 = als_server(status=404)
    with pytest.raises(AdapterError, match="HTTP 404"):
        await collect("als-http", url404, opts)
    assert len(calls404) == 1


async def test_a_registered_format_is_read_by_name(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a format is one mapper and one ``register``: every entry point then reads it by its name."""
    from tern.ariel.adapters import adapter_names, check_adapter, register
    from tern.ariel.adapters import registry as registry_module
    from tern.ariel.adapters.files import json_list_adapter
    from tern.ariel.adapters.records import iso_ts

    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))  # undone after the test
    assert adapter_names() == ("als", "als-http", "jlab", "ornl", "generic", "demo", "elog")

    def fields(rec: dict, opts: AdapterOptions) -> dict:
        return {"entry_id": opts.id_prefix + rec["n"], "source_system": "tiny", "timestamp": iso_ts(rec["t"])}

    src = tmp_path / "tiny.json"
    records = [{"n": "1", "t": "2024-01-01T00:00:00Z"}, {"t": "x"}, {"n": "3", "t": "2024-01-01T00:00:00"}]
    src.write_text(json.dumps(records))
    adapter = register(json_list_adapter("tiny", fields))
    check_adapter("tiny")
    assert adapter_names()[-1] == "tiny" and register(adapter) is adapter  # registering it again is harmless
    with pytest.raises(ValueError, match="already registered"):
        register(json_list_adapter("tiny", fields))
    entries, bad = await collect("tiny", str(src), AdapterOptions(id_prefix="T"))
    assert [e.entry_id for e in entries] == ["T1"] and entries[0].source_system == "tiny"
    assert [(b.position, b.reason) for b in bad] == [
        (1, "missing field 'n'"),
        (2, "malformed record: timestamp '2024-01-01T00:00:00' has no timezone"),
    ]
    page = await read_page("tiny", str(src), None, 2)
    assert len(page.items) == 2 and page.next_cursor == "2"
    assert await source_total("tiny", str(src)) == 3
    with pytest.raises(AdapterError, match=r"unknown adapter 'mantis'.*elog, tiny"):
        check_adapter("mantis")
