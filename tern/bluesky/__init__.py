"""Bluesky plans through the Bluesky queue server: checked against its allowed plans and devices, submitted once
(after approval), followed to their end (issue 24). No Temporal here: activities call this package."""
