"""The stage progress line: ETA arithmetic, the heartbeat in logs, the live line on a terminal."""

import io

import pytest

from seedlab.run import progress as progress_module
from seedlab.run.progress import SweepProgress


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(progress_module.time, "time", fake)
    return fake


def test_eta_counts_waiting_trials_and_what_running_ones_have_left(clock):
    bar = SweepProgress("grid", total=5, out=io.StringIO())
    assert bar.eta_seconds() is None  # nothing finished: no mean trial time yet
    bar.started("a"), bar.started("b")
    clock.now += 60
    bar.finished("a", ok=True)  # mean trial time 60 s; b has run 60 s of its 60
    bar.started("c")
    clock.now += 20  # c has 40 s left, b 0; two trials (d, e) wait
    assert bar.eta_seconds() == pytest.approx((2 * 60 + 40 + 0) / 2)
    bar.finished("b", ok=False)
    assert (bar.done, bar.failed, len(bar.running)) == (1, 1, 1)
    # one slot briefly empty between trials: still two in parallel (c 40 s left, d and e waiting)
    assert bar.eta_seconds() == pytest.approx((2 * 60 + 40) / 2)


def test_a_log_gets_a_line_per_change_and_a_heartbeat_while_nothing_changes(clock):
    out = io.StringIO()
    bar = SweepProgress("grid", total=2, out=out, heartbeat_s=30)
    bar.started("a")
    clock.now += 10
    bar.tick()  # 10 s since the last line: nothing
    assert out.getvalue().count("\n") == 1
    clock.now += 25
    bar.tick()  # 35 s: a heartbeat with the clock moved on
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].endswith("elapsed 0m35s") and "running 1" in lines[-1]
    assert "\r" not in out.getvalue()
    bar.close()  # a log's lines are already whole
    assert len(out.getvalue().splitlines()) == 2


def test_a_terminal_gets_one_line_rewritten_in_place_and_ended_at_close(clock):
    out = Terminal()
    bar = SweepProgress("pretrain", total=1, out=out)
    bar.started("a")
    for _ in range(3):
        clock.now += 1
        bar.tick()
    assert "\n" not in out.getvalue() and out.getvalue().count("\r") == 4
    bar.finished("a", ok=True)
    bar.close()
    assert out.getvalue().endswith("\n")
    assert out.getvalue().rstrip("\n").split("\r")[-1].startswith("[pretrain] done 1/1 | running 0 | failed 0")
