"""`golemish serve`: the always-on executor and its HTTP API (see process.py, app.py).

Nothing is imported here: record.py (where a server serves) is read by CLI commands
that must not load the executor that process.py needs."""
