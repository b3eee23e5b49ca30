"""Default limits, in a module of their own: the CLI shows them in its help without
loading the runtime that enforces them."""

#: Default cap on a module's size. Deploy holds the module several times over while
#: it validates, instruments and compiles it (a 300 MiB module took 1.3 GB), so this
#: keeps a deploy near half a GiB; the largest real guests (CPython for WASI, about
#: 30 MB) fit four times over. ``deploy --max-size`` / GOLEMISH_MAX_COMPONENT_MIB.
DEFAULT_MAX_BYTES = 128 << 20
