"""``tern channels find / list / import`` as a subprocess against real PostgreSQL: output, JSON, exit statuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import env_without_services

ROOT = Path(__file__).resolve().parent.parent


def tern(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starters.cli", "channels", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.fixture
def env(pg_dsn: str, tmp_path: Path) -> dict[str, str]:
    return env_without_services(tmp_path, TERN_DATABASE__URL=pg_dsn, TERN_ARIEL__EMBEDDING_PROVIDER="none")


def test_find_list_and_import(env: dict[str, str], tmp_path: Path) -> None:
    found = tern(env, "find", "cav 1 fwd pwr", "--json", "--limit", "3")
    assert found.returncode == 0, found.stderr
    doc = json.loads(found.stdout)
    assert doc["mode_used"] == "keyword" and len(doc["hits"]) == 3
    assert doc["hits"][0]["name"] == "SR:RF:CAVITY:01:POWER:FWD" and doc["hits"][0]["units"] == "kW"

    text = tern(env, "find", "stored beam current", "--mode", "hybrid")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0].startswith(" 1. SR:DIAG:DCCT:01:CURRENT:RB")
    assert "Hybrid search used keyword search only" in text.stderr

    listed = tern(env, "list", "--under", "SR:RF", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(n["path"], n["channels"]) for n in json.loads(listed.stdout)] == [
        ("SR:RF:CAVITY", 28),
        ("SR:RF:KLYSTRON", 12),
    ]
    top = tern(env, "list")
    assert top.stdout.splitlines()[0] == "BR  (90 channels)  booster ring"

    csv = tmp_path / "extra.csv"
    csv.write_text("name,description,aliases\nLN:GUN:HV,Electron gun high voltage,GUNHV\n")
    first = tern(env, "import", str(csv), "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"file": str(csv), "channels": 1, "added": 1, "updated": 0, "unchanged": 0}
    again = tern(env, "import", str(csv))
    assert again.returncode == 0 and "0 added, 0 updated, 1 unchanged" in again.stdout
    assert json.loads(tern(env, "find", "gunhv", "--json").stdout)["hits"][0]["name"] == "LN:GUN:HV"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["find", "beam", "--mode", "fuzzy"], "unknown mode 'fuzzy'"),
        (["find", "beam", "--limit", "0"], "--limit must be between 1 and 100"),
        (["find", "  "], "the query is empty"),
        (["find", "x" * 501], "the query has 501 characters; the limit is 500"),
        (["import", "/nonexistent/channels.csv"], "channel file not found"),
    ],
)
def test_bad_input_exits_2_before_contacting_anything(tmp_path: Path, args: list[str], message: str) -> None:
    proc = tern(env_without_services(tmp_path), *args)  # nothing listens: a connection attempt would exit 1
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr


def test_bad_import_file_names_the_line_and_writes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[\n {"name": "A:B"},\n {"name": "bad name"}\n]\n')
    proc = tern(env, "import", str(bad))
    assert proc.returncode == 2
    assert f"{bad}: line 3: channel name must be" in proc.stderr
    unknown = tern(env, "list", "--under", "A")
    assert unknown.returncode == 2 and "no channels under 'A'" in unknown.stderr


def test_unreachable_database_exits_1(tmp_path: Path) -> None:
    proc = tern(env_without_services(tmp_path), "find", "beam current")
    assert proc.returncode == 1
    assert "cannot connect to PostgreSQL" in proc.stderr
