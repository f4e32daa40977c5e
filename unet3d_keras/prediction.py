"""Prediction: sliding windows over whole volumes, test-time augmentation, label maps.

Volumes in the data pipeline are channels-first, ``(n_channels, x, y, z)``;
the model's batches follow ``keras.config.image_data_format()``. The volume is
moved to the model's layout once, windows are cut from it as views, batched,
predicted with ``predict_on_batch``, and accumulated into one preallocated
sum array and one weight array (O(volume + windows x window size)).

Fixed from the reference: ``patch_wise_prediction`` read past its list of
windows when ``batch_size > 1`` (the last batch is now short), and its
reconstruction allocated two full volumes per window.
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Sequence

import keras
import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from .augment import generate_permutation_keys, permute_data, reverse_permute_data
from .fileio import atomic_path
from .utils.patches import compute_patch_indices

logger = logging.getLogger(__name__)

WEIGHTINGS = ("uniform", "gaussian")


def _channels_last() -> bool:
    return keras.config.image_data_format() == "channels_last"


def model_patch_shape(model: keras.Model) -> tuple[int | None, int | None, int | None]:
    """Spatial input shape of a model, ``(x, y, z)`` (None where the model takes any size)."""
    shape = tuple(model.input_shape[1:])
    return shape[:3] if _channels_last() else shape[1:]


def model_channels(model: keras.Model) -> int:
    """Number of input channels of a model."""
    shape = tuple(model.input_shape[1:])
    return int(shape[3] if _channels_last() else shape[0])


def gaussian_importance_map(patch_shape: Sequence[int], sigma_scale: float = 1.0 / 8) -> np.ndarray:
    """Window weights that fall off from the centre (nnU-Net's importance map).

    Args:
        patch_shape: ``(px, py, pz)``.
        sigma_scale: Standard deviation as a fraction of the window size.

    Returns:
        float32 ``(px, py, pz)``, maximum 1, strictly positive.
    """
    axes = []
    for size in patch_shape:
        coords = np.arange(size, dtype=np.float64) - (size - 1) / 2
        sigma = max(size * sigma_scale, 1e-6)
        axes.append(np.exp(-0.5 * (coords / sigma) ** 2))
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weights /= weights.max()
    # Zero weights would leave border voxels undefined where only one window covers them.
    return np.maximum(weights, 1e-3).astype(np.float32)


def _window_predictor(model: keras.Model, mirror: bool):
    """A function mapping a model-format batch to predictions, averaged over flips if asked."""
    spatial_axes = (1, 2, 3) if _channels_last() else (2, 3, 4)

    def predict_batch(batch: np.ndarray) -> np.ndarray:
        prediction = np.asarray(model.predict_on_batch(batch), dtype=np.float32)
        if not mirror:
            return prediction
        count = 1
        for n_axes in (1, 2, 3):
            for axes in itertools.combinations(spatial_axes, n_axes):
                flipped = np.asarray(model.predict_on_batch(np.flip(batch, axes)), dtype=np.float32)
                prediction += np.flip(flipped, axes)
                count += 1
        return prediction / count

    return predict_batch


def sliding_window_prediction(
    model: keras.Model,
    volume: np.ndarray,
    patch_shape: Sequence[int] | None = None,
    overlap: int | Sequence[int] = 0,
    batch_size: int = 1,
    weighting: str = "uniform",
    mirror: bool = False,
    show_progress: bool = False,
) -> np.ndarray:
    """Predict a whole channels-first volume window by window.

    Args:
        model: Keras model; its spatial input shape is the window (or
            ``patch_shape`` for a model that takes any size).
        volume: ``(n_channels, x, y, z)``.
        patch_shape: Window size when the model's input size is not fixed.
        overlap: Voxels shared by neighbouring windows (per axis or one int).
        batch_size: Windows per model call; the last batch may be shorter.
        weighting: ``uniform`` (plain average of overlapping windows, the
            reference's result) or ``gaussian`` (sigma = 1/8 of the window).
        mirror: Average over the 8 mirrorings of each window (test-time
            augmentation, 8x the model calls).
        show_progress: Progress bar over windows.

    Returns:
        float32 ``(n_labels, x, y, z)``.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, received {weighting!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, received {batch_size}")
    volume = np.asarray(volume)
    if volume.ndim != 4:
        raise ValueError(f"expected a channels-first volume (n_channels, x, y, z), received shape {volume.shape}")
    if model_channels(model) != volume.shape[0]:
        raise ValueError(
            f"the model takes {model_channels(model)} input channels but the volume has {volume.shape[0]}"
        )
    window = model_patch_shape(model)
    if any(size is None for size in window):
        window = tuple(int(s) for s in (patch_shape or volume.shape[1:]))
    window = tuple(int(s) for s in window)
    image_shape = volume.shape[1:]
    indices = compute_patch_indices(image_shape, window, overlap)
    channels_last = _channels_last()
    # The volume is edge-padded once so that every window is a plain view of it.
    pad_low = np.maximum(-indices.min(axis=0), 0)
    pad_high = np.maximum(indices.max(axis=0) + window - np.asarray(image_shape), 0)
    source = np.moveaxis(volume, 0, -1) if channels_last else volume
    source = np.asarray(source, dtype=np.float32)
    if pad_low.any() or pad_high.any():
        widths = [(int(lo), int(hi)) for lo, hi in zip(pad_low, pad_high)]
        widths = widths + [(0, 0)] if channels_last else [(0, 0)] + widths
        source = np.pad(source, widths, mode="edge")
    padded_shape = tuple(np.asarray(image_shape) + pad_low + pad_high)
    weights = gaussian_importance_map(window) if weighting == "gaussian" else None
    predict_batch = _window_predictor(model, mirror)

    total = None
    weight_sum = np.zeros(padded_shape, dtype=np.float32)
    corners = indices + pad_low
    progress = tqdm(total=len(corners), desc="windows", unit="window", disable=not show_progress, leave=False)
    for start in range(0, len(corners), batch_size):
        chunk = corners[start:start + batch_size]
        slices = [tuple(slice(c, c + w) for c, w in zip(corner, window)) for corner in chunk]
        if channels_last:
            batch = np.stack([source[s] for s in slices])
        else:
            batch = np.stack([source[(slice(None),) + s] for s in slices])
        prediction = predict_batch(batch)
        if not channels_last:
            prediction = np.moveaxis(prediction, 1, -1)
        if total is None:
            total = np.zeros(padded_shape + (prediction.shape[-1],), dtype=np.float32)
        for window_prediction, s in zip(prediction, slices):
            if weights is None:
                total[s] += window_prediction
                weight_sum[s] += 1.0
            else:
                total[s] += window_prediction * weights[..., None]
                weight_sum[s] += weights
        progress.update(len(chunk))
    progress.close()
    crop = tuple(slice(int(lo), int(lo) + size) for lo, size in zip(pad_low, image_shape))
    total = total[crop]
    total /= weight_sum[crop][..., None]
    return np.ascontiguousarray(np.moveaxis(total, -1, 0))


def patch_wise_prediction(
    model: keras.Model,
    data: np.ndarray,
    overlap: int = 0,
    batch_size: int = 1,
    permute: bool = False,
    weighting: str = "uniform",
    mirror: bool = False,
    show_progress: bool = False,
) -> np.ndarray:
    """Predict a volume with windows of the model's input size (reference API).

    Args:
        model: Keras model with a fixed spatial input size.
        data: ``(1, n_channels, x, y, z)`` as in the reference, or
            ``(n_channels, x, y, z)``.
        overlap: Voxels shared by neighbouring windows.
        batch_size: Windows per model call (works for any value; the
            reference read past its window list when > 1).
        permute: Average each window over the 48 cube permutations (cubic
            windows only).
        weighting: ``uniform`` or ``gaussian`` blending of overlaps.
        mirror: Average over the 8 mirrorings (cheaper test-time augmentation).
        show_progress: Progress bar over windows.

    Returns:
        float32 ``(n_labels, x, y, z)``.
    """
    data = np.asarray(data)
    volume = data[0] if data.ndim == 5 else data
    if permute:
        return _permuted_sliding_window(model, volume, overlap, batch_size, weighting, show_progress)
    return sliding_window_prediction(
        model, volume, overlap=overlap, batch_size=batch_size, weighting=weighting, mirror=mirror,
        show_progress=show_progress,
    )


def _permuted_sliding_window(model, volume, overlap, batch_size, weighting, show_progress):
    """Average of sliding-window predictions over the 48 permutations of the volume."""
    window = model_patch_shape(model)
    if len(set(window)) != 1 or len(set(volume.shape[1:])) != 1:
        raise ValueError(
            f"permute=True needs a cubic window and volume; window {tuple(window)}, volume {volume.shape[1:]}"
        )
    keys = sorted(generate_permutation_keys())
    total = None
    for key in tqdm(keys, desc="permutations", disable=not show_progress, leave=False):
        prediction = sliding_window_prediction(
            model, permute_data(volume, key), overlap=overlap, batch_size=batch_size, weighting=weighting
        )
        restored = reverse_permute_data(prediction, key)
        total = restored if total is None else total + restored
    return total / len(keys)


def predict(model: keras.Model, data: np.ndarray, permute: bool = False) -> np.ndarray:
    """Predict a channels-first batch ``(n, n_channels, x, y, z)`` -> ``(n, n_labels, x, y, z)``.

    With ``permute`` each item is averaged over the 48 cube permutations.
    """
    data = np.asarray(data, dtype=np.float32)
    if permute:
        return np.stack([predict_with_permutations(model, item) for item in data])
    return _predict_channels_first(model, data)


def _predict_channels_first(model: keras.Model, data: np.ndarray) -> np.ndarray:
    batch = np.moveaxis(data, 1, -1) if _channels_last() else data
    prediction = np.asarray(model.predict_on_batch(batch), dtype=np.float32)
    return np.moveaxis(prediction, -1, 1) if _channels_last() else prediction


def predict_with_permutations(model: keras.Model, data: np.ndarray) -> np.ndarray:
    """Average prediction of one channels-first item over the 48 permutations of the cube."""
    predictions = [
        reverse_permute_data(_predict_channels_first(model, permute_data(data, key)[np.newaxis])[0], key)
        for key in sorted(generate_permutation_keys())
    ]
    return np.mean(predictions, axis=0)


def get_prediction_labels(
    prediction: np.ndarray, threshold: float = 0.5, labels: Sequence[int] | None = None
) -> list[np.ndarray]:
    """Label maps from a batch of sigmoid or softmax predictions.

    Sigmoid outputs (one channel per label): each voxel takes the label of its
    largest output, or 0 where no output reaches ``threshold``. Softmax outputs
    (``len(labels) + 1`` channels, background first): each voxel takes its most
    probable class, 0 for background.

    Args:
        prediction: ``(n, n_labels, x, y, z)``, or ``(n, n_labels + 1, x, y, z)`` for softmax.
        threshold: Minimum sigmoid output for a label.
        labels: Label values of the outputs, e.g. ``(1, 2, 4)``; 1..n_labels
            when None.

    Returns:
        A list of n uint8 ``(x, y, z)`` label maps.
    """
    prediction = np.asarray(prediction)
    n_labels = prediction.shape[1]
    if labels and n_labels == len(labels) + 1:
        lookup = np.asarray([0, *labels], dtype=np.uint8)
        return [lookup[np.argmax(item, axis=0)] for item in prediction]
    values = np.asarray(list(labels) if labels else range(1, n_labels + 1), dtype=np.uint8)
    if len(values) != n_labels:
        raise ValueError(f"{len(values)} label values {values.tolist()} for {n_labels} prediction channels")
    lookup = np.concatenate([[0], values]).astype(np.uint8)
    maps = []
    for item in prediction:
        index = np.argmax(item, axis=0) + 1
        index[np.max(item, axis=0) < threshold] = 0
        maps.append(lookup[index])
    return maps


def prediction_to_image(
    prediction: np.ndarray,
    affine: np.ndarray,
    label_map: bool = False,
    threshold: float = 0.5,
    labels: Sequence[int] | None = None,
):
    """NIfTI image(s) of a prediction ``(1, n_labels, x, y, z)``.

    Returns:
        One label-map image when ``label_map`` (or for a single output);
        otherwise a list of one probability image per label.
    """
    prediction = np.asarray(prediction)
    if prediction.ndim != 5 or prediction.shape[1] < 1:
        raise ValueError(f"expected a prediction of shape (1, n_labels, x, y, z), received {prediction.shape}")
    if prediction.shape[1] == 1:
        data = prediction[0, 0]
        if label_map:
            label = labels[0] if labels else 1
            data = np.where(data > threshold, label, 0).astype(np.uint8)
        return nib.Nifti1Image(data, affine)
    if label_map:
        return nib.Nifti1Image(get_prediction_labels(prediction, threshold=threshold, labels=labels)[0], affine)
    return multi_class_prediction(prediction, affine)


def multi_class_prediction(prediction: np.ndarray, affine: np.ndarray) -> list[nib.Nifti1Image]:
    """One image per output channel of a prediction ``(1, n_labels, x, y, z)``."""
    return [nib.Nifti1Image(prediction[0, i], affine) for i in range(prediction.shape[1])]


def predict_volume(
    model: keras.Model,
    volume: np.ndarray,
    overlap: int = 16,
    batch_size: int = 1,
    permute: bool = False,
    weighting: str = "uniform",
    mirror: bool = False,
    show_progress: bool = False,
) -> np.ndarray:
    """Predict one channels-first volume whole when it matches the model, else by windows.

    Returns:
        float32 ``(n_labels, x, y, z)``.
    """
    window = model_patch_shape(model)
    if tuple(window) == tuple(volume.shape[1:]) or all(s is None for s in window):
        if mirror:
            return sliding_window_prediction(model, volume, mirror=True)
        return predict(model, volume[np.newaxis], permute=permute)[0]
    return patch_wise_prediction(
        model, volume, overlap=overlap, batch_size=batch_size, permute=permute, weighting=weighting,
        mirror=mirror, show_progress=show_progress,
    )


def save_image_atomically(image: nib.spatialimages.SpatialImage, path: str | os.PathLike) -> None:
    """Write a NIfTI image to a temporary name in the same folder, then rename it."""
    # nibabel picks compression from the name: the temporary keeps the target's extension.
    suffix = ".nii.gz" if str(path).endswith(".gz") else os.path.splitext(str(path))[1] or ".nii.gz"
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(image, tmp)


def run_validation_case(
    data_index: int,
    output_dir: str | os.PathLike,
    model: keras.Model,
    data_file,
    training_modalities: Sequence[str],
    output_label_map: bool = False,
    threshold: float = 0.5,
    labels: Sequence[int] | None = None,
    overlap: int = 16,
    permute: bool = False,
    test: bool = False,
    output_basename: str = "prediction.nii.gz",
    batch_size: int = 1,
    weighting: str = "uniform",
    mirror: bool = False,
    picture: bool = False,
) -> list[str]:
    """Predict one subject of an open HDF5 data file and write NIfTI files (reference API).

    With ``test`` the input modalities (``data_{modality}.nii.gz``) and the
    truth (``truth.nii.gz``) are written too; with ``picture`` (and a label
    map) a PNG of three orthogonal slices of the first modality with truth
    and prediction outlines. Every file is written to a temporary name and
    renamed.

    Returns:
        The paths written.
    """
    os.makedirs(output_dir, exist_ok=True)
    affine = np.asarray(data_file.root.affine[data_index])
    volume = np.asarray(data_file.root.data[data_index])
    written = []

    def save(image, name):
        path = os.path.join(output_dir, name)
        save_image_atomically(image, path)
        written.append(path)

    if test:
        for channel, modality in enumerate(training_modalities):
            save(nib.Nifti1Image(volume[channel], affine), f"data_{modality}.nii.gz")
        save(nib.Nifti1Image(np.asarray(data_file.root.truth[data_index][0]), affine), "truth.nii.gz")
    prediction = predict_volume(model, volume, overlap=overlap, batch_size=batch_size, permute=permute,
                                weighting=weighting, mirror=mirror)
    image = prediction_to_image(prediction[np.newaxis], affine, label_map=output_label_map, threshold=threshold,
                                labels=labels)
    if isinstance(image, list):
        for index, channel_image in enumerate(image):
            save(channel_image, f"{index + 1}_{output_basename}")
    else:
        save(image, output_basename)
        if picture:
            from .visualize import save_overlay_png

            stem = output_basename.split(".")[0]
            truth = np.asarray(data_file.root.truth[data_index][0])
            written.append(str(save_overlay_png(volume[0], os.path.join(output_dir, f"{stem}.png"),
                                                prediction=np.asarray(image.dataobj), truth=truth, title=stem)))
    return written


def run_validation_cases(
    validation_keys_file: str | os.PathLike,
    model_file: str | os.PathLike,
    training_modalities: Sequence[str],
    labels: Sequence[int] | None,
    hdf5_file: str | os.PathLike,
    output_label_map: bool = False,
    output_dir: str | os.PathLike = ".",
    threshold: float = 0.5,
    overlap: int = 16,
    permute: bool = False,
    output_basename: str = "{subject}_prediction.nii.gz",
    test: bool = False,
    batch_size: int = 1,
    weighting: str = "uniform",
    mirror: bool = False,
    show_progress: bool = True,
    allow_pickle: bool = False,
    picture: bool = False,
) -> list[str]:
    """Predict the validation subjects of a data file and write NIfTI files (reference API).

    The split file is JSON (a ``.pkl`` file is read only with
    ``allow_pickle=True``). Each subject gets a folder ``output_dir/<subject id>``
    (``validation_case_<index>`` without ids).

    Returns:
        The paths written.
    """
    from .data import open_data_file
    from .generator import load_split, read_subject_ids
    from .training import load_old_model

    model = load_old_model(model_file)
    written = []
    with open_data_file(hdf5_file) as data_file:
        ids = read_subject_ids(data_file)
        indices = load_split(validation_keys_file, int(data_file.root.data.shape[0]), ids,
                             allow_pickle=allow_pickle)
        for index in tqdm(indices, desc="subjects", unit="subject", disable=not show_progress):
            if ids:
                folder = os.path.join(output_dir, ids[index])
                basename = output_basename.format(subject=ids[index])
            else:
                folder = os.path.join(output_dir, f"validation_case_{index}")
                basename = output_basename.replace("{subject}_", "")
            written += run_validation_case(
                index, folder, model, data_file, training_modalities, output_label_map=output_label_map,
                threshold=threshold, labels=labels, overlap=overlap, permute=permute, test=test,
                output_basename=basename, batch_size=batch_size, weighting=weighting, mirror=mirror,
                picture=picture,
            )
    return written


def resample_to_grid(
    data: np.ndarray, affine: np.ndarray, target_affine: np.ndarray, target_shape: Sequence[int], order: int = 0
) -> np.ndarray:
    """Resample ``data`` (voxel-to-world ``affine``) onto another voxel grid of the same space.

    Args:
        data: ``(x, y, z)`` array.
        affine: 4x4 voxel-to-world matrix of ``data``.
        target_affine: 4x4 voxel-to-world matrix of the target grid.
        target_shape: ``(x, y, z)`` of the target grid.
        order: Spline order (0: nearest neighbour, for label maps).

    Returns:
        Array of ``target_shape``; voxels outside ``data`` are 0.
    """
    from scipy import ndimage

    mapping = np.linalg.inv(np.asarray(affine, dtype=np.float64)) @ np.asarray(target_affine, dtype=np.float64)
    return ndimage.affine_transform(
        np.asarray(data), mapping[:3, :3], offset=mapping[:3, 3], output_shape=tuple(int(s) for s in target_shape),
        order=order, mode="constant", cval=0,
    )


def normalize_like_training(volume: np.ndarray, attributes: dict) -> np.ndarray:
    """Apply a data file's normalisation to a new channels-first volume ``(n_channels, x, y, z)``.

    ``dataset``: the stored per-channel training mean and standard deviation;
    ``zscore``: the volume's own foreground statistics; ``none``: unchanged.
    """
    from .normalize import normalize_data, normalize_data_storage

    method = attributes.get("normalization", "none")
    volume = np.asarray(volume, dtype=np.float32)
    if method == "dataset":
        mean = np.asarray(attributes["normalization_mean"], dtype=np.float64)
        std = np.asarray(attributes["normalization_std"], dtype=np.float64)
        if mean.shape != (volume.shape[0],):
            raise ValueError(
                f"the data file's statistics cover {mean.shape[0]} channels but the volume has {volume.shape[0]}"
            )
        return normalize_data(volume, mean, np.where(std > 0, std, 1.0)).astype(np.float32)
    if method == "zscore":
        storage = volume[np.newaxis].copy()
        normalize_data_storage(storage, method="zscore")
        return storage[0]
    return volume


def predict_subject_files(
    model: keras.Model,
    files: Sequence[str | os.PathLike],
    image_shape: Sequence[int],
    attributes: dict,
    labels: Sequence[int],
    crop: bool = True,
    threshold: float = 0.5,
    overlap: int = 16,
    batch_size: int = 1,
    permute: bool = False,
    subject_id: str | None = None,
) -> nib.Nifti1Image:
    """Segment one new subject and return its label map on the subject's own grid.

    The modality files go through the training preprocessing (foreground crop,
    resampling to ``image_shape``, the data file's normalisation); the label
    map is resampled back (nearest neighbour) onto the first file's grid, so it
    has the same shape and affine as the input files. No truth is needed.

    Args:
        model: Trained model whose input channels match ``files``.
        files: One file per training modality, in the training order.
        image_shape: The config's ``data.image_shape``.
        attributes: The training data file's attributes (normalisation).
        labels: Label values of the outputs.

    Returns:
        uint8 label image with the first file's shape and affine.
    """
    from .normalize import read_subject_images
    from .utils.utils import read_image_header

    if model_channels(model) != len(files):
        raise ValueError(
            f"subject {subject_id}: the model takes {model_channels(model)} channels but {len(files)} modality "
            "files were given"
        )
    shape, affine = read_image_header(files[0])
    images = read_subject_images(files, image_shape, crop=crop, subject_id=subject_id)
    volume = normalize_like_training(np.stack([np.asarray(i.dataobj, dtype=np.float32) for i in images]), attributes)
    prediction = predict_volume(model, volume, overlap=overlap, batch_size=batch_size, permute=permute)
    label_map = get_prediction_labels(prediction[np.newaxis], threshold=threshold, labels=labels)[0]
    original = resample_to_grid(label_map, images[0].affine, affine, shape[:3], order=0)
    return nib.Nifti1Image(original.astype(np.uint8), affine)
