"""Read an Archiver Appliance with aaclient (M. Davidsaver, PyPI ``aaclient``: its own C++ decoder over
protobuf-lite), a client Tern did not write; print JSON.

Run as a subprocess by tests/archiver/test_pb_http.py, so that a fault in its extension (it overflows its arrays
on ScalarShort, ScalarEnum and ScalarByte values) cannot take the test process down.

Usage: ``python aaclient_read.py '{"url": BASE, "pv": ..., "from": POSIX s, "to": POSIX s}'``.
Output: ``{"search": [names], "values": [...], "sec": [...], "ns": [...], "severity": [...], "status": [...]}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime

from aaclient import MatchMode, getArchive


async def main() -> None:
    args = json.loads(sys.argv[1])
    conf = {
        "url": f"{args['url']}/mgmt/bpl/getApplianceInfo",
        "urltype": ".appl",
        "maxquery": "4",
        "chunksize": str(256 * 1024),
        "defaultcount": "1000",
        "starttime": "-1h",
        "endtime": "now",
    }
    async with await getArchive(conf) as arch:
        found = list(await arch.search(args["pv"], match=MatchMode.Exact))
        t0, t1 = datetime.fromtimestamp(args["from"], UTC), datetime.fromtimestamp(args["to"], UTC)
        values, meta = await arch.raw(args["pv"], T0=t0, Tend=t1)
    out = {"search": found, "values": [float(x) for x in values.reshape(len(meta))]}
    out.update({k: [int(x) for x in meta[k]] for k in ("sec", "ns", "severity", "status")})
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
