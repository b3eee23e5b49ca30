"""One-line summaries of oplog entries, as `worker oplog` prints them (the CLI
in-process and the server's /oplog/text both use these)."""

from __future__ import annotations

from golemish.oplog import EffectBegin, Entry, HostCall, Log, codec
from golemish.oplog.entries import _STRUCTURED as STRUCTURED_CALLS  # decoded, not hex


#: `worker oplog` cuts a summary here (a WAVE argument or a message can be any length).
SUMMARY_WIDTH = 100


def clip(text: str, width: int = SUMMARY_WIDTH) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def full_summary(e: Entry) -> str:
    """An entry's summary with nothing cut: the bytes of output and host calls whole."""
    if isinstance(e, Log):
        return f"{'stdout' if e.stream == 1 else 'stderr'} " \
               f"{e.data.decode('utf-8', 'replace')!r}"
    if isinstance(e, (HostCall, EffectBegin)):
        def whole(data: bytes) -> str:
            try:
                return repr(codec.decode(data)) if e.name in STRUCTURED_CALLS else data.hex()
            except codec.DecodeError:
                return data.hex()
        if isinstance(e, EffectBegin):
            return f"{e.name} {whole(e.request)} key={e.idempotency_key}"
        return f"{e.name} req={whole(e.request) or '-'} resp={whole(e.response) or '-'}"
    return e.summary()
