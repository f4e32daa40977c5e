"""What the CPU at hand is: its model name and the feature flags that decide its fast paths.

Read from ``/proc/cpuinfo`` (Linux); elsewhere the name falls back on what Python reports and the
flags are empty. No Keras here: the example scripts name their machine without loading TensorFlow.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["cpu_flags", "cpu_name", "cpu_supports_bfloat16"]


def _cpuinfo_field(cpuinfo: str | os.PathLike, field: str) -> str | None:
    """The value of the first ``field`` line of ``cpuinfo`` (None where absent or unreadable)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip() == field:
            return value.strip()
    return None


def cpu_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags listed in ``/proc/cpuinfo`` (empty where unreadable)."""
    return set((_cpuinfo_field(cpuinfo, "flags") or "").split())


def cpu_name(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The CPU's model name in ``/proc/cpuinfo``, else the processor or architecture that Python reports."""
    return _cpuinfo_field(cpuinfo, "model name") or platform.processor() or platform.machine()


def cpu_supports_bfloat16(flags: set[str] | None = None) -> bool:
    """True when the CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & flags)
