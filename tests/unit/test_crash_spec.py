import pytest

from golemish.runtime.crash import CrashPoints
from golemish.runtime.errors import CrashPointError


def test_parses_several_points():
    c = CrashPoints("after-host-call:3, before-oplog-append:1")
    assert c.armed
    c.hit("after-host-call")  # 1st of 3: survives
    c.hit("after-oplog-append")  # not armed: survives


@pytest.mark.parametrize("spec, msg", [
    ("nowhere:1", "unknown crash point 'nowhere'"),
    ("after-host-call:0", "whole number >= 1"),
    ("after-host-call:x", "whole number >= 1"),
])
def test_bad_specs_are_clear(spec, msg):
    with pytest.raises(CrashPointError, match=msg):
        CrashPoints(spec)
