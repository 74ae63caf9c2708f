"""scripts/bench_process.py: a benchmark side built and kept in a spawned process of its own."""

import collections
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench_process import LocalSide, SideError, SideProcess, interleaved_seconds  # noqa: E402


def test_a_side_keeps_its_state_in_its_own_process_and_reports_the_seconds():
    with SideProcess("counter", collections.Counter, "abca") as side:
        assert side.call("most_common", 1) == [("a", 2)]
        assert side.call("update", "zzz") is None
        assert side.call("__getitem__", "z") == 3  # the update happened in the same object
        result, seconds = side.call_timed("total")
        assert result == 7 and 0 <= seconds < 60
        child = side._process.pid
        assert child != os.getpid()
    assert not side._process.is_alive()


def test_the_child_s_exception_comes_back_with_its_traceback():
    with SideProcess("counter", collections.Counter, "ab") as side:
        failed = r"(?s)the counter process failed while no_such_method.*AttributeError"
        with pytest.raises(SideError, match=failed):
            side.call("no_such_method")
        assert side.call("total") == 2  # a failed call leaves the side usable
    with pytest.raises(SideError, match=r"(?s)the number process failed while building.*ValueError"):
        SideProcess("number", int, "not a number")


def test_a_local_side_answers_the_same_calls():
    with LocalSide("counter", collections.Counter, "abca") as side:
        assert side.call("most_common", 1) == [("a", 2)]
        assert side.call_timed("total")[0] == 4


def test_interleaved_seconds_alternates_and_settles_each_timed_call():
    calls = []
    fns = [lambda: calls.append("a") or 1.5, lambda: calls.append("b")]
    times = interleaved_seconds(fns, reps=2, warmup=1, settle=1)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 2
    assert times[0] == [1.5, 1.5]  # a float returned is the call's own seconds
    assert len(times[1]) == 2 and all(0 <= t < 60 for t in times[1])
    calls.clear()
    interleaved_seconds(fns, reps=1, warmup=0)
    assert calls == ["a", "b"]
