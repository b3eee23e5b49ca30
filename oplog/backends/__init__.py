"""Storage backends. Each one implements :class:`golemish.oplog.backends.base.Backend`.

Pick one by URL with :func:`golemish.oplog.open_store`:
``memory://`` (tests), ``rocksdb:///abs/path`` or a plain directory path (default).
"""
