"""The documentation site builds strictly, and the README stays a short front door (issue 28).

``mkdocs build --strict`` (``mkdocs.yml``, sources in ``docs/``) fails on a broken link, a broken anchor, a page
missing from the nav or a missing page; the README must stay at most ~200 lines and link only to files inside the
repository (the design notes once lived at ``../shared/DESIGN.md``, a dead link in any clone). The generated CLI
reference (``docs/reference/cli.md``, from ``docs/gen_cli.py``) must equal what the typer app prints today.
MkDocs, Material and mkdocstrings come with the ``dev`` extra (and the ``docs`` extra that ``./dev docs`` uses).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 200
# Markdown links and images `[text](target)` and autolinks `<target>`; the target up to a space or ")".
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|<((?:https?://|\.|/)[^>\s]+)>")


def _mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """Run ``mkdocs build --strict`` on ``config`` into ``site``; the completed process (output captured)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_site_builds_strictly(tmp_path: Path) -> None:
    """Every page builds, every internal link and anchor resolves, every page is in the nav."""
    proc = _mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = tmp_path / "site"
    for page in ("index.html", "getting-started/index.html", "safety/index.html", "architecture/index.html"):
        assert (site / page).is_file(), page
    # generated and included content arrived: the client API from its docstrings, the benchmark figures
    assert "TernClient" in (site / "reference/client-api/index.html").read_text()
    assert "Retrieval quality" in (site / "benchmarks/index.html").read_text()


def test_strict_build_fails_on_a_broken_link(tmp_path: Path) -> None:
    """The check above can fail: the same site with one link to a missing page does not build."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copytree(ROOT / "benchmarks", tmp_path / "benchmarks", ignore=shutil.ignore_patterns("results"))
    for pkg in ("starters", "tern"):  # mkdocstrings reads the client API's sources (statically)
        (tmp_path / pkg).symlink_to(ROOT / pkg)
    page = tmp_path / "docs" / "getting-started.md"
    page.write_text(page.read_text() + "\nSee [the missing page](concepts/no-such-page.md).\n")
    proc = _mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode != 0
    assert "no-such-page.md" in proc.stdout + proc.stderr


def test_readme_is_short() -> None:
    """README.md is a front door of at most ~200 lines; the specification lives in docs/."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines, at most {README_MAX_LINES}"


def _local_targets(text: str) -> list[str]:
    """The link targets in ``text`` that are not URLs with a scheme (http, https, mailto), anchors stripped."""
    targets = []
    for m in LINK.finditer(text):
        target = m.group(1) or m.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_readme_links_stay_in_the_repository() -> None:
    """Every relative link of README.md names an existing file inside the repository; nothing under ../shared."""
    text = (ROOT / "README.md").read_text()
    assert "../shared" not in text
    targets = _local_targets(text)
    assert targets, "README.md links into docs/"
    for target in targets:
        path = (ROOT / target).resolve()
        assert path.is_relative_to(ROOT), f"README.md links outside the repository: {target}"
        assert path.exists(), f"README.md links to a missing file: {target}"


def test_link_check_sees_an_outside_link() -> None:
    """The link extraction the README check relies on finds relative, angle-bracket and image links."""
    text = "[a](../shared/DESIGN.md) ![b](docs/x.png) [c](https://temporal.io) <./y.md> [d](#top)"
    assert _local_targets(text) == ["../shared/DESIGN.md", "docs/x.png", "./y.md"]


def test_docs_link_nothing_outside_the_repository() -> None:
    """No page of the site points at the design notes' old home outside the repository."""
    offenders = [p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md") if "../shared" in p.read_text()]
    assert not offenders, offenders


def test_cli_reference_is_current() -> None:
    """docs/reference/cli.md equals what ``python docs/gen_cli.py`` prints from today's typer app."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_cli.py")], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    current = (ROOT / "docs" / "reference" / "cli.md").read_text()
    regenerate = "python docs/gen_cli.py > docs/reference/cli.md"
    assert proc.stdout == current, f"docs/reference/cli.md is out of date: run `{regenerate}`"
