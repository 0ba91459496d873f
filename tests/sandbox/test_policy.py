"""Policy analysis: what it flags (aliased imports included), risk levels, approval decisions."""

from __future__ import annotations

import pytest

from tern.models.code_policy import PolicyReport
from tern.sandbox import analyze

CLEAN = """
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import sys, math, json
df = pd.DataFrame(series)
slope = np.polyfit(df["t"], df["y"], 1)[0]
plt.plot(df["t"], df["y"])
plt.savefig("trend.png")
print(sys.version_info, file=sys.stderr)
with open("/inputs/data.json") as f:
    data = json.load(f)
results = {"slope": float(slope), "proposed_writes": [{"channel": "SR:C01:SP", "value": 1.0}]}
"""


def control_writes(report: PolicyReport) -> list[str]:
    return [f.detail for f in report.findings if f.category == "control_write"]


def test_clean_analysis_code_is_low_risk_and_needs_approval_only_in_all_code_mode() -> None:
    report = analyze(CLEAN)
    assert report.syntax_ok
    assert report.findings == [], report.summary()
    assert report.risk == "low"
    assert report.needs_approval("all_code")
    assert not report.needs_approval("control_writes")
    assert not report.needs_approval("disabled")
    assert "numpy" in report.imports


@pytest.mark.parametrize(
    "code",
    [
        "from epics import caput as _w\n_w('SR:C01:SP', 3.0)",  # Osprey issue #661
        "import epics as e\ne.caput('SR:C01:SP', 3.0)",
        "import epics\nw = epics.caput\nw('X', 1)",
        "import epics\ngetattr(epics, 'caput')('X', 1)",
        "e = __import__('epics')\ne.caput('X', 1)",
        "import importlib\nm = importlib.import_module('epics')\nm.caput('X', 1)",
        "from epics import *\ncaput('X', 1)",
        "import epics.ca as ca\nca.put(1, 2)",
        "from epics import PV\npv = PV('X')\npv.put(1.0)",
        "import caproto.sync.client as c\nc.write('X', [1])",
        "from p4p.client.thread import Context\nContext('pva').put('X', 1)",
        "import tango\ntango.DeviceProxy('a/b/c').write_attribute('current', 1)",
        "def later():\n    return w('X', 1)\nfrom epics import caput as w",
    ],
)
def test_control_system_writes_are_found_through_aliases(code: str) -> None:
    report = analyze(code)
    assert control_writes(report), report.summary()
    assert report.risk == "critical"
    assert report.needs_approval("control_writes")
    assert report.attempts_control_write


def test_aliased_write_reports_the_alias_and_the_line() -> None:
    report = analyze("import numpy as np\nfrom epics import caput as _w\nx = 1\n_w('SR:C01:SP', x)\n")
    lines = {f.line for f in report.findings if f.category == "control_write"}
    assert lines == {2, 4}
    assert any("epics.caput (as _w)" in d for d in control_writes(report))


@pytest.mark.parametrize(
    ("code", "category"),
    [
        ("import socket\nsocket.create_connection(('10.0.0.1', 5064))", "network"),
        ("import urllib.request as u\nu.urlopen('http://example.org')", "network"),
        ("from requests import get as g\ng('http://x')", "network"),
        ("import asyncio\nasyncio.open_connection('h', 1)", "network"),
        ("import subprocess\nsubprocess.run(['ls'])", "process"),
        ("import os\nos.system('id')", "process"),
        ("from os import fork as f\nf()", "process"),
        ("import os\nos.execv('/bin/sh', ['sh'])", "process"),
        ("import multiprocessing as mp\nmp.Pool(4)", "process"),
        ("open('/etc/passwd', 'w')", "file_write"),
        ("open('out.txt', mode='a')", "file_write"),
        ("import os\nos.remove('/tmp/x')", "file_write"),
        ("import shutil\nshutil.rmtree('/')", "file_write"),
        ("from pathlib import Path\nPath('/etc/x').write_text('y')", "file_write"),
        ("open(name, m)", "file_write"),
        ("open('/etc/shadow').read()", "file_read"),
        ("exec('print(1)')", "dynamic_code"),
        ("eval(s)", "dynamic_code"),
        ("compile(s, 'x', 'exec')", "dynamic_code"),
        ("__import__(name)", "dynamic_code"),
        ("import importlib\nimportlib.import_module(n)", "dynamic_code"),
        ("getattr(obj, name)()", "dynamic_code"),
        ("import ctypes\nctypes.CDLL('libc.so.6')", "dynamic_code"),
        ("x = ().__class__.__bases__[0].__subclasses__()", "dynamic_code"),
        ("import os\nos.setuid(0)", "privilege"),
        ("from os import setgid as sg\nsg(0)", "privilege"),
        ("import os\nos.chroot('/')", "privilege"),
    ],
)
def test_risky_accesses_are_reported_by_category(code: str, category: str) -> None:
    report = analyze(code)
    assert category in report.categories(), report.summary()
    assert report.risk != "low"
    assert all(f.line >= 1 for f in report.findings)


def test_risk_is_the_highest_severity_and_control_writes_mode_fails_closed_on_dynamic_code() -> None:
    network = analyze("import socket")
    assert network.risk == "high"
    assert not network.needs_approval("control_writes")
    hidden = analyze("import epics\nf = getattr(epics, name)\nf('X', 1)")
    assert "dynamic_code" in hidden.categories()
    assert hidden.needs_approval("control_writes")
    privilege = analyze("import os\nos.setuid(0)")
    assert privilege.risk == "critical"
    assert privilege.needs_approval("control_writes")


def test_syntax_error_is_reported_with_its_line_and_never_needs_approval() -> None:
    report = analyze("x = 1\ndef f(:\n    pass\n")
    assert not report.syntax_ok
    assert report.syntax_error is not None and report.syntax_error.startswith("line 2")
    assert not report.needs_approval("all_code")
    assert "syntax error" in report.summary()


def test_summary_lists_each_finding_with_line_and_category() -> None:
    report = analyze("import socket\nfrom epics import caput as _w\n_w('A', 1)\n")
    text = report.summary()
    assert text.startswith("risk critical")
    assert "line 1: [network, high]" in text
    assert "line 3: [control_write, critical]" in text
