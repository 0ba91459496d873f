"""The embedded default stack: Temporal dev server, PostgreSQL, the simulated accelerator and a worker,
run as child processes with all state under ``TernSettings.data_dir``."""
