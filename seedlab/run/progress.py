"""Live progress of a stage of Ray Tune trials (the seed grid, the pretraining stage).

On a terminal: one line, rewritten in place every second (so a long trial still shows the clock move).
In a log file or pipe: one line per change, and a heartbeat line every `heartbeat_s` while nothing changes.
"""

from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s"


class SweepProgress:
    """Trials done / running / failed, elapsed time and an ETA."""

    def __init__(self, name: str, total: int, out=sys.stdout, *, heartbeat_s: float = 30.0):
        self.name, self.total, self.out = name, total, out
        self.done = self.failed = 0
        self.running: dict[str, float] = {}
        self.parallel = 1  # the most trials seen running at once: between two trials one slot is briefly empty
        self.durations: list[float] = []
        self.start = time.time()
        self.live = bool(getattr(out, "isatty", lambda: False)())
        self.heartbeat_s = heartbeat_s
        self.last_shown = 0.0
        self._line_open = False

    def started(self, trial_id: str) -> None:
        self.running[trial_id] = time.time()
        self.parallel = max(self.parallel, len(self.running))
        self.show()

    def finished(self, trial_id: str, ok: bool) -> None:
        began = self.running.pop(trial_id, None)
        if ok:
            self.done += 1
            if began is not None:
                self.durations.append(time.time() - began)
        else:
            self.failed += 1
        self.show()

    def eta_seconds(self) -> float | None:
        """Remaining trials x mean trial time / trials in parallel, less what the running ones have done."""
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        waiting = self.total - self.done - self.failed - len(self.running)
        now = time.time()
        running_left = sum(max(0.0, mean - (now - began)) for began in self.running.values())
        return (waiting * mean + running_left) / self.parallel

    def line(self) -> str:
        eta = self.eta_seconds()
        return (f"[{self.name}] done {self.done}/{self.total} | running {len(self.running)} | failed {self.failed} | "
                f"ETA {'--' if eta is None else _clock(eta)} | elapsed {_clock(time.time() - self.start)}")

    def show(self) -> None:
        if self.live:  # rewrite the one line in place; \x1b[K clears what a longer line left behind
            print(f"\r{self.line()}\x1b[K", end="", file=self.out, flush=True)
            self._line_open = True
        else:
            print(self.line(), file=self.out, flush=True)
        self.last_shown = time.time()

    def tick(self) -> None:
        """Called often (every Tune controller step): refresh the live line, or print a heartbeat."""
        if time.time() - self.last_shown >= (1.0 if self.live else self.heartbeat_s):
            self.show()

    def close(self) -> None:
        """End the stage's line (on a terminal the next output starts on a line of its own)."""
        if self._line_open:
            self.show()
            print(file=self.out, flush=True)
            self._line_open = False


def tune_callback(progress: SweepProgress):
    from ray import tune

    class Callback(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            progress.started(trial.trial_id)

        def on_trial_complete(self, iteration, trials, trial, **info):
            progress.finished(trial.trial_id, ok=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            progress.finished(trial.trial_id, ok=False)

        def on_step_end(self, iteration, trials, **info):
            progress.tick()

        def on_experiment_end(self, trials, **info):
            progress.close()

    return Callback()
