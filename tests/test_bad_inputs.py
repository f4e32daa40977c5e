"""Every user-facing script against a matrix of bad inputs (the table of docs/reliability.md).

Each case checks what the user gets: a non-zero exit status, one ``error:`` line that names
the file or key at fault and what was expected, no Python traceback, and no file left behind
or changed (inputs, run folder, output folder). The scripts' ``main(argv)`` runs in this
process -- the same code path as the command line, where ``sys.exit(main())`` -- and a few
checks at the end run real interpreters for the exit status and ``--debug``.

Set ``UNET3D_MATRIX_REPORT=path`` to append each case's error line to ``path`` (JSON lines),
which is how the table of docs/reliability.md is made.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pytest
import yaml

from data_helpers import BRATS_AFFINE, make_brats_folder, make_generic_folder
from reliability_helpers import (
    DISK_FULL_MESSAGES,
    READ_ONLY_MESSAGES,
    call_main,
    error_lines,
    full_disk,
    read_only_folder,
    run_script,
    snapshot,
    temporaries,
)

SHAPE = (16, 16, 16)
MODALITIES = ("t1", "t1ce", "flair", "t2")
MARKER = "CODE_RAN"  # a file that a crafted input would create if its code ran


# --------------------------------------------------------------------------------------------
# Inputs


@dataclass
class Env:
    """Shared inputs, made once per module; no case may change them."""

    root: Path
    subjects: Path  # generic folder: s1..s3/{t1,t1ce,flair,t2,truth}.nii.gz
    config: Path  # the trained run's config (source folder = subjects)
    run: Path  # its run folder: model.keras, data.h5, split, predictions/
    brats: Path  # BraTS folder with one subject S1
    sparse: Path  # sparse label map of subject s1 for densify

    def image(self, modality: str, subject: str = "s1") -> Path:
        return self.subjects / subject / f"{modality}.nii.gz"

    def images(self, subject: str = "s1") -> list[Path]:
        return [self.image(m, subject) for m in MODALITIES]


def tiny_run_config(path: Path, output_dir: str = "run", data_dir: str = "subjects", **sections) -> Path:
    """A config of a tiny run on a folder of subjects (1 epoch, 16^3, depth 2, 2 filters)."""
    config = {
        "output_dir": output_dir, "seed": 1,
        "data": {"source": "folder", "data_dir": data_dir, "image_shape": list(SHAPE)},
        "model": {"depth": 2, "n_base_filters": 2},
        "training": {"n_epochs": 1, "batch_size": 1, "validation_batch_size": 1, "mixed_precision": "off",
                     "workers": 0},
        "prediction": {"overlap": 0},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(7)
    make_generic_folder(str(root / "subjects"), ["s1", "s2", "s3"], rng, shape=SHAPE)
    make_brats_folder(str(root / "brats"), ["S1"], rng, shape=SHAPE, group="")
    config = tiny_run_config(root / "run.yaml")
    status, _, err = call_main("train", ["--config", config, "--quiet"])
    assert status == 0, err[-3000:]
    status, _, err = call_main("predict", ["--config", config, "--quiet"])
    assert status == 0, err[-3000:]
    truth = nib.load(root / "subjects" / "s1" / "truth.nii.gz")
    sparse = np.full(SHAPE, 255, np.uint8)
    sparse[8] = np.asarray(truth.dataobj)[8]
    nib.save(nib.Nifti1Image(sparse, truth.affine), root / "sparse.nii.gz")
    return Env(root=root, subjects=root / "subjects", config=config, run=root / "run", brats=root / "brats",
               sparse=root / "sparse.nii.gz")


def write_bad(kind: str, like: Path, dest: Path) -> Path:
    """A broken version of the image ``like`` at ``dest``."""
    image = nib.load(like)
    data = np.asarray(image.dataobj)
    affine = image.affine
    if kind == "truncated":
        content = like.read_bytes()
        dest.write_bytes(content[: len(content) // 2])
        return dest
    if kind == "not-an-image":
        dest.write_bytes(b"this is not a NIfTI image\n" * 10)
        return dest
    if kind == "2d":
        data = data[:, :, 0]
    elif kind == "4d":
        data = np.stack([data] * 3, axis=-1)
    elif kind == "shape":
        data = data[:, :, :12]
    elif kind == "affine":
        affine = affine.copy()
        affine[:3, 3] += 5.0
    elif kind in ("nan", "inf"):
        data = data.astype(np.float32)
        data[8, 8, 8] = np.nan if kind == "nan" else np.inf
    elif kind == "float64-overflow":  # finite in float64, infinite once read as float32
        data = data.astype(np.float64)
        data[8, 8, 8] = 1e300
    elif kind == "block-3e38":  # finite float32, but no scan holds it (issue 21)
        data = data.astype(np.float32)
        data[4:8, 4:8, 4:8] = 3e38
    elif kind == "label-260":  # would wrap round to 4 if stored as uint8 unchecked
        data = data.astype(np.int16)
        data[data == 4] = 260
    elif kind == "label-3":
        data = data.copy()
        data[data == 4] = 3
    else:
        raise ValueError(kind)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine, dtype=data.dtype if data.dtype == np.int64 else None), dest)
    return dest


# --------------------------------------------------------------------------------------------
# Per-script builders: each returns the argv of one bad call, writing what it needs into `d`.


def train_on_broken_subject(kind: str, modality: str = "flair") -> Callable[[Env, Path], list]:
    def build(env: Env, d: Path) -> list:
        shutil.copytree(env.subjects, d / "subjects")
        write_bad(kind, env.image(modality, "s2"), d / "subjects" / "s2" / f"{modality}.nii.gz")
        return ["--config", tiny_run_config(d / "c.yaml")]
    return build


def train_with(*overrides: str, **sections) -> Callable[[Env, Path], list]:
    def build(env: Env, d: Path) -> list:
        config = tiny_run_config(d / "c.yaml", data_dir=str(env.subjects), **sections)
        return ["--config", config, *[a for o in overrides for a in ("--set", o)]]
    return build


def predict_input(kind: str, modality: str = "flair") -> Callable[[Env, Path], list]:
    def build(env: Env, d: Path) -> list:
        files = [str(p) for p in env.images()]
        files[MODALITIES.index(modality)] = str(write_bad(kind, env.image(modality), d / f"{modality}.nii.gz"))
        return ["--config", env.config, "--input", *files, "--output", d / "out"]
    return build


def predict_with(*extra: str, config_sections: dict | None = None) -> Callable[[Env, Path], list]:
    def build(env: Env, d: Path) -> list:
        config = env.config
        if config_sections is not None:
            sections = dict(config_sections)
            config = tiny_run_config(d / "c.yaml", output_dir=sections.pop("output_dir", str(env.run)),
                                     data_dir=str(env.subjects), **sections)
        return ["--config", config, "--output", d / "out",
                *[str(e).format(d=d, run=env.run, subjects=env.subjects) for e in extra]]
    return build


DENSIFY_FAST = ["--steps", "2", "--set", "model.depth=2", "--set", "model.n_base_filters=2",
                "--set", "training.batch_size=1", "--set", "training.mixed_precision=off", "--quiet"]


def densify_image(kind: str) -> Callable[[Env, Path], list]:
    def build(env: Env, d: Path) -> list:
        image = write_bad(kind, env.image("t1"), d / "image.nii.gz")
        return ["--image", image, "--labels", env.sparse, "--output", d / "dense.nii.gz", *DENSIFY_FAST]
    return build


def densify_labels(kind: str, *extra: str) -> Callable[[Env, Path], list]:
    def build(env: Env, d: Path) -> list:
        labels = write_bad(kind, env.sparse, d / "sparse.nii.gz") if kind else env.sparse
        return ["--image", env.image("t1"), "--labels", labels, "--output", d / "dense.nii.gz", *DENSIFY_FAST,
                *extra]
    return build


def densify_with(*extra: str) -> Callable[[Env, Path], list]:
    def build(env: Env, d: Path) -> list:
        return ["--image", env.image("t1"), "--labels", env.sparse, "--output", d / "dense.nii.gz", *DENSIFY_FAST,
                *[str(e).format(d=d) for e in extra]]
    return build


def preprocess_broken(kind: str, name: str = "t2") -> Callable[[Env, Path], list]:
    def build(env: Env, d: Path) -> list:
        shutil.copytree(env.brats, d / "brats")
        write_bad(kind, env.brats / "S1" / f"S1_{name}.nii.gz", d / "brats" / "S1" / f"S1_{name}.nii.gz")
        return [d / "brats", d / "out", "--no-bias-correction"]
    return build


def evaluate_broken(kind: str, which: str = "prediction") -> Callable[[Env, Path], list]:
    def build(env: Env, d: Path) -> list:
        shutil.copytree(env.run / "predictions", d / "predictions")
        case = sorted(p for p in (d / "predictions").iterdir() if p.is_dir())[0]
        target = next(case.glob("*prediction.nii.gz")) if which == "prediction" else case / "truth.nii.gz"
        write_bad(kind, target, target)
        return [d / "predictions", "--output", d / "scores"]
    return build


def fixed(*argv: str) -> Callable[[Env, Path], list]:
    def build(env: Env, d: Path) -> list:
        return [str(a).format(d=d, run=env.run, subjects=env.subjects, brats=env.brats, root=env.root) for a in argv]
    return build


def with_setup(setup: Callable[[Env, Path], None], build: Callable[[Env, Path], list]) -> Callable:
    def both(env: Env, d: Path) -> list:
        setup(env, d)
        return build(env, d)
    return both


# --------------------------------------------------------------------------------------------
# The matrix


@dataclass
class Case:
    row: str
    entry: str
    build: Callable[[Env, Path], list]
    expect: tuple[str, ...]  # every one must be in the error line
    status: int = 2
    mode: str = ""  # "read-only" or "disk-full": the folder d/"out" is made so before the call
    any_of: tuple[str, ...] = ()  # at least one of these must be in the error line
    name: str = ""

    @property
    def id(self) -> str:
        return f"{self.row}-{self.entry}" + (f"-{self.name}" if self.name else "")


def _mkdirs(*names: str) -> Callable[[Env, Path], None]:
    def setup(env: Env, d: Path) -> None:
        for name in names:
            (d / name).mkdir(parents=True)
    return setup


def _garbage(name: str, content: bytes = b"garbage, not HDF5\n") -> Callable[[Env, Path], None]:
    def setup(env: Env, d: Path) -> None:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(content)
    return setup


def _other_model(input_shape, name="other.keras") -> Callable[[Env, Path], None]:
    def setup(env: Env, d: Path) -> None:
        from unet3d_keras.model import unet_model_3d

        unet_model_3d(input_shape=input_shape, n_labels=3, depth=2, n_base_filters=2).save(d / name)
    return setup


def _lambda_model(env: Env, d: Path) -> None:
    import keras

    inputs = keras.Input((*SHAPE, 4))
    outputs = keras.layers.Lambda(lambda x: x[..., :3] * 0 + 1)(inputs)  # noqa: E731 (the point of the test)
    keras.Model(inputs, outputs).save(d / "lambda.keras")


def _module_call_model(env: Env, d: Path) -> None:
    """A .keras file whose config asks Keras to call os.system (a crafted file, not a Lambda)."""
    with zipfile.ZipFile(env.run / "model.keras") as source:
        config = json.loads(source.read("config.json"))
        layer = config["config"]["layers"][1]
        layer.update(module="os", class_name="system", registered_name=None, config=f"touch {d / MARKER}")
        with zipfile.ZipFile(d / "crafted.keras", "w") as target:
            for item in source.infolist():
                content = json.dumps(config).encode() if item.filename == "config.json" else source.read(item)
                target.writestr(item, content)


class _RunsCode:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _pickled_attribute_data_file(folder: str) -> Callable[[Env, Path], None]:
    def setup(env: Env, d: Path) -> None:
        import h5py

        (d / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(env.run / "data.h5", d / folder / "data.h5")
        with h5py.File(d / folder / "data.h5", "a") as handle:
            handle.attrs["normalization"] = np.bytes_(pickle.dumps(_RunsCode(str(d / MARKER)), protocol=0))
    return setup


def _empty_config(env: Env, d: Path) -> None:
    (d / "empty.yaml").write_text("# my run\n\n")


def _yaml_with_python_tag(env: Env, d: Path) -> None:
    """A config whose YAML asks for a Python call (full yaml.load would run it; safe_load refuses)."""
    (d / "tagged.yaml").write_text(f"output_dir: !!python/object/apply:os.system ['touch {d / MARKER}']\n")


def _copy_run(env: Env, d: Path) -> None:
    shutil.copytree(env.run, d / "run")


def _cases() -> list[Case]:
    c = []
    add = c.append
    # missing file or folder
    add(Case("missing", "train", train_with(data={"data_dir": "no_such_folder"}),
             ("data.data_dir", "no_such_folder")))
    add(Case("missing", "train", fixed("--config", "{d}/no_such.yaml"), ("no_such.yaml", "config file not found"),
             name="config"))
    add(Case("missing", "predict", predict_with("--input", "{subjects}/s1/t1.nii.gz", "{d}/no_such.nii.gz"),
             ("no_such.nii.gz", "no such file")))
    add(Case("missing", "predict", predict_with("--model", "{d}/no_such.keras"), ("no_such.keras", "not found"),
             name="model"))
    add(Case("missing", "densify", densify_with("--image", "{d}/no_such.nii.gz"), ("no_such.nii.gz", "not found")))
    add(Case("missing", "preprocess", fixed("{d}/no_such", "{d}/out"), ("no_such", "not found")))
    add(Case("missing", "evaluate", fixed("{d}/no_such"), ("no_such", "not found")))
    add(Case("missing", "evaluate", fixed("{run}/predictions", "--training-log", "{d}/no_such.log",
                                          "--output", "{d}/out"), ("no_such.log", "not found"), name="log"))
    # empty folder
    add(Case("empty-folder", "train", with_setup(_mkdirs("empty"), train_with(data={"data_dir": "empty"})),
             ("empty",)))
    add(Case("empty-folder", "predict", with_setup(_mkdirs("empty"), predict_with("--input", "{d}/empty")),
             ("empty", "no subjects")))
    add(Case("empty-folder", "densify", with_setup(_mkdirs("empty"), densify_with("--image", "{d}/empty")),
             ("empty",)))
    add(Case("empty-folder", "preprocess", with_setup(_mkdirs("empty"), fixed("{d}/empty", "{d}/out")),
             ("empty", "No BraTS subjects found")))
    add(Case("empty-folder", "evaluate", with_setup(_mkdirs("empty"), fixed("{d}/empty")),
             ("empty", "no subject folder holds")))
    # broken images, one per kind and script
    broken = {
        "truncated": ("Compressed file ended",),
        "not-an-image": ("not a gzip file",),
        "2d": ("3D",),
        "4d": ("3D", "3 volumes"),
        "shape": ("shape",),
        "affine": ("affine",),
        "nan": ("NaN or infinite",),
    }
    for kind, words in broken.items():
        add(Case(kind, "train", train_on_broken_subject(kind), ("flair.nii.gz", "s2", *words)))
        add(Case(kind, "predict", predict_input(kind), ("flair.nii.gz", *words), status=1))
        add(Case(kind, "densify", densify_image(kind), ("image.nii.gz", *words)))
        add(Case(kind, "preprocess", preprocess_broken(kind), ("S1_t2.nii.gz", *words)))
    evaluate_words = dict(broken, nan=("non-integer",), affine=("affine", "grid"))
    for kind, words in evaluate_words.items():
        add(Case(kind, "evaluate", evaluate_broken(kind), ("prediction.nii.gz", *words)))
    add(Case("inf", "predict", predict_input("inf"), ("flair.nii.gz", "NaN or infinite"), status=1))
    add(Case("inf", "densify", densify_image("inf"), ("image.nii.gz", "NaN or infinite")))
    # integer and float overflow
    add(Case("overflow", "train", train_on_broken_subject("label-260", "truth"), ("truth.nii.gz", "260", "uint8")))
    add(Case("overflow", "train", train_on_broken_subject("float64-overflow"), ("flair.nii.gz", "infinite"),
             name="float64"))
    add(Case("overflow", "predict", predict_input("float64-overflow"), ("flair.nii.gz", "infinite"), status=1))
    add(Case("overflow", "densify", densify_image("float64-overflow"), ("image.nii.gz", "infinite")))
    add(Case("overflow", "preprocess", preprocess_broken("float64-overflow"), ("S1_t2.nii.gz", "infinite")))
    add(Case("overflow", "evaluate", evaluate_broken("label-260"), ("prediction.nii.gz", "260")))
    # finite but implausible intensities: a 4x4x4 block of 3e38
    words = ("64 voxels hold implausible intensities (3e+38 to 3e+38)", "data.clip_outliers")
    add(Case("implausible", "train", train_on_broken_subject("block-3e38"), ("flair.nii.gz", "s2", *words)))
    add(Case("implausible", "predict", predict_input("block-3e38"), ("flair.nii.gz", *words), status=1))
    add(Case("implausible", "densify", densify_image("block-3e38"), ("image.nii.gz", *words)))
    add(Case("implausible", "preprocess", preprocess_broken("block-3e38"), ("S1_t2.nii.gz", *words)))
    # an empty config file (only comments)
    for entry in ("train", "predict"):
        add(Case("empty-config", entry, with_setup(_empty_config, fixed("--config", "{d}/empty.yaml")),
                 ("empty.yaml", "the config file is empty (or holds only comments)", "leave out --config")))
    # label values outside the config
    add(Case("labels", "train", train_on_broken_subject("label-3", "truth"), ("truth.nii.gz", "[3]", "data.labels")))
    add(Case("labels", "evaluate", evaluate_broken("label-3", "truth"), ("truth.nii.gz", "[3]", "0, 1, 2, 4")))
    add(Case("labels", "densify", densify_labels("", "--ignore-label", "7"), ("--ignore-label 7", "255")))
    # config keys
    for entry, build in (("train", train_with("training.batchsize=2")),
                         ("predict", predict_with("--set", "training.batchsize=2")),
                         ("densify", densify_with("--set", "training.batchsize=2"))):
        add(Case("unknown-key", entry, build, ("training.batchsize", "did you mean 'training.batch_size'")))
    for entry, build in (("train", train_with("training.batch_size=two")),
                         ("predict", predict_with("--set", "training.batch_size=two")),
                         ("densify", densify_with("--set", "training.batch_size=two"))):
        add(Case("wrong-type", entry, build, ("training.batch_size", "expected integer", "'two'")))
    add(Case("wrong-type", "train", train_with(model={"depth": [2]}), ("model.depth", "expected integer"),
             name="in-file"))
    add(Case("patch-not-divisible", "train", train_with("training.patch_shape=[12,12,12]", "model.depth=4"),
             ("training.patch_shape", "divisible by 8")))
    add(Case("patch-not-divisible", "predict",
             predict_with("--set", "training.patch_shape=[12,12,12]", "--set", "model.depth=4"),
             ("training.patch_shape", "divisible by 8")))
    add(Case("patch-too-big", "train", train_with("training.patch_shape=[32,32,32]"),
             ("training.patch_shape", "larger than data.image_shape")))
    add(Case("patch-too-big", "predict", predict_with("--set", "training.patch_shape=[32,32,32]"),
             ("training.patch_shape", "larger than data.image_shape")))
    # model files
    add(Case("model-shape", "predict", with_setup(_other_model((8, 8, 8, 4)), predict_with("--model", "{d}/other.keras")),
             ("other.keras", "(8, 8, 8, 4)", "(16, 16, 16, 4)")))
    add(Case("model-shape", "predict",
             with_setup(_other_model((16, 16, 16, 2)),
                        predict_with("--model", "{d}/other.keras", "--input", *[f"{{subjects}}/s1/{m}.nii.gz"
                                                                               for m in MODALITIES])),
             ("other.keras", "(16, 16, 16, 2)", "(16, 16, 16, 4)"), name="input-mode"))
    add(Case("model-corrupt", "predict", with_setup(_garbage("broken.h5"), predict_with("--model", "{d}/broken.h5")),
             ("broken.h5", "cannot be loaded")))
    add(Case("model-corrupt", "predict",
             with_setup(_garbage("broken.keras"), predict_with("--model", "{d}/broken.keras")),
             ("broken.keras", "not a .keras model file"), name="keras"))
    add(Case("model-lambda", "predict", with_setup(_lambda_model, predict_with("--model", "{d}/lambda.keras")),
             ("lambda.keras", "refused", "Lambda")))
    add(Case("model-crafted", "predict",
             with_setup(_module_call_model, predict_with("--model", "{d}/crafted.keras")), ("crafted.keras",)))
    # HDF5 data files
    add(Case("hdf5-corrupt", "train", with_setup(_garbage("run/data.h5"), train_with()),
             ("data.h5", "cannot be opened as HDF5")))
    add(Case("hdf5-corrupt", "predict",
             with_setup(_copy_run, with_setup(_garbage("run/data.h5"), predict_with(
                 config_sections={"output_dir": "{d}/run"}))), ("data.h5", "cannot be opened as HDF5")))
    add(Case("hdf5-pickle", "train", with_setup(_pickled_attribute_data_file("run"), train_with()),
             ("data.h5", "refused", "pickled")))
    add(Case("hdf5-pickle", "predict",
             with_setup(_copy_run, with_setup(_pickled_attribute_data_file("run"), predict_with(
                 config_sections={"output_dir": "{d}/run"}))), ("data.h5", "refused", "pickled")))
    add(Case("yaml-python-tag", "train", with_setup(_yaml_with_python_tag, fixed("--config", "{d}/tagged.yaml")),
             ("tagged.yaml", "not valid YAML")))
    add(Case("yaml-python-tag", "predict", with_setup(_yaml_with_python_tag, fixed("--config", "{d}/tagged.yaml")),
             ("tagged.yaml", "not valid YAML")))
    add(Case("split-pickle", "train", train_with(split={"training_file": "training_ids.pkl"}),
             ("training_ids.pkl", "pickle")))
    add(Case("path-outside-run", "train", train_with(data={"data_file": "../../elsewhere.h5"}),
             ("data.data_file", "../../elsewhere.h5", "allow_outside_output_dir")))
    add(Case("path-outside-run", "predict", predict_with("--set", "training.model_file=/tmp/model.keras"),
             ("training.model_file", "/tmp/model.keras", "allow_outside_output_dir")))
    # output folder read-only, disk full
    for mode, words in (("read-only", READ_ONLY_MESSAGES), ("disk-full", DISK_FULL_MESSAGES)):
        add(Case(mode, "train", train_with(output_dir="{d}/out/run"), ("out",), mode=mode, any_of=words))
        add(Case(mode, "predict", predict_with(), ("out",), mode=mode, any_of=words))
        add(Case(mode, "predict", predict_with("--input", *[f"{{subjects}}/s1/{m}.nii.gz" for m in MODALITIES]),
                 ("out",), mode=mode, any_of=words, name="input-mode"))
        add(Case(mode, "densify", densify_with("--output", "{d}/out/dense.nii.gz"), ("out",), mode=mode,
                 any_of=words))
        add(Case(mode, "preprocess", fixed("{brats}", "{d}/out", "--no-bias-correction"), ("out",), mode=mode,
                 any_of=words))
        add(Case(mode, "evaluate", fixed("{run}/predictions", "--output", "{d}/out"), ("out",), mode=mode,
                 any_of=words))
    return c


CASES = _cases()
ROWS = sorted({case.row for case in CASES})


def _resolve(value, d: Path):
    """``{d}`` in config values (output_dir of a case) becomes the case folder."""
    if isinstance(value, str):
        return value.replace("{d}", str(d))
    if isinstance(value, list):
        return [_resolve(v, d) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, d) for k, v in value.items()}
    return value


def _prepare(case: Case, env: Env, d: Path) -> list:
    argv = case.build(env, d)
    for path in d.glob("c.yaml"):  # a builder's config may name the case folder
        path.write_text(yaml.safe_dump(_resolve(yaml.safe_load(path.read_text()), d)))
    return argv


def _report(case: Case, status: int, line: str, d: Path, env: Env) -> None:
    target = os.environ.get("UNET3D_MATRIX_REPORT")
    if target:
        shown = line.replace(str(d), "<case>").replace(str(env.root), "<inputs>")
        with open(target, "a", encoding="utf-8") as stream:
            stream.write(json.dumps({"row": case.row, "entry": case.entry, "name": case.name, "status": status,
                                     "line": shown}) + "\n")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, env: Env, tmp_path: Path):
    d = tmp_path
    argv = _prepare(case, env, d)
    out = d / "out"
    if case.mode:
        out.mkdir(exist_ok=True)
    preexec = None
    with (read_only_folder(out) if case.mode == "read-only" else
          full_disk(out) if case.mode == "disk-full" else _nothing()) as how:
        if case.mode == "disk-full":
            preexec = how
        before = snapshot(env.root, d)
        if preexec is None:
            status, _, err = call_main(case.entry, argv)
        else:  # no tmpfs here: every file write of the script fails instead (RLIMIT_FSIZE)
            done = run_script(case.entry, argv, preexec_fn=preexec)
            status, err = done.returncode, done.stderr
        after = snapshot(env.root, d)
        left = temporaries(d)
    lines = error_lines(err)
    _report(case, status, lines[0] if lines else err.strip()[-300:], d, env)
    assert "Traceback" not in err, err[-3000:]
    assert status == case.status, err[-3000:]
    assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err[-3000:]
    for word in case.expect:
        assert word in lines[0], (word, lines[0])
    if case.any_of:
        assert any(word in lines[0] for word in case.any_of), lines[0]
    assert after == before, "files were added or changed: " + str(sorted(set(after.items()) ^ set(before.items())))
    assert not left, left
    assert not (d / MARKER).exists(), "the crafted input ran its code"


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_every_script_is_in_the_matrix():
    entries = {case.entry for case in CASES}
    assert entries == {"train", "predict", "densify", "preprocess", "evaluate"}
    for row in ("missing", "empty-folder", "truncated", "not-an-image", "2d", "4d", "shape", "affine", "nan",
                "overflow", "labels", "unknown-key", "wrong-type", "patch-not-divisible", "patch-too-big",
                "model-shape", "hdf5-corrupt", "read-only", "disk-full"):
        assert row in ROWS, row


# --------------------------------------------------------------------------------------------
# Positive checks next to the matrix


def test_integer_images_are_read_as_floats_without_wrapping(env: Env, tmp_path: Path):
    """uint16 and int16 images near the top of their range predict exactly as their float32 copies."""
    reference = np.asarray(nib.load(env.image("t1")).dataobj, dtype=np.float64)
    scaled = reference / reference.max()

    def predict(name: str, data: np.ndarray) -> np.ndarray:
        folder = tmp_path / name
        folder.mkdir()
        files = [folder / f"{m}.nii.gz" for m in MODALITIES]
        for path in files:
            nib.save(nib.Nifti1Image(data, BRATS_AFFINE), path)
        status, _, err = call_main("predict", ["--config", env.config, "--quiet", "--input", *files,
                                               "--output", folder / "out"])
        assert status == 0, err[-3000:]
        return np.asarray(nib.load(next((folder / "out").iterdir())).dataobj)

    for dtype, top in ((np.uint16, 65535), (np.int16, 32767)):
        stored = np.round(scaled * top).astype(dtype)  # sums of these overflow in their own type
        assert stored.max() == top
        as_float = predict(f"{np.dtype(dtype).name}-float", stored.astype(np.float32))
        np.testing.assert_array_equal(predict(np.dtype(dtype).name, stored), as_float)


def test_run_files_may_leave_output_dir_with_the_explicit_opt_in(tmp_path: Path):
    from unet3d_keras.config import ConfigError, load_config

    path = tiny_run_config(tmp_path / "c.yaml", data={"data_file": str(tmp_path / "shared" / "data.h5")})
    with pytest.raises(ConfigError, match="data.data_file: .* is not a file inside output_dir"):
        load_config(path)
    config = load_config(path, ["allow_outside_output_dir=true"])
    assert config.run_path(config.data.data_file) == tmp_path / "shared" / "data.h5"
    inside = load_config(path, ["data.data_file=sub/../data.h5"])  # .. that stays inside is fine
    assert inside.run_path(inside.data.data_file).resolve() == tmp_path / "run" / "data.h5"


def test_pickled_attribute_is_refused_in_any_node_and_for_any_protocol(env: Env, tmp_path: Path):
    import h5py

    from unet3d_keras.data import check_data_file, open_data_file
    from unet3d_keras.errors import DataError

    for protocol in (0, 2, 5):
        for node in ("/", "/truth"):
            path = tmp_path / f"p{protocol}{node.strip('/')}.h5"
            shutil.copy(env.run / "data.h5", path)
            with h5py.File(path, "a") as handle:
                handle[node].attrs["x"] = np.bytes_(pickle.dumps(_RunsCode(str(tmp_path / MARKER)), protocol))
            with pytest.raises(DataError, match="pickled Python object"):
                check_data_file(path)
            with pytest.raises(DataError, match="pickled Python object"):
                open_data_file(path, require_complete=False)
    assert not (tmp_path / MARKER).exists()
    # Plain pickled data (what old PyTables wrote for some values) runs nothing and stays readable.
    path = tmp_path / "plain.h5"
    shutil.copy(env.run / "data.h5", path)
    with h5py.File(path, "a") as handle:
        handle["/truth"].attrs["x"] = np.bytes_(pickle.dumps([1, 2], protocol=0))
    check_data_file(path)


# --------------------------------------------------------------------------------------------
# A few real interpreters: exit status, one line, and the traceback only with --debug


def test_scripts_as_commands_print_one_error_line_and_exit_2(tmp_path: Path):
    calls = {
        "train": ["--set", "training.batchsize=2"],
        "predict": ["--config", tmp_path / "no_such.yaml"],
        "densify": ["--image", tmp_path / "no_such.nii.gz", "--labels", tmp_path / "x.nii.gz",
                    "--output", tmp_path / "o.nii.gz"],
        "preprocess": [tmp_path / "no_such", tmp_path / "out"],
        "evaluate": [tmp_path / "no_such"],
    }
    for name, argv in calls.items():
        done = run_script(name, argv, timeout=300)
        assert done.returncode == 2, (name, done.stderr[-2000:])
        lines = done.stderr.strip().splitlines()
        assert lines and lines[-1].startswith("error: ") and len(error_lines(done.stderr)) == 1, (name, lines)
        assert "Traceback" not in done.stderr, (name, done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    debug = run_script("evaluate", [tmp_path / "no_such", "--debug"], timeout=300)
    assert debug.returncode == 2
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("error: ")
