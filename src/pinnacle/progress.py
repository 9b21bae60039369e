"""Progress lines from long single jobs (scVI, totalVI training) into the job's log.

Snakemake reports progress job by job; inside one long job (hours of scVI on a CPU node) the
only sign of life is the job's log file. The adapters send ``logging`` to that file, so
``tail -f logs/cohort/integrate.log`` shows a line every few percent of training.
"""

from __future__ import annotations

import logging
import math
import time

__all__ = ["epoch_logger", "log_every"]

log = logging.getLogger(__name__)


def log_every(max_epochs: int, *, lines: int = 20) -> int:
    """Epochs between two progress lines: about ``lines`` lines per fit, at least one epoch apart.

    Parameters
    ----------
    max_epochs
        Epochs of the fit.
    lines
        Progress lines wanted per fit.
    """
    return max(1, math.ceil(max(int(max_epochs), 1) / max(int(lines), 1)))


def epoch_logger(name: str, max_epochs: int, *, lines: int = 20, logger: logging.Logger | None = None):
    """A Lightning callback that logs ``name: epoch i/n (x%), elapsed, left, loss`` every
    :func:`log_every` epochs and at the last one (pass it as ``callbacks=[...]`` to
    ``model.train`` of scvi-tools). Costs one log line per chunk of epochs.

    Parameters
    ----------
    name
        What is training (``"scVI"``, ``"totalVI"``), the start of each line.
    max_epochs
        Epochs of the fit.
    lines
        Progress lines wanted per fit.
    logger
        Where the lines go; default this module's logger.
    """
    from lightning.pytorch.callbacks import Callback

    every = log_every(max_epochs, lines=lines)
    out = logger or log

    class _EpochLogger(Callback):
        def on_train_start(self, trainer, pl_module):
            self.start = time.monotonic()
            out.info("%s: training %d epochs on %s", name, max_epochs, pl_module.device)

        def on_train_epoch_end(self, trainer, pl_module):
            epoch = trainer.current_epoch + 1
            if epoch % every and epoch != max_epochs:
                return
            elapsed = time.monotonic() - getattr(self, "start", time.monotonic())
            left = elapsed / epoch * (max_epochs - epoch)
            losses = {k: float(v) for k, v in trainer.callback_metrics.items()
                      if k in ("elbo_train", "train_loss_epoch", "train_loss")}
            loss = ", ".join(f"{k} {v:.4g}" for k, v in sorted(losses.items()))
            out.info("%s: epoch %d/%d (%d%%), %.0f s elapsed, ~%.0f s left%s", name, epoch, max_epochs,
                     round(100 * epoch / max_epochs), elapsed, left, f"; {loss}" if loss else "")

    return _EpochLogger()
