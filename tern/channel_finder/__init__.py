"""Channel finder: a channel database in PostgreSQL (names, aliases, descriptions, hierarchy, units,
writability), searched by keyword, semantic or hybrid ranking and navigated level by level.

``tern.channel_finder.naming`` (the naming convention and its expansion tables), ``tern.channel_finder.store`` (records,
the bundled database, upserts, embeddings), ``tern.channel_finder.importing`` (ChannelFinder JSON and CSV files),
``tern.channel_finder.finder`` (search and navigation). No Temporal import.
"""
