import pytest

from unet3d_keras.precision import cpu_flags, cpu_supports_bfloat16, resolve_mixed_precision


def test_cpu_flags_parsing(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile\n")
    assert {"avx512_bf16", "amx_tile"} <= cpu_flags(info)
    assert cpu_supports_bfloat16(cpu_flags(info))
    assert not cpu_supports_bfloat16({"avx2", "avx512f"})
    assert cpu_flags(tmp_path / "missing") == set()


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
