"""`golemish serve`: the always-on executor and its HTTP API (see process.py, app.py)."""

from .process import ServerConfig, read_server_file, serve, server_file

__all__ = ["ServerConfig", "read_server_file", "serve", "server_file"]
