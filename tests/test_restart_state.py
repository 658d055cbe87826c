"""Which side-topic restart document goes with a committed offset, from a table."""

from __future__ import annotations

import pytest

from streambind.stream.restart import pick_state

OLD = {"offset": 40, "wm": 1}
COMMITTED = {"offset": 80, "wm": 2}
AHEAD = {"offset": 120, "wm": 3}  # written before a commit that did not happen (or aborted)


@pytest.mark.parametrize(
    ("docs", "committed", "exact", "expected"),
    [
        ([], 80, False, {}),
        ([OLD, COMMITTED], 80, False, COMMITTED),
        ([OLD, COMMITTED, AHEAD], 80, False, AHEAD),  # at least once: ahead is safe
        ([OLD], 80, False, {}),  # older than the commit: not its state
        ([COMMITTED], None, False, COMMITTED),  # nothing committed yet
        ([OLD, COMMITTED, AHEAD], 80, True, COMMITTED),  # exactly once: the committed one
        ([OLD, AHEAD], 80, True, {}),
        ([COMMITTED, {"offset": "x"}], 80, True, COMMITTED),  # unreadable offsets skipped
        ([{"offset": "x"}], 80, False, {}),
    ],
)
def test_pick_state(docs, committed, exact, expected):
    assert pick_state(docs, committed, exact) == expected
