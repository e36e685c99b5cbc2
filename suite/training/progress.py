"""How a training phase shows where it is: a tqdm bar under a terminal, plain lines in a log.

A bar redrawn with carriage returns is unreadable in a file, and tqdm hides it anyway when its
stream is not a terminal, so a job run under nohup, SLURM, CI or ``> run.log`` used to print
nothing for half an hour. When stdout is not a terminal this module prints one flushed line:

* when a phase starts (or resumes),
* at every epoch end (with the epoch's evaluation) and at the end of the phase,
* every :data:`LINE_EVERY` iterations,
* and whenever the log has been quiet for a while (:data:`QUIET_SECONDS`: soon after a phase
  starts, then every few minutes), so even a slow CPU epoch shows life within the first minute.

Each line names the phase, step/total, mean loss since the previous line, lr, images/s and ETA.
The bar (on stderr) and the lines (on stdout) are independent: ``suite run > run.log`` in a
terminal shows the bar on screen and writes the lines to the file.

:func:`suite.training.loop.train` only calls :class:`Progress`; how progress looks is decided here.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime

from tqdm import tqdm

LINE_EVERY = 1000  # iterations between lines within a long epoch
QUIET_SECONDS = (30.0, 300.0)  # longest silence before the phase's first line, then between lines
_ROW_SKIP = {"phase", "step", "epoch", "lr", "loss"}  # row fields every line shows anyway


def duration(seconds: float) -> str:
    """``42s``, ``5m07s``, ``3h04m``: short enough for a log line."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Progress of one training phase.

    ``total``: the iterations the phase is expected to run (None: unknown, no ETA); ``done``: the
    iterations already run before this process (a resume); ``steps_per_epoch``: to name epochs.
    ``lines`` (default: stdout is not a terminal), ``stream`` and ``clock`` are for tests.
    """

    def __init__(
        self,
        desc: str,
        *,
        total: int | None,
        done: int,
        steps_per_epoch: int,
        lines: bool | None = None,
        stream=None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.desc, self.total, self.step_no, self.spe = desc, total, done, steps_per_epoch
        self.stream = stream
        self.lines = (not self._out().isatty()) if lines is None else lines
        self.clock = clock
        self.lr: float | None = None
        self.start_step, self.t_start = done, clock()
        self._reset_window()
        self.printed = False  # no line since the start line yet: the short quiet limit applies
        self.bar = tqdm(total=total, initial=done, desc=desc, unit="it", leave=False, disable=None, dynamic_ncols=True)
        if self.lines:
            self._print(
                f"resume  at step {self._of(total)}"
                if done
                else f"start  {total if total is not None else '?'} iterations"
            )

    def step(self, loss: float, lr: float, images: int) -> None:
        """One iteration ran on ``images`` images with this loss and lr."""
        self.step_no += 1
        self.loss_sum += loss
        self.loss_n += 1
        self.images += images
        self.lr = lr
        self.bar.update(1)
        if not self.lines or self.step_no % self.spe == 0 or self.step_no == self.total:
            return  # train() emits a row (an epoch or phase line) right after this step
        quiet = QUIET_SECONDS[1] if self.printed else QUIET_SECONDS[0]
        if self.step_no % LINE_EVERY == 0 or self.clock() - self.t_line >= quiet:
            self._line()

    def row(self, row: dict) -> None:
        """An epoch ended (or the phase did): ``row`` is its history row, with any evaluation."""
        shown = {k: v for k, v in row.items() if isinstance(v, float) and k not in _ROW_SKIP}
        self.bar.set_postfix({k: round(v, 3) for k, v in row.items() if isinstance(v, float)})
        if self.lines:
            extra = "  ".join(f"{k} {v:.4g}" for k, v in shown.items())
            self._line(extra, epoch_end=self.step_no % self.spe == 0)

    def close(self) -> None:
        self.bar.close()

    # ------------------------------------------------------------------ lines
    def _out(self):
        return self.stream or sys.stdout  # looked up late: pytest's capsys swaps sys.stdout

    def _reset_window(self) -> None:
        self.loss_sum, self.loss_n, self.images, self.t_line = 0.0, 0, 0, self.clock()

    def _of(self, total) -> str:
        return f"{self.step_no}/{total if total is not None else '?'}"

    def _line(self, extra: str = "", epoch_end: bool = False) -> None:
        now = self.clock()
        parts = [f"step {self._of(self.total)}"]
        if self.total:
            parts[0] += f" ({100 * min(self.step_no, self.total) // self.total}%)"
        epoch = self.step_no // self.spe if epoch_end else self.step_no / self.spe
        epochs = f"/{-(-self.total // self.spe)}" if self.total else ""
        parts.append(f"epoch {epoch}{epochs} done" if epoch_end else f"epoch {epoch:.2f}")
        if self.loss_n:
            parts.append(f"loss {self.loss_sum / self.loss_n:.4f}")
        if self.lr is not None:
            parts.append(f"lr {self.lr:g}")
        if extra:
            parts.append(extra)
        if now > self.t_line and self.images:
            parts.append(f"{self.images / (now - self.t_line):.0f} img/s")
        ran = self.step_no - self.start_step
        if self.total and ran and self.step_no < self.total:
            parts.append(f"ETA {duration((now - self.t_start) / ran * (self.total - self.step_no))}")
        self._print("  ".join(parts))
        self.printed = True
        self._reset_window()

    def _print(self, text: str) -> None:
        print(f"[{datetime.now():%H:%M:%S}] {self.desc}  {text}", file=self._out(), flush=True)
