"""Live progress of a stage of Ray Tune trials (the seed grid, the pretraining stage): one line per change."""

from __future__ import annotations

import sys
import time


class SweepProgress:
    """Live progress: trials done / running / failed and an ETA, one line per change."""

    def __init__(self, name: str, total: int, out=sys.stdout):
        self.name, self.total, self.out = name, total, out
        self.done = self.failed = 0
        self.running: dict[str, float] = {}
        self.durations: list[float] = []
        self.start = time.time()

    def started(self, trial_id: str) -> None:
        self.running[trial_id] = time.time()
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
        if not self.durations:
            return None
        remaining = self.total - self.done - self.failed
        parallel = max(1, len(self.running))
        return remaining * (sum(self.durations) / len(self.durations)) / parallel

    def show(self) -> None:
        eta = self.eta_seconds()
        eta_text = "ETA --" if eta is None else f"ETA {int(eta // 60)}m{int(eta % 60):02d}s"
        elapsed = int(time.time() - self.start)
        print(f"[{self.name}] done {self.done}/{self.total} | running {len(self.running)} | failed {self.failed} | "
              f"{eta_text} | elapsed {elapsed // 60}m{elapsed % 60:02d}s", file=self.out, flush=True)


def tune_callback(progress: SweepProgress):
    from ray import tune

    class Callback(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            progress.started(trial.trial_id)

        def on_trial_complete(self, iteration, trials, trial, **info):
            progress.finished(trial.trial_id, ok=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            progress.finished(trial.trial_id, ok=False)

    return Callback()
