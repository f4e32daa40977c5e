import pytest

from unet3d_keras.precision import resolve_mixed_precision


@pytest.mark.parametrize(
    "setting, gpu, bf16, policy",
    [
        ("auto", True, True, "mixed_float16"),
        ("auto", False, True, "mixed_bfloat16"),
        ("auto", False, False, "float32"),
        ("off", True, True, "float32"),
        ("bfloat16", False, False, "mixed_bfloat16"),
        ("float16", False, False, "mixed_float16"),
    ],
)
def test_resolve_mixed_precision(setting, gpu, bf16, policy):
    assert resolve_mixed_precision(setting, gpu=gpu, bf16_cpu=bf16) == policy


def test_unknown_setting():
    with pytest.raises(ValueError, match="training.mixed_precision: expected one of auto, off, bfloat16, float16"):
        resolve_mixed_precision("fp8")


EMULATED = "training.mixed_precision: bfloat16 without AVX512-BF16 or AMX is emulated"
REFUSED = "training.mixed_precision: float16 trains only on a CUDA GPU under TensorFlow"


@pytest.mark.parametrize(
    "helper, setting, machine, expected",
    [
        ("slow_precision_warning", "bfloat16", dict(gpu=False, bf16_cpu=False), EMULATED),
        ("slow_precision_warning", "bfloat16", dict(gpu=False, bf16_cpu=True), None),
        ("slow_precision_warning", "bfloat16", dict(gpu=True, bf16_cpu=False), None),
        ("slow_precision_warning", "float16", dict(gpu=False, bf16_cpu=False), None),
        ("slow_precision_warning", "auto", dict(gpu=False, bf16_cpu=False), None),
        ("slow_precision_warning", "off", dict(gpu=False, bf16_cpu=False), None),
        ("unsupported_precision", "float16", dict(gpu=False, backend="tensorflow"), REFUSED),
        ("unsupported_precision", "float16", dict(gpu=True, backend="tensorflow"), None),
        ("unsupported_precision", "float16", dict(gpu=False, backend="jax"), None),
        ("unsupported_precision", "bfloat16", dict(gpu=False, backend="tensorflow"), None),
        ("unsupported_precision", "auto", dict(gpu=False, backend="tensorflow"), None),
    ],
)
def test_precisions_the_machine_cannot_do_well_are_warned_about_or_refused(helper, setting, machine, expected):
    from unet3d_keras import precision

    message = getattr(precision, helper)(setting, **machine)
    if expected is None:
        assert message is None
    else:
        assert message.startswith(expected)


def test_apply_mixed_precision_warns_or_refuses_what_the_machine_cannot_do_well(monkeypatch, caplog):
    import keras

    from unet3d_keras import precision

    monkeypatch.setattr(precision, "cuda_gpu_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_supports_bfloat16", lambda flags=None: False)
    try:
        assert precision.apply_mixed_precision("bfloat16") == "mixed_bfloat16"
        assert "bfloat16 without AVX512-BF16 or AMX is emulated" in caplog.text
        caplog.clear()
        assert precision.apply_mixed_precision("auto") == "float32"
        assert "emulated" not in caplog.text
        if keras.backend.backend() == "tensorflow":
            with pytest.raises(ValueError, match="float16 trains only on a CUDA GPU"):
                precision.apply_mixed_precision("float16")
            assert keras.config.dtype_policy().name == "float32"  # left as it was
    finally:
        keras.config.set_dtype_policy("float32")
