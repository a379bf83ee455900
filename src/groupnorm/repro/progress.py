"""Progress bars: one for the sweep (runs) and one per run (steps, with epoch, loss, error and ETA).

Uses tqdm when it is installed and the sweep is not ``--quiet``; otherwise one line per finished epoch (or nothing).
"""

from __future__ import annotations

import sys


class Progress:
    def __init__(self, total_runs: int, *, quiet: bool = False, enabled: bool = True) -> None:
        self.quiet = quiet or not enabled
        self.run_bar = None
        self.sweep_bar = None
        self._tqdm = None
        if not self.quiet:
            try:
                from tqdm.auto import tqdm

                self._tqdm = tqdm
            except ImportError:
                self._tqdm = None
        if self._tqdm is not None:
            self.sweep_bar = self._tqdm(
                total=total_runs, desc="sweep", unit="run", position=0, file=sys.stderr
            )

    def write(self, msg: str) -> None:
        if self.quiet:
            return
        if self._tqdm is not None:
            self._tqdm.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def warn(self, msg: str) -> None:
        """Always shown, even with ``quiet``."""
        if self._tqdm is not None:
            self._tqdm.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def start_run(self, name: str, epochs: int, steps_per_epoch: int, first_epoch: int = 0) -> None:
        self.name, self.epochs, self.steps = name, epochs, steps_per_epoch
        self.last_error = None
        if self._tqdm is not None:
            self.run_bar = self._tqdm(
                total=epochs * steps_per_epoch,
                initial=first_epoch * steps_per_epoch,
                desc=name[:40],
                unit="step",
                position=1,
                leave=False,
                file=sys.stderr,
            )

    def step(self, epoch: int, step: int, steps: int, loss: float) -> None:
        if self.run_bar is not None:
            self.run_bar.update(1)
            post = {"epoch": f"{epoch + 1}/{self.epochs}", "loss": f"{loss:.3f}"}
            if self.last_error is not None:
                post["val_err"] = f"{self.last_error:.2f}%"
            self.run_bar.set_postfix(post, refresh=False)

    def epoch_done(self, epoch: int, stats: dict) -> None:
        self.last_error = stats["val_error"]
        if self.run_bar is None and not self.quiet:
            self.write(
                f"{self.name} epoch {epoch}/{self.epochs}: loss {stats['train_loss']:.3f} "
                f"train {stats['train_error']:.2f}% val {stats['val_error']:.2f}% ({stats['seconds']:.1f}s)"
            )

    def end_run(self, summary: str) -> None:
        if self.run_bar is not None:
            self.run_bar.close()
            self.run_bar = None
        if self.sweep_bar is not None:
            self.sweep_bar.update(1)
        self.write(summary)

    def close(self) -> None:
        if self.sweep_bar is not None:
            self.sweep_bar.close()
