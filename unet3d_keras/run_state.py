"""The files of a training run and its saved state: paths, ``state.json``, resume checks, log repair.

Every file of a run lives in the config's ``output_dir``:

    demo_data/            synthetic subjects (when data.source is demo)
    data.h5               preprocessed subjects (data.data_file)
    training_ids.json     the split (split.training_file, split.validation_file)
    validation_ids.json
    config.yaml           the resolved config of the run
    model.keras           the best model so far (training.model_file)
    training.log          per-epoch CSV (training.log_file)
    backup/               state of the last completed epoch, for resuming (kept when training ends, so
                          that raising training.n_epochs trains on from it)
    tensorboard/          TensorBoard logs
    state.json            whether training finished
    validation_scores.csv Dice per validation subject, with a mean row
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .config import Config, ConfigError
from .fileio import write_text_atomically

# Keys that may change between a run and its resume without breaking it.
RESUMABLE_CHANGES = (
    "prediction.",
    "training.n_epochs",
    "training.continue_from_model_file",
    "training.early_stopping_patience",
    "training.mixed_precision",
    "training.distribution",
)
STATE_FILE = "state.json"
CONFIG_FILE = "config.yaml"
SCORES_FILE = "validation_scores.csv"
BACKUP_DIR = "backup"
TENSORBOARD_DIR = "tensorboard"
DEMO_DIR = "demo_data"


@dataclass
class RunPaths:
    """The files of a run, all inside ``config.run_dir``."""

    run_dir: Path
    data_file: Path
    training_file: Path
    validation_file: Path
    model_file: Path
    log_file: Path
    backup_dir: Path
    tensorboard_dir: Path
    state_file: Path
    config_file: Path
    scores_file: Path

    @classmethod
    def from_config(cls, config: Config) -> "RunPaths":
        run = config.run_dir
        return cls(
            run_dir=run,
            data_file=config.run_path(config.data.data_file),
            training_file=config.run_path(config.split.training_file),
            validation_file=config.run_path(config.split.validation_file),
            model_file=config.run_path(config.training.model_file),
            log_file=config.run_path(config.training.log_file),
            backup_dir=run / BACKUP_DIR,
            tensorboard_dir=run / TENSORBOARD_DIR,
            state_file=run / STATE_FILE,
            config_file=run / CONFIG_FILE,
            scores_file=run / SCORES_FILE,
        )

    def outputs(self) -> list[Path]:
        """Everything a run writes (but not its inputs, such as the demo subjects)."""
        return [self.data_file, self.training_file, self.validation_file, self.model_file, self.log_file,
                self.backup_dir, self.tensorboard_dir, self.state_file, self.config_file, self.scores_file]


def resolved_config_dict(config: Config) -> dict:
    """The config as saved with a run: paths made absolute, so the file stands alone."""
    raw = config.to_dict()
    raw["output_dir"] = str(config.run_dir)
    raw["data"]["convention"] = config.label_convention  # the run states its label convention (auto resolved)
    if config.data.data_dir is not None:
        raw["data"]["data_dir"] = str(config.input_path(config.data.data_dir))
    return raw


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every key whose value differs between two config mappings."""
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changes


def check_resumable(config: Config, paths: RunPaths) -> None:
    """Refuse to continue a run whose saved config differs in a way that breaks it."""
    if not paths.config_file.exists():
        return
    saved = yaml.safe_load(paths.config_file.read_text(encoding="utf-8")) or {}
    changes = [
        change for change in config_differences(saved, resolved_config_dict(config))
        if not change.startswith(RESUMABLE_CHANGES)
    ]
    if changes:
        raise ConfigError(
            f"{paths.run_dir} holds a run made with a different config ({'; '.join(changes)}); "
            "restore those values to resume it, or rerun with --overwrite to start afresh"
        )


def saved_n_epochs(paths: RunPaths) -> int | None:
    """``training.n_epochs`` of the config a run was last trained with (None without a readable one)."""
    try:
        saved = yaml.safe_load(paths.config_file.read_text(encoding="utf-8")) or {}
        return int(saved["training"]["n_epochs"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def is_finished(state: dict, n_epochs: int, previous_n_epochs: int | None) -> bool:
    """Whether a run has nothing left to train for ``n_epochs`` epochs.

    A completed run (all its epochs, or stopped early) is trained further once ``n_epochs``
    is raised above the ``previous_n_epochs`` it completed with; early stopping may end the
    extra epochs again.
    """
    if state.get("status") != "complete":
        return False
    done = int(state.get("epochs", 0))
    return n_epochs <= max(done, previous_n_epochs if previous_n_epochs is not None else done)


def clear_run(paths: RunPaths) -> None:
    """Remove the outputs of a previous run (its inputs, e.g. the demo subjects, stay)."""
    for path in paths.outputs():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def read_state(paths: RunPaths) -> dict:
    """The run's ``state.json`` (``{}`` when missing or unreadable)."""
    if not paths.state_file.exists():
        return {}
    try:
        return json.loads(paths.state_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def write_state(paths: RunPaths, state: dict) -> None:
    """Replace the run's ``state.json`` atomically."""
    write_text_atomically(paths.state_file, json.dumps(state, indent=1))


def truncate_log(log_file: Path, epoch: int) -> None:
    """Drop the CSV log rows of epochs ``>= epoch`` (an epoch logged, then killed before its backup)."""
    if not log_file.exists():
        return
    with open(log_file, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    kept = [rows[0]] + [row for row in rows[1:] if row and row[0].isdigit() and int(row[0]) < epoch]
    if len(kept) == len(rows):
        return
    buffer = io.StringIO()
    csv.writer(buffer).writerows(kept)
    write_text_atomically(log_file, buffer.getvalue())


def best_logged_val_loss(log_file: Path) -> float | None:
    """Lowest ``val_loss`` in a training CSV log (None when there is none)."""
    try:
        with open(log_file, newline="", encoding="utf-8") as handle:
            values = [float(row["val_loss"]) for row in csv.DictReader(handle) if row.get("val_loss")]
    except (OSError, ValueError, KeyError):
        return None
    values = [v for v in values if np.isfinite(v)]
    return min(values) if values else None
