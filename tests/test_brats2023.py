"""BraTS as downloaded today: the 2023+ case folders and labels, region-based training, end to end."""

import csv
import math

import nibabel as nib
import numpy as np
import pytest

from unet3d_keras.config import ConfigError, load_config
from unet3d_keras.data import write_data_to_file
from unet3d_keras.errors import DataError
from unet3d_keras.subjects import find_brats_subjects, find_subjects

NAMES_2023 = ("t1n", "t1c", "t2f", "t2w")  # t1, t1ce, flair, t2


@pytest.fixture
def rng():
    return np.random.default_rng(2023)


def _case(folder, case_id, names, separator, rng, seg=True, shape=(6, 7, 5)):
    case = folder / case_id
    case.mkdir(parents=True)
    for name in names + (("seg",) if seg else ()):
        data = rng.integers(0, 4, shape).astype(np.uint8) if name == "seg" else rng.random(shape).astype(np.float32)
        nib.save(nib.Nifti1Image(data, np.eye(4)), case / f"{case_id}{separator}{name}.nii.gz")
    return case


def test_2023_case_folders_of_every_task_are_found_with_the_reference_modality_names(tmp_path, rng):
    ids = [f"BraTS-{task}-{i:05d}-000" for i, task in enumerate(("GLI", "MEN", "MET", "PED", "SSA"))]
    for case_id in ids:
        _case(tmp_path / "ASNR-MICCAI-BraTS2023-Training", case_id, NAMES_2023, "-", rng)
    subject_ids, files = find_subjects(tmp_path, modalities=("t1", "t1ce", "flair", "t2"))
    assert subject_ids == sorted(ids)
    for case_id, paths in zip(subject_ids, files):
        assert [p.rsplit("/", 1)[1] for p in paths] == [f"{case_id}-{n}.nii.gz" for n in (*NAMES_2023, "seg")]
    # And the other way round: a run configured with the 2023 names reads a 2020 folder.
    _case(tmp_path / "2020", "BraTS20_Training_001", ("t1", "t1ce", "flair", "t2"), "_", rng)
    ids_2020, files_2020 = find_brats_subjects(tmp_path / "2020", modalities=NAMES_2023)
    assert ids_2020 == ["BraTS20_Training_001"]
    assert [p.rsplit("_", 1)[1] for p in files_2020[0]] == ["t1.nii.gz", "t1ce.nii.gz", "flair.nii.gz", "t2.nii.gz",
                                                            "seg.nii.gz"]


def test_a_2023_case_missing_a_modality_is_named(tmp_path, rng):
    _case(tmp_path, "BraTS-GLI-00001-000", ("t1n", "t1c", "t2w"), "-", rng)
    with pytest.raises(DataError, match=r"Subject BraTS-GLI-00001-000: missing modality 'flair': no file "
                                        r"BraTS-GLI-00001-000-flair\.nii\.gz or BraTS-GLI-00001-000-t2f\.nii\.gz"):
        find_brats_subjects(tmp_path)


def test_preprocess_converts_a_2023_folder(tmp_path, rng):
    from brats.preprocess import convert_brats_data

    _case(tmp_path / "in", "BraTS-PED-00007-000", NAMES_2023, "-", rng)
    written = convert_brats_data(str(tmp_path / "in"), str(tmp_path / "out"), bias_correction=False)
    assert [p.rsplit("/", 1)[1] for p in written] == ["BraTS-PED-00007-000"]
    source = nib.load(tmp_path / "in" / "BraTS-PED-00007-000" / "BraTS-PED-00007-000-t2f.nii.gz")
    np.testing.assert_array_equal(nib.load(tmp_path / "out" / "BraTS-PED-00007-000" / "flair.nii.gz").get_fdata(),
                                  source.get_fdata())


def test_convention_sets_labels_and_refuses_others(tmp_path):
    config = load_config(overrides=["data.convention=brats-gli"])
    assert config.data.labels == (1, 2, 3, 4) and config.evaluation_regions["TC"] == (1, 3)
    assert load_config().label_convention == "brats2017" and load_config().evaluation_regions["ET"] == (4,)
    with pytest.raises(ConfigError, match=r"data.labels: \[5\] are not labels of data.convention brats-gli "
                                          r"\[1, 2, 3, 4\]"):
        load_config(overrides=["data.convention=brats-gli", "data.labels=[1, 2, 5]"])
    with pytest.raises(ConfigError, match=r"model.output: regions: the regions of data.regions cannot be turned "
                                          r"back into a label map: region A \[1, 2, 3\] keeps the label values"):
        load_config(overrides=["data.labels=[1, 2, 3]", "data.regions={A: [1, 2, 3], B: [1]}",
                               "model.output=regions"])
    with pytest.raises(ConfigError, match="model.activation: 'softmax' cannot be used with model.output: regions"):
        load_config(overrides=["model.output=regions", "model.activation=softmax"])


def test_labels_outside_the_convention_are_refused_with_the_values_found(tmp_path, rng):
    case = _case(tmp_path, "BraTS-GLI-00002-000", NAMES_2023, "-", rng)
    seg = case / "BraTS-GLI-00002-000-seg.nii.gz"
    nib.save(nib.Nifti1Image(np.full((6, 7, 5), 4, np.uint8), np.eye(4)), seg)  # 2017-2021's enhancing label
    _, files = find_subjects(tmp_path)
    with pytest.raises(DataError, match=r"holds label values \[4\] that are not in data.labels \[1, 2, 3\] "
                                        r"\(values found: \[4\]\)"):
        write_data_to_file(files, tmp_path / "data.h5", image_shape=(4, 4, 4), labels=(1, 2, 3), strict_labels=True)
    assert not (tmp_path / "data.h5").exists()


