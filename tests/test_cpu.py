import platform

from unet3d_keras.cpu import cpu_flags, cpu_name, cpu_supports_bfloat16

# the first lines of one processor in /proc/cpuinfo on an AMD EPYC (a virtual machine's)
CPUINFO = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"
           "flags\t\t: fpu avx2 avx512f avx512_bf16\nvmx flags\t: vnmi\n\nprocessor\t: 1\n"
           "model name\t: AMD EPYC\nflags\t\t: fpu\n")


def test_cpu_flags_parsing(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    assert cpu_flags(info) == {"fpu", "avx2", "avx512f", "avx512_bf16"}  # the first processor's, not "vmx flags"
    assert cpu_supports_bfloat16(cpu_flags(info))
    assert cpu_supports_bfloat16({"amx_bf16"})
    assert not cpu_supports_bfloat16({"avx2", "avx512f"})
    assert cpu_flags(tmp_path / "missing") == set()


def test_cpu_name(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    assert cpu_name(info) == "AMD EPYC"
    info.write_text("processor\t: 0\nflags\t\t: fpu\n")  # no model name (some ARM kernels)
    assert cpu_name(info) == (platform.processor() or platform.machine())
    assert cpu_name(tmp_path / "missing") == (platform.processor() or platform.machine())
