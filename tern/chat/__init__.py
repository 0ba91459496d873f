"""Chat approval bridges, the platform-neutral core (no Temporal import): approval cards, chat commands, the
identity map from platform identities to approver names, the PostgreSQL outbox and card claims, and the bridge
loop that ties them to a platform adapter (``starters/matrix_bridge.py``) and a decision sender."""
