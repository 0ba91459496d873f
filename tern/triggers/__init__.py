"""Event triggers' core (no Temporal): detecting channel events, rate limiting, schedule specs, and the trigger
definitions in PostgreSQL. The models are :mod:`tern.models.trigger`; starting runs is :mod:`starters.triggers`."""
