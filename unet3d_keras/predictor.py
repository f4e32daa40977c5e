"""A trained model ready to predict arrays, subjects' files, folders of subjects and validation splits.

A :class:`Predictor` holds a model, the training data file's normalisation attributes and the
prediction settings; it is built once (e.g. :meth:`Predictor.from_files` loads the model once)
and reused. Every prediction goes through one path: a volume is predicted whole when it matches
the model's input, else window by window (:mod:`unet3d_keras.sliding_window`), with the
test-time augmentations of :mod:`unet3d_keras.tta` wrapped around. Volumes are channels-first,
``(n_channels, x, y, z)``; batches handed to the model follow ``keras.config.image_data_format()``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras
import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from .config import Config
from .data import open_data_file
from .errors import USER_ERRORS
from .evaluation import segmentation_scores
from .exported_models import ExportedModel, exported_settings
from .fileio import write_text_atomically
from .hdf5_store import check_data_file
from .inference_io import output_names, probability_images, read_subject_volume, resample_to_grid, save_image_atomically
from .label_maps import get_prediction_labels, prediction_to_image
from .predict_functions import model_channels, model_patch_shape, model_predict_fn
from .samples import read_subject_ids, reading_subject
from .sliding_window import check_window_settings, require_channels_first, sliding_window_inference, window_grid
from .splits import load_split
from .training import load_old_model
from .tta import mirrored, permutation_averaged

logger = logging.getLogger(__name__)

# Written into a folder of predictions: the settings that made them.
SETTINGS_FILE = "prediction_settings.json"
# Errors of one subject's input (unreadable or inconsistent files, wrong channels); the other
# subjects are still predicted.
SUBJECT_ERRORS = USER_ERRORS


class Predictor:
    """A model with its normalisation and prediction settings.

    Args:
        model: Keras model (loaded once, reused for every prediction), or an exported model
            (:class:`~unet3d_keras.exported_models.ExportedModel`).
        attributes: The training data file's attributes (normalisation of new subjects,
            default ``labels`` and ``image_shape``); None for arrays that are already normalised.
        labels: Label values of the outputs, e.g. ``(1, 2, 4)``; 1..n_outputs when None.
        overlap: Voxels shared by neighbouring windows.
        batch_size: Windows per model call.
        permute: Average over the 48 cube permutations (cubic windows and volumes only).
        weighting: ``uniform`` or ``gaussian`` blending of overlapping windows.
        mirror: Average over the 8 mirrorings of each window.
        threshold: Minimum sigmoid output for a label.
        patch_shape: Window size for a model that takes any input size (default: whole volume).
        image_shape: ``(x, y, z)`` new subjects are resampled to (the config's ``data.image_shape``).
        crop: Crop new subjects to their foreground first, as in training.
        ignore_label: Truth value of unannotated voxels, left out of the scores.
        show_progress: Progress bars (over subjects for folders and splits, else over windows).
        clip_outliers: Clip implausible intensities of new subjects (with a warning) instead of
            refusing them (``data.clip_outliers``).
        regions: Scored regions ``{name: label values}`` (default: BraTS 2017-2021's for labels 1, 2, 4).
        output_regions: The label values of each output of a region-based model, outer first
            (its label maps are painted from them, see :mod:`unet3d_keras.regions`); None for one
            output per label.
    """

    def __init__(
        self,
        model: keras.Model,
        attributes: dict | None = None,
        labels: Sequence[int] | None = None,
        *,
        overlap: int = 16,
        batch_size: int = 1,
        permute: bool = False,
        weighting: str = "uniform",
        mirror: bool = False,
        threshold: float = 0.5,
        patch_shape: Sequence[int] | None = None,
        image_shape: Sequence[int] | None = None,
        crop: bool = True,
        ignore_label: int | None = None,
        show_progress: bool = False,
        clip_outliers: bool = False,
        regions: Mapping[str, Sequence[int]] | None = None,
        output_regions: Sequence[Sequence[int]] | None = None,
    ) -> None:
        check_window_settings(weighting, batch_size)
        self.model = model
        self.attributes = dict(attributes or {})
        labels = self.attributes.get("labels") if labels is None else labels
        self.labels = tuple(int(v) for v in labels) if labels is not None else None
        image_shape = self.attributes.get("image_shape") if image_shape is None else image_shape
        self.image_shape = tuple(int(s) for s in image_shape) if image_shape is not None else None
        self.overlap, self.batch_size, self.permute = overlap, batch_size, permute
        self.weighting, self.mirror, self.threshold = weighting, mirror, threshold
        self.patch_shape = tuple(int(s) for s in patch_shape) if patch_shape is not None else None
        self.crop, self.ignore_label, self.show_progress = crop, ignore_label, show_progress
        self.clip_outliers = clip_outliers
        self.regions = None if regions is None else {name: tuple(values) for name, values in regions.items()}
        self.output_regions = None if output_regions is None else tuple(tuple(r) for r in output_regions)
        self.sources: dict[str, str | None] = {}
        self._predict_fn = mirrored(model_predict_fn(model)) if mirror else model_predict_fn(model)

    @classmethod
    def from_config(cls, config: Config, model: keras.Model, attributes: dict | None = None,
                    **settings: Any) -> "Predictor":
        """A predictor with the settings of a run's config (``prediction`` and ``data`` sections);
        keyword ``settings`` override them."""
        pred, data = config.prediction, config.data
        chosen = dict(labels=data.labels, overlap=pred.overlap, batch_size=pred.batch_size, permute=pred.permute,
                      threshold=pred.threshold, image_shape=data.image_shape, crop=data.crop,
                      ignore_label=data.ignore_label, clip_outliers=data.clip_outliers,
                      regions=config.evaluation_regions,
                      output_regions=None if config.output_regions is None else list(config.output_regions.values()))
        return cls(model, attributes, **{**chosen, **settings})

    @classmethod
    def from_files(cls, model_file: str | os.PathLike, data_file: str | os.PathLike | None = None,
                   config: Config | None = None, **settings: Any) -> "Predictor":
        """Load a model file (or export folder), and the attributes of the data file it was trained on, once.

        An export folder's metadata gives the attributes and prediction settings the data file
        and config would; given ones override them.

        Raises:
            DataError: the data file is missing, incomplete or not HDF5, or the model file is broken.
        """
        attributes = check_data_file(data_file) if data_file is not None else None
        if Path(model_file).is_dir():  # an export folder: its metadata holds what the data file would
            model = ExportedModel.load(model_file)
            attributes = model.attributes if attributes is None else attributes
            settings = {**exported_settings(model.metadata), **settings}
        else:
            model = load_old_model(model_file, compile=False)
        if config is None:
            predictor = cls(model, attributes, **settings)
        else:
            predictor = cls.from_config(config, model, attributes, **settings)
        predictor.sources = {"model_file": str(model_file), "data_file": None if data_file is None else str(data_file)}
        return predictor

    def settings(self) -> dict[str, Any]:
        """The prediction settings and source files, as written to :data:`SETTINGS_FILE`."""
        return {**self.sources, "labels": self.labels, "overlap": self.overlap, "batch_size": self.batch_size,
                "permute": self.permute, "weighting": self.weighting, "mirror": self.mirror,
                "threshold": self.threshold, "patch_shape": self.patch_shape, "image_shape": self.image_shape,
                "crop": self.crop, "ignore_label": self.ignore_label, "regions": self.regions,
                "output_regions": self.output_regions,
                "image_data_format": keras.config.image_data_format()}

    def write_settings(self, folder: str | os.PathLike, **extra: Any) -> Path:
        """Write :meth:`settings` (and ``extra`` entries) as JSON into ``folder``."""
        path = Path(folder) / SETTINGS_FILE
        write_text_atomically(path, json.dumps({**self.settings(), **extra}, indent=1, default=str))
        return path

    # Arrays.

    def predict_array(self, volume: np.ndarray) -> np.ndarray:
        """Probabilities of one channels-first volume ``(n_channels, x, y, z)`` -> float32 ``(n_labels, x, y, z)``.

        The volume is predicted whole when it matches the model's input size (or the model
        takes any size and no ``patch_shape`` is set), else window by window.
        """
        return self._predict(volume, windows=False, show_progress=self.show_progress)

    def predict_windows(self, volume: np.ndarray) -> np.ndarray:
        """As :meth:`predict_array`, always window by window (windows of the model's input size)."""
        return self._predict(volume, windows=True, show_progress=self.show_progress)

    def predict_labels(self, volume: np.ndarray) -> np.ndarray:
        """uint8 label map ``(x, y, z)`` of one channels-first volume (see :func:`get_prediction_labels`)."""
        return self._label_map(self._predict(volume, windows=False, show_progress=False))

    def _label_map(self, prediction: np.ndarray) -> np.ndarray:
        return get_prediction_labels(prediction[np.newaxis], threshold=self.threshold, labels=self.labels,
                                     regions=self.output_regions)[0]

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities of whole items ``(n, n_channels, x, y, z)`` -> ``(n, n_labels, x, y, z)``, in one call."""
        batch = np.asarray(batch, dtype=np.float32)
        if self.permute:
            return np.stack([self._permuted(self._predict_whole, item, item.shape[1:], False) for item in batch])
        return self._predict_whole_batch(batch)

    def window_count(self, image_shape: Sequence[int]) -> int:
        """How many windows :meth:`predict_array` predicts for a volume of ``image_shape`` ``(x, y, z)``
        (1 when it predicts it whole), each once, or 8 times mirrored, or 48 times permuted."""
        if self._predicts_whole(image_shape):
            return 1
        return len(window_grid(image_shape, self._window(image_shape), self.overlap)[0])

    def _predicts_whole(self, image_shape: Sequence[int]) -> bool:
        model_window = model_patch_shape(self.model)
        return tuple(model_window) == tuple(image_shape) or all(s is None for s in model_window)

    def _predict(self, volume: np.ndarray, windows: bool, show_progress: bool) -> np.ndarray:
        volume = require_channels_first(volume)
        if model_channels(self.model) != volume.shape[0]:
            raise ValueError(
                f"the model takes {model_channels(self.model)} input channels but the volume has {volume.shape[0]}")
        image_shape = volume.shape[1:]
        whole = not windows and self._predicts_whole(image_shape)
        window = tuple(image_shape) if whole else self._window(image_shape)
        if whole:
            def predict(v: np.ndarray, progress: bool) -> np.ndarray:
                return self._predict_whole(v)
        else:
            def predict(v: np.ndarray, progress: bool) -> np.ndarray:
                return sliding_window_inference(self._predict_fn, v, window, self.overlap, self.batch_size,
                                                self.weighting, show_progress=progress)
        if self.permute:
            return self._permuted(lambda v: predict(v, False), volume, window, show_progress)
        return predict(volume, show_progress)

    def _window(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        window = model_patch_shape(self.model)
        if any(size is None for size in window):
            window = self.patch_shape or image_shape
        return tuple(int(s) for s in window)

    def _permuted(self, predict: Callable[[np.ndarray], np.ndarray], volume: np.ndarray,
                  window: Sequence[int], show_progress: bool) -> np.ndarray:
        if len(set(window)) != 1 or len(set(volume.shape[1:])) != 1:
            raise ValueError(
                f"permute=True needs a cubic window and volume; window {tuple(window)}, volume {volume.shape[1:]}")
        return permutation_averaged(predict, show_progress)(volume)

    def _predict_whole(self, volume: np.ndarray) -> np.ndarray:
        return self._predict_whole_batch(np.asarray(volume, dtype=np.float32)[np.newaxis])[0]

    def _predict_whole_batch(self, batch: np.ndarray) -> np.ndarray:
        return np.moveaxis(keras.ops.convert_to_numpy(self._predict_fn(np.moveaxis(batch, 1, -1))), -1, 1)

    # Files.

    def predict_subject(self, files: Sequence[str | os.PathLike], subject_id: str | None = None,
                        label_map: bool = True) -> nib.Nifti1Image | list[nib.Nifti1Image]:
        """Label map of one new subject (no truth needed), on the subject's own grid.

        The modality files (one per training modality, in the training order) go through the
        training preprocessing (:func:`~unet3d_keras.inference_io.read_subject_volume`); the
        label map is resampled back (nearest neighbour) onto the first file's grid.

        Returns:
            uint8 label image with the first file's shape and affine; without ``label_map``, one
            float32 probability image per label (resampled linearly) instead.
        """
        if model_channels(self.model) != len(files):
            raise ValueError(f"subject {subject_id}: the model takes {model_channels(self.model)} channels but "
                             f"{len(files)} modality files were given")
        if self.image_shape is None:
            raise ValueError("image_shape is needed to resample new subjects (give a config or a data file)")
        volume, affine, shape, original_affine = read_subject_volume(
            files, self.image_shape, self.attributes, crop=self.crop, subject_id=subject_id,
            clip_outliers=self.clip_outliers)
        if not label_map:
            return probability_images(self.predict_array(volume), affine, original_affine, shape)
        original = resample_to_grid(self.predict_labels(volume), affine, original_affine, shape, order=0)
        return nib.Nifti1Image(original.astype(np.uint8), original_affine)

    def predict_subjects(
        self, subjects: Sequence[tuple[str, Sequence[str | os.PathLike]]], output: str | os.PathLike,
        output_basename: str = "{subject}_prediction.nii.gz", label_map: bool = True,
    ) -> tuple[list[Path], list[tuple[str, BaseException]]]:
        """Write ``<output>/<output_basename>`` for each ``(subject id, modality files)``
        (probability maps ``<i>_<output_basename>`` without ``label_map``; see
        :func:`~unet3d_keras.inference_io.output_names`).

        A subject whose input fails (:data:`SUBJECT_ERRORS`) is skipped and returned with its
        error; a write error stops the run.

        Returns:
            ``(files written, [(subject, error), ...])``.
        """
        output = Path(output)
        output_names(output_basename, "subject")  # a bad basename fails before any work
        written, failures = [], []
        for subject, files in tqdm(subjects, desc="subjects", unit="subject", disable=not self.show_progress):
            try:
                images = self.predict_subject(files, subject, label_map=label_map)
            except SUBJECT_ERRORS as error:
                failures.append((subject, error))
                continue
            images = images if isinstance(images, list) else [images]
            output.mkdir(parents=True, exist_ok=True)  # here: a run where every subject fails leaves nothing
            for name, image in zip(output_names(output_basename, subject, len(images)), images):
                save_image_atomically(image, output / name)
                written.append(output / name)
        return written, failures

    # Data files.

    def score(self, truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
        """Dice per label (and BraTS region) of probabilities ``(n_labels, x, y, z)`` against truth ``(x, y, z)``."""
        label_map = self._label_map(prediction)
        labels = self.labels or tuple(range(1, prediction.shape[0] + 1))
        return segmentation_scores(truth, label_map, labels, self.regions, ignore_label=self.ignore_label)

    def score_validation(self, data_file: str | os.PathLike, indices: Sequence[int]) -> dict[str, dict[str, float]]:
        """Dice of each listed subject of a data file.

        Returns:
            ``{subject id: {score: value}}`` (``subject_<index>`` when the file has no ids).
        """
        rows = {}
        with open_data_file(data_file) as handle:
            ids = read_subject_ids(handle)
            for index in tqdm(indices, desc="validation subjects", disable=not self.show_progress):
                with reading_subject(handle, index):
                    volume, truth = np.asarray(handle.root.data[index]), np.asarray(handle.root.truth[index, 0])
                prediction = self._predict(volume, windows=False, show_progress=False)
                rows[ids[index] if ids else f"subject_{index}"] = self.score(truth, prediction)
        return rows

    def predict_case(
        self,
        data_file,
        index: int,
        output_dir: str | os.PathLike,
        modalities: Sequence[str] = (),
        output_label_map: bool = False,
        test: bool = False,
        output_basename: str = "prediction.nii.gz",
        picture: bool = False,
    ) -> tuple[list[str], np.ndarray]:
        """Predict subject ``index`` of an open data file and write NIfTI files into ``output_dir``.

        With ``test`` the input modalities (``data_{modality}.nii.gz``) and the truth
        (``truth.nii.gz``) are written too; with ``picture`` (and a label map) a PNG of three
        orthogonal slices of the first modality with truth and prediction outlines.

        Returns:
            ``(paths written, probabilities (n_labels, x, y, z))``.
        """
        with reading_subject(data_file, index):  # a damaged chunk: one error naming file and subject
            affine = np.asarray(data_file.root.affine[index])
            volume = np.asarray(data_file.root.data[index])
            truth = np.asarray(data_file.root.truth[index][0]) if "/truth" in data_file else None
        os.makedirs(output_dir, exist_ok=True)
        written = []

        def save(image, name):
            path = os.path.join(output_dir, name)
            save_image_atomically(image, path)
            written.append(path)

        if test:
            for channel, modality in enumerate(modalities):
                save(nib.Nifti1Image(volume[channel], affine), f"data_{modality}.nii.gz")
            save(nib.Nifti1Image(truth, affine), "truth.nii.gz")
        prediction = self._predict(volume, windows=False, show_progress=False)
        image = prediction_to_image(prediction[np.newaxis], affine, label_map=output_label_map,
                                    threshold=self.threshold, labels=self.labels, regions=self.output_regions)
        if isinstance(image, list):
            for channel, channel_image in enumerate(image):
                save(channel_image, f"{channel + 1}_{output_basename}")
        else:
            save(image, output_basename)
            if picture:
                # why: matplotlib is imported only when a picture is asked for
                from .visualize import save_overlay_png

                stem = output_basename.split(".")[0]
                written.append(str(save_overlay_png(volume[0], os.path.join(output_dir, f"{stem}.png"),
                                                    prediction=np.asarray(image.dataobj), truth=truth, title=stem)))
        return written, prediction

    def predict_validation(
        self,
        data_file: str | os.PathLike,
        split_file: str | os.PathLike,
        output_dir: str | os.PathLike,
        modalities: Sequence[str] = (),
        output_label_map: bool = False,
        test: bool = False,
        output_basename: str = "{subject}_prediction.nii.gz",
        picture: bool = False,
        allow_pickle: bool = False,
    ) -> tuple[list[str], dict[str, dict[str, float]]]:
        """Predict the subjects of a split file, write them and score them in one pass.

        Each subject gets a folder ``output_dir/<subject id>`` (``validation_case_<index>``
        without ids) filled by :meth:`predict_case`; ``output_dir`` gets :data:`SETTINGS_FILE`.
        The split is JSON (a ``.pkl`` file is read only with ``allow_pickle``).

        Returns:
            ``(paths written, {subject id: {score: value}})`` (as :meth:`score_validation`).
        """
        written, rows = [], {}
        with open_data_file(data_file) as handle:
            ids = read_subject_ids(handle)
            indices = load_split(split_file, int(handle.root.data.shape[0]), ids, allow_pickle=allow_pickle)
            for index in tqdm(indices, desc="subjects", unit="subject", disable=not self.show_progress):
                if ids:
                    folder = os.path.join(output_dir, ids[index])
                    basename = output_basename.format(subject=ids[index])
                else:
                    folder = os.path.join(output_dir, f"validation_case_{index}")
                    basename = output_basename.replace("{subject}_", "")
                paths, prediction = self.predict_case(handle, index, folder, modalities, output_label_map, test,
                                                      basename, picture)
                written += paths
                if "/truth" in handle:
                    rows[ids[index] if ids else f"subject_{index}"] = self.score(handle.root.truth[index, 0],
                                                                                 prediction)
        self.write_settings(output_dir, data_file=str(data_file), split_file=str(split_file),
                            output_label_map=output_label_map)
        return written, rows

