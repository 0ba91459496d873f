"""Channel finder: a channel database in PostgreSQL (names, aliases, descriptions, hierarchy, units,
writability), searched by keyword, semantic or hybrid ranking and navigated level by level.

``tern.channels.naming`` (the naming convention and its expansion tables), ``tern.channels.store`` (records,
the bundled database, upserts, embeddings), ``tern.channels.importing`` (ChannelFinder JSON and CSV files),
``tern.channels.finder`` (search and navigation). No Temporal import.
"""
