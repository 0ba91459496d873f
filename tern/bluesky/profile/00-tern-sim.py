# The Bluesky queue server's worker environment for Tern's embedded stack and tests (tern.bluesky.server):
# ophyd's simulated motors and detectors, a RunEngine, and the standard plans. Executed by the queue server's
# RE worker (start-re-manager --startup-dir), not imported by Tern.
from bluesky import RunEngine
from bluesky.plan_stubs import mv, mvr  # noqa: F401
from bluesky.plans import count, list_scan, rel_scan, scan  # noqa: F401
from ophyd.sim import det, det1, det2, motor, motor1, motor2, noisy_det  # noqa: F401

RE = RunEngine({"facility": "tern-embedded"})
