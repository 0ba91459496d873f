"""ARIEL search latency from the command line against the HTTP API (issue 17: "the CLI does not load models").

Corpus: the 73 sample entries, ingested and embedded with the configured provider (default ``onnx``) into a
throwaway embedded PostgreSQL. Timed, each ``--runs`` times, interleaved:

- ``tern ariel search Q --mode hybrid --json`` as a fresh process (``python -m starters.cli``): process start,
  imports, settings, the pool, the lazily loaded embedding runtime, the search;
- the same command with ``TERN_ARIEL__API_URL`` pointing at the API below: the CLI sends the search there;
- the same search through ``tern ariel serve`` (uvicorn, warm: its embedder is loaded by a first request), as
  ``GET /search`` with httpx on one connection;
- process start alone: ``python -m starters.cli --help``.

Target: CLI <= 1.5 x (API + process start). Run:
``.venv/bin/python -m benchmarks.ariel_cli_latency [--runs 10] [--json results.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from benchmarks._common import embedded_postgres, percentile
from benchmarks.ariel_quality import DATA, NOW, SOURCES
from tern.ariel.adapters import AdapterOptions
from tern.ariel.embeddings import OnnxEmbedder
from tern.ariel.ingest import embed_pending, ingest_source
from tern.db import create_pool
from tern.embedded.net import free_port

QUERY = "the electron source needed a new emitter"


async def load(dsn: str) -> None:
    pool = await create_pool(dsn)
    try:
        for adapter, name in SOURCES:
            await ingest_source(pool, adapter, str(DATA / name), AdapterOptions(now=NOW))
        emb = OnnxEmbedder()
        while (await embed_pending(pool, emb, batch_size=64)).processed:
            pass
    finally:
        await pool.close()


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    ms = 1000 * (time.perf_counter() - t0)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd}: {proc.stderr[-2000:]}")
    return ms, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args()
    with embedded_postgres() as pg:
        asyncio.run(load(pg.dsn))
        env = {
            **os.environ,
            "TERN_DATABASE__URL": pg.dsn,
            "TERN_ARIEL__BACKEND": "postgres",
            "TERN_ARIEL__EMBEDDING_PROVIDER": "onnx",
            "TERN_LLM__PROVIDER": "none",
        }
        port = free_port()
        cli = [sys.executable, "-m", "starters.cli"]
        api = subprocess.Popen(
            [*cli, "ariel", "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                for _ in range(300):
                    try:
                        if http.get("/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                params: dict[str, str | int] = {"q": QUERY, "mode": "hybrid", "limit": 10}
                warm = http.get("/search", params=params).json()  # loads the API's embedder
                assert warm["mode_used"] == "hybrid", warm
                times: dict[str, list[float]] = {
                    "cli_search": [],
                    "cli_search_via_api": [],
                    "api_search": [],
                    "process_start": [],
                }
                search = [*cli, "ariel", "search", QUERY, "--mode", "hybrid", "--json"]
                via_api = {**env, "TERN_ARIEL__API_URL": f"http://127.0.0.1:{port}"}
                for _ in range(args.runs):
                    for name, e in (("cli_search", env), ("cli_search_via_api", via_api)):
                        ms, stdout = timed(search, e)
                        assert json.loads(stdout)["mode_used"] == "hybrid"
                        times[name].append(ms)
                    t0 = time.perf_counter()
                    http.get("/search", params=params).raise_for_status()
                    times["api_search"].append(1000 * (time.perf_counter() - t0))
                    times["process_start"].append(timed([*cli, "--help"], env)[0])
        finally:
            api.terminate()
            api.wait(timeout=30)
    figures = {
        name: {"p50_ms": percentile(v, 50), "p95_ms": percentile(v, 95), "runs": len(v)} for name, v in times.items()
    }
    bound = figures["api_search"]["p50_ms"] + figures["process_start"]["p50_ms"]
    figures["ratio"] = {
        "cli_p50_over_api_plus_start_p50": figures["cli_search"]["p50_ms"] / bound,
        "cli_via_api_p50_over_api_plus_start_p50": figures["cli_search_via_api"]["p50_ms"] / bound,
    }
    print("| measure | p50 ms | p95 ms |\n| --- | --- | --- |")
    for name in ("cli_search", "cli_search_via_api", "api_search", "process_start"):
        print(f"| {name} | {figures[name]['p50_ms']:.0f} | {figures[name]['p95_ms']:.0f} |")
    for name, ratio in figures["ratio"].items():
        print(f"{name}: {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
