"""Files as the reference (ellisdg/3DUnetCNN v0.3, legacy/) wrote them: its HDF5 data file and its
pickled split files. Written here from reading its data.py, normalize.py and generator.py."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Sequence

import numpy as np
import tables


def write_reference_data_file(path: str | Path, volumes: np.ndarray, truth: np.ndarray, affines: np.ndarray,
                              subject_ids: Sequence[str] | None = None, normalize: bool = True) -> np.ndarray:
    """Write ``path`` as the reference's ``write_data_to_file`` did and return the stored ``/data``.

    Extendable arrays ``/data`` float32 ``(N, C, X, Y, Z)``, ``/truth`` uint8 ``(N, 1, X, Y, Z)`` and
    ``/affine`` float32 ``(N, 4, 4)``, blosc level 5 (data.py:10-19); ``/subject_ids`` as a plain
    array of strings (data.py:81); no attributes. With ``normalize``, every channel is shifted
    and scaled by the mean over subjects of the per-subject means and standard deviations
    (normalize.py:72-83), after everything was written (data.py:82-83).
    """
    volumes = np.asarray(volumes, dtype=np.float32)
    n_subjects, n_channels = volumes.shape[:2]
    shape = volumes.shape[2:]
    with tables.open_file(str(path), mode="w") as handle:
        filters = tables.Filters(complevel=5, complib="blosc")
        data = handle.create_earray(handle.root, "data", tables.Float32Atom(), shape=(0, n_channels, *shape),
                                    filters=filters, expectedrows=n_subjects)
        truth_storage = handle.create_earray(handle.root, "truth", tables.UInt8Atom(), shape=(0, 1, *shape),
                                             filters=filters, expectedrows=n_subjects)
        affine_storage = handle.create_earray(handle.root, "affine", tables.Float32Atom(), shape=(0, 4, 4),
                                              filters=filters, expectedrows=n_subjects)
        for index in range(n_subjects):
            data.append(volumes[index][np.newaxis])
            truth_storage.append(np.asarray(truth[index], dtype=np.uint8)[np.newaxis, np.newaxis])
            affine_storage.append(np.asarray(affines[index])[np.newaxis])
        if subject_ids:
            handle.create_array(handle.root, "subject_ids", obj=list(subject_ids))
        if normalize:
            means = [data[i].mean(axis=(1, 2, 3)) for i in range(n_subjects)]
            stds = [data[i].std(axis=(1, 2, 3)) for i in range(n_subjects)]
            mean, std = np.asarray(means).mean(axis=0), np.asarray(stds).mean(axis=0)
            for index in range(n_subjects):
                data[index] = (data[index] - mean[:, None, None, None]) / std[:, None, None, None]
        return np.asarray(data[:])


def write_reference_split(path: str | Path, indices: Sequence[int]) -> None:
    """A split pickle as the reference's ``pickle_dump`` wrote it (utils.py:13-15): a list of ints."""
    with open(path, "wb") as handle:
        pickle.dump(list(indices), handle)
