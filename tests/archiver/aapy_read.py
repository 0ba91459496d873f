"""Read an Archiver Appliance with aapy (dls-controls/aapy, PyPI ``aapy``), a client Tern did not write; print JSON.

Run as a subprocess by tests/archiver/test_pb_http.py, with ``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python``:
aapy 0.12 ships old-style generated protobuf code that today's upb runtime refuses, and it registers its own
``EPICSEvent.proto`` in the default descriptor pool (so it cannot share a process with Tern's).

Usage: ``python aapy_read.py '[{"host": ..., "port": ..., "pv": ..., "from": ISO, "to": ISO, "status": [names],
"high_level": true}, ...]'`` (a list of reads: one interpreter start-up, ~0.5-1 s, serves them all).
Output: a list, one per read: ``{"values", "timestamps", "severities", "enum_options", "chunks": [{"year", "pvname",
"type", "headers", "events": [[secondsintoyear, nano, val, severity, status], ...]}], "status", "statuses"}``.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import requests
from aa import pb
from aa.rest import AaRestClient


def main() -> None:
    print(json.dumps([read(args) for args in json.loads(sys.argv[1])]))


def read(args: dict[str, Any]) -> dict[str, object]:
    """One read, as the module docstring describes."""
    start, end = datetime.fromisoformat(args["from"]), datetime.fromisoformat(args["to"])
    out: dict[str, object] = {}
    # aapy's high-level API: PbFetcher asks /retrieval/data/getData.raw and parses it (aapy 0.12 cannot put a
    # ScalarByte's bytes value in its arrays, whichever server sent it: "high_level": false skips it)
    if args.get("high_level", True):
        data = pb.PbFetcher(args["host"], args["port"]).get_values(args["pv"], start, end)
        out["values"] = [v.tolist() for v in data.values]
        out["timestamps"] = data.timestamps.tolist()
        out["severities"] = data.severities.tolist()
        out["enum_options"] = {str(k): v for k, v in data.enum_options.items()}
    # aapy's chunk parser on the same body, for the exact (secondsintoyear, nano) that the float timestamps round
    url = f"http://{args['host']}:{args['port']}/retrieval/data/getData.raw"
    resp = requests.get(url, params={"pv": args["pv"], "from": args["from"], "to": args["to"]}, timeout=30)
    out["http_status"] = resp.status_code
    chunks = []
    if resp.status_code == 200:
        for year, (info, lines) in pb.break_up_chunks(resp.content).items():
            events = []
            for line in lines:
                ev = pb.TYPE_MAPPINGS[info.type]()
                ev.ParseFromString(pb.unescape_bytes(line))
                val = list(ev.val) if isinstance(ev.val, bytes) else ev.val  # ScalarByte: its byte(s)
                events.append([ev.secondsintoyear, ev.nano, val, ev.severity, ev.status])
            headers = {h.name: h.val for h in info.headers}
            chunks.append(
                {"year": year, "pvname": info.pvname, "type": info.type, "headers": headers, "events": events}
            )
    out["chunks"] = chunks
    if args.get("status"):
        rest = AaRestClient(args["host"], args["port"])
        out["status"] = rest.get_pv_status(args["status"][0])
        out["statuses"] = rest.get_pv_statuses(args["status"])
    return out


if __name__ == "__main__":
    main()