@pytest.mark.parametrize("output", ["labels", "regions"])
def test_train_predict_and_evaluate_a_tiny_2023_glioma_run(tmp_path, output):
    from brats import evaluate as brats_evaluate
    from brats import predict as brats_predict
    from unet3d_keras.commands.predict import predict_validation_and_report
    from unet3d_keras.pipeline import train_from_config

    config_file = tmp_path / "run.yaml"
    config_file.write_text(
        "data: {source: demo, convention: brats-gli, labels: [1, 2, 3], n_demo_subjects: 3, demo_shape: [20, 18, 16],"
        " image_shape: [16, 16, 16]}\n"
        f"model: {{output: {output}, depth: 2, n_base_filters: 4}}\n"
        "training: {n_epochs: 1, mixed_precision: off, workers: 0}\nsplit: {data_split: 0.6}\n"
        "prediction: {overlap: 0}\n")
    config = load_config(config_file)
    result = train_from_config(config, show_progress=False, verbose=0)
    case_ids = sorted(p.name for p in (config.run_dir / "demo_data").iterdir() if p.is_dir())
    assert case_ids == ["BraTS-GLI-00000-000", "BraTS-GLI-00001-000", "BraTS-GLI-00002-000"]
    scores = next(iter(result.scores.values()))
    assert {"NETC", "SNFH", "ET", "TC", "WT"} <= set(scores) and "RC" not in scores
    assert load_config(result.paths.config_file).label_convention == "brats-gli"

    # Submission files: <case>.nii.gz on the case's own grid, with the convention's labels.
    assert brats_predict.main([str(config.run_dir / "demo_data"), "--config", str(config_file), "--quiet"]) == 0
    for case_id in case_ids:
        image = nib.load(config.run_dir / "brats_predictions" / f"{case_id}.nii.gz")
        truth = nib.load(config.run_dir / "demo_data" / case_id / f"{case_id}-seg.nii.gz")
        assert image.shape == truth.shape and np.allclose(image.affine, truth.affine)
        assert set(np.unique(np.asarray(image.dataobj)).tolist()) <= {0, 1, 2, 3}

    output_dir = config.run_dir / "predictions"
    predict_validation_and_report(config, result.paths.model_file, result.paths.data_file, output_dir, quiet=True)
    assert brats_evaluate.main([str(output_dir), "--convention", "brats-gli"]) == 0
    # Read as 2017-2021 label maps, the enhancing label 3 of the truth is refused.
    assert brats_evaluate.main([str(output_dir), "--output", str(tmp_path / "as_2017"), "--quiet"]) == 2
    assert not (tmp_path / "as_2017").exists()
    rows = list(csv.DictReader(open(output_dir / "brats_scores.csv")))
    assert [row["subject"] for row in rows][-1] == "mean"
    for region in ("NETC", "SNFH", "ET", "RC", "TC", "WT"):
        for score in ("dice", "hd95", "sensitivity", "lesion_dice", "lesion_hd95"):
            value = float(rows[0][f"{region}_{score}"])
            assert math.isnan(value) or value >= 0, (region, score, value)
    assert math.isnan(float(rows[0]["RC_lesion_dice"]))  # no cavity in truth or prediction
    assert (output_dir / "brats_scores_boxplot.png").read_bytes()[:4] == b"\x89PNG"


def test_prediction_inputs_and_the_ready_glioma_config(tmp_path, rng):
    from unet3d_keras.config import DEFAULT_CONFIG
    from unet3d_keras.inference_io import input_subjects

    _case(tmp_path / "val", "BraTS-SSA-00126-000", NAMES_2023, "-", rng, seg=False)
    subjects, failures = input_subjects([tmp_path / "val"], ("t1", "t1ce", "flair", "t2"))
    assert failures == [] and [s for s, _ in subjects] == ["BraTS-SSA-00126-000"]
    assert [p.rsplit("-", 1)[1] for p in subjects[0][1]] == ["t1n.nii.gz", "t1c.nii.gz", "t2f.nii.gz", "t2w.nii.gz"]
    config = load_config(DEFAULT_CONFIG.parent / "configs" / "brats2023_glioma.yaml")
    assert config.label_convention == "brats-gli" and config.data.labels == (1, 2, 3)
    assert config.output_regions == {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
    assert list(config.evaluation_regions) == ["NETC", "SNFH", "ET", "TC", "WT"]


def test_region_model_predicts_label_maps_with_test_time_augmentation():
    from unet3d_keras.model_from_config import build_model
    from unet3d_keras.predictor import Predictor
    from unet3d_keras.regions import regions_to_label_map

    config = load_config(overrides=["data.convention=brats-gli", "data.labels=[1, 2, 3]", "model.output=regions",
                                    "data.image_shape=[8, 8, 8]", "model.depth=2", "model.n_base_filters=2"])
    model = build_model(config)
    assert model.output_shape[-1] == 3  # WT, TC, ET
    predictor = Predictor.from_config(config, model, permute=True, threshold=0.5)
    volume = np.random.default_rng(0).normal(size=(4, 8, 8, 8)).astype(np.float32)
    probabilities = predictor.predict_array(volume)  # averaged over the 48 cube permutations
    label_map = predictor.predict_labels(volume)
    np.testing.assert_array_equal(label_map, regions_to_label_map(probabilities, [(1, 2, 3), (1, 3), (3,)]))
    truth = label_map.copy()
    scores = predictor.score(truth, probabilities)
    assert scores["WT"] == scores["TC"] == scores["ET"] == 1.0 and "label_3" in scores
