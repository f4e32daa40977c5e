"""Crash-safe training callbacks: the best-model checkpoint and the resumable backup.

Both write every file under a temporary name and rename it into place when it
is complete (:func:`unet3d_keras.fileio.atomic_path`), so a process killed at
any point leaves the previous complete file, never a truncated one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path

import keras

from .fileio import atomic_path, write_text_atomically

__all__ = ["AtomicModelCheckpoint", "ResumableBackup"]

logger = logging.getLogger(__name__)

# Metric names (without "val_") whose higher values are better, for mode="auto".
_HIGHER_IS_BETTER = ("acc", "dice", "auc", "iou", "precision", "recall")


def _weights_or_model_suffix(filepath: str) -> str:
    """The extension Keras reads the file format from (``.weights.h5``, ``.keras``, ``.h5``)."""
    return ".weights.h5" if filepath.endswith(".weights.h5") else os.path.splitext(filepath)[1]


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """Save the model (or its best version) at the end of each epoch, atomically.

    Args:
        filepath: ``.keras``/``.h5`` model file, or ``.weights.h5`` with
            ``save_weights_only``; may hold ``str.format`` fields filled from
            ``epoch`` (1-based) and the epoch logs, e.g. ``model-{epoch:03d}.keras``.
        monitor: Log entry compared between epochs with ``save_best_only``.
        verbose: Log each save (and each skipped one) when above 0.
        save_best_only: Save only when ``monitor`` improved on the best so far.
            An epoch without ``monitor`` in its logs is saved; a NaN or
            infinite value never counts as an improvement.
        save_weights_only: Save the weights only.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (``min`` for losses, ``max``
            for accuracy, Dice, AUC, IoU, precision and recall).
        initial_value_threshold: Best value so far (when resuming), so that
            only a better model replaces the saved one.

    Raises:
        ValueError: the file extension does not match ``save_weights_only``,
            or ``mode`` is unknown or cannot be inferred from ``monitor``.
    """

    def __init__(
        self,
        filepath: str | os.PathLike,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        initial_value_threshold: float | None = None,
    ):
        super().__init__()
        self.filepath = os.fspath(filepath)
        if save_weights_only and not self.filepath.endswith(".weights.h5"):
            raise ValueError(f"filepath must end in .weights.h5 with save_weights_only=True; received {self.filepath}")
        if not save_weights_only and not self.filepath.endswith((".keras", ".h5")):
            raise ValueError(f"filepath must end in .keras or .h5; received {self.filepath}")
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.higher_is_better = self._higher_is_better(monitor, mode)
        self.best = initial_value_threshold

    @staticmethod
    def _higher_is_better(monitor: str, mode: str) -> bool:
        if mode in ("min", "max"):
            return mode == "max"
        if mode != "auto":
            raise ValueError(f"mode must be 'auto', 'min' or 'max'; received {mode!r}")
        name = monitor.removeprefix("val_")
        if "loss" in name:
            return False
        if any(word in name for word in _HIGHER_IS_BETTER):
            return True
        raise ValueError(f"mode='auto' cannot tell whether {monitor!r} should rise or fall; pass mode='min' or 'max'")

    def is_improvement(self, current: float) -> bool:
        """True when ``current`` beats the best value so far (any finite value beats none)."""
        if not math.isfinite(current):
            return False
        if self.best is None:
            return True
        return current > self.best if self.higher_is_better else current < self.best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        filepath = self.filepath.format(epoch=epoch + 1, **logs) if "{" in self.filepath else self.filepath
        if self.save_best_only and self.monitor in logs:
            current = float(logs[self.monitor])
            if not self.is_improvement(current):
                if self.verbose > 0:
                    logger.info("Epoch %d: %s did not improve from %s", epoch + 1, self.monitor, self.best)
                return
            self.best = current
        elif self.save_best_only:
            logger.warning("Epoch %d: %s is not in the logs; saving the model anyway", epoch + 1, self.monitor)
        os.makedirs(os.path.dirname(os.path.abspath(filepath)), exist_ok=True)
        # The extension goes last on the temporary name too: Keras picks the file format from it.
        with atomic_path(filepath, suffix=_weights_or_model_suffix(filepath)) as tmp:
            if self.save_weights_only:
                self.model.save_weights(tmp, overwrite=True)
            else:
                self.model.save(tmp, overwrite=True)
        if self.verbose > 0:
            logger.info("Epoch %d: saved model to %s", epoch + 1, filepath)


class ResumableBackup(keras.callbacks.Callback):
    """Crash-safe backup from which an interrupted ``fit`` resumes at its last completed epoch.

    Each epoch's weights (model and optimizer) go to a new file, renamed into
    place when complete, and a small JSON written the same way names the file
    and the epoch; older files are removed only afterwards. A kill at any
    point leaves a consistent pair.

    At the start of training the backup's weights are restored. Keras has no
    public way for a callback to move the first epoch, so pass it to ``fit``::

        start = ResumableBackup.restored_epoch(backup_dir)
        model.fit(..., initial_epoch=start, callbacks=[ResumableBackup(backup_dir)])

    Args:
        backup_dir: Folder of the backup.
        delete_on_end: Remove the backup when training ends normally.

    Attributes:
        resumed_epoch: The epoch the restored backup resumes at, 0 when
            nothing was restored (set at the start of training).
    """

    METADATA = "training_metadata.json"

    def __init__(self, backup_dir: str | os.PathLike, delete_on_end: bool = True):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.delete_on_end = delete_on_end
        self.resumed_epoch = 0
        self._first_epoch_checked = False

    @classmethod
    def restored_epoch(cls, backup_dir: str | os.PathLike) -> int:
        """The epoch a backup folder resumes at (0 when there is no backup)."""
        metadata = cls._read_metadata(Path(backup_dir))
        return int(metadata["epoch"]) if metadata else 0

    @classmethod
    def _read_metadata(cls, backup_dir: Path) -> dict | None:
        try:
            metadata = json.loads((backup_dir / cls.METADATA).read_text(encoding="utf-8"))
            if (backup_dir / metadata["weights"]).is_file():
                return metadata
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.resumed_epoch = 0
        self._first_epoch_checked = False
        metadata = self._read_metadata(self.backup_dir)
        if metadata is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.backup_dir / metadata["weights"])
        self.resumed_epoch = int(metadata["epoch"])
        logger.info("Restored the state of epoch %d from %s", self.resumed_epoch, self.backup_dir)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if not self._first_epoch_checked:
            self._first_epoch_checked = True
            if self.resumed_epoch and epoch != self.resumed_epoch:
                logger.warning(
                    "Training starts at epoch %d but the backup in %s resumes at epoch %d: pass "
                    "initial_epoch=ResumableBackup.restored_epoch(backup_dir) to fit",
                    epoch + 1, self.backup_dir, self.resumed_epoch + 1,
                )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epoch + 1:05d}.weights.h5"
        with atomic_path(self.backup_dir / name, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp, overwrite=True)
        write_text_atomically(self.backup_dir / self.METADATA, json.dumps({"epoch": epoch + 1, "weights": name}))
        for old in self.backup_dir.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.delete_on_end and self.backup_dir.exists():
            shutil.rmtree(self.backup_dir)
