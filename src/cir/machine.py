"""What machine a number was measured on: the CPU's model and vector extensions (the same code
takes another trajectory on AVX2 than on AVX-512), its cores and torch's threads, and the GPU
where one is used. Every table of results names it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# the vector extensions that change a run's arithmetic, in the order they are named
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_flags(cpuinfo: str | None = None) -> tuple[str, set[str]]:
    """(the CPU's model name, its flags) from /proc/cpuinfo (or `cpuinfo`); the platform's
    processor name and no flags where there is none."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    name = next((line.partition(":")[2].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                platform.processor() or platform.machine())
    flags = {flag for line in cpuinfo.splitlines() if line.startswith(("flags", "Features"))
             for flag in line.partition(":")[2].split()}
    return name, flags


def describe(cpuinfo: str | None = None) -> str:
    """One line: `AMD EPYC (avx2, avx512f, avx512_bf16), 2 cores, 1 torch thread`, and the GPU."""
    import torch

    name, flags = cpu_flags(cpuinfo)
    vectors = [flag for flag in VECTOR_FLAGS if flag in flags]
    threads = torch.get_num_threads()
    line = (f"{name} ({', '.join(vectors) or 'no AVX2'}), {os.cpu_count()} cores, {threads} torch "
            f"thread{'s' if threads != 1 else ''}, torch {torch.__version__}")
    if torch.cuda.is_available():
        line += f", {torch.cuda.get_device_name()}"
    return line
