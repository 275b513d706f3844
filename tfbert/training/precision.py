"""Choosing a Keras dtype policy for the hardware at hand."""

import tensorflow as tf

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


# /proc/cpuinfo flag -> the name the benchmarks and README use.
CPU_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX"}


def cpu_flags() -> list[str]:
    """The vector extensions of this CPU that decide tfbert's speed on it,
    among AVX2, AVX-512, AVX512-BF16 and AMX (none where /proc/cpuinfo
    cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            present = set(f.read().split())
    except OSError:
        return []
    return [name for flag, name in CPU_FLAGS.items() if flag in present]


def cpu_supports_bfloat16() -> bool:
    """True when the CPU has native bfloat16 dot products (AVX512-BF16 or AMX)."""
    return bool({"AVX512-BF16", "AMX"} & set(cpu_flags()))


def resolve_precision(precision: str = "auto") -> str:
    """A Keras dtype policy name for `precision`.

    "auto" picks "mixed_bfloat16" on GPUs with native bf16 (compute capability
    8.0+) and on CPUs with AVX512-BF16/AMX, "mixed_float16" on older GPUs, and
    "float32" otherwise. Explicit names are checked and returned.
    """
    if precision == "auto":
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            capability = details.get("compute_capability", (0, 0))
            return "mixed_bfloat16" if capability >= (8, 0) else "mixed_float16"
        return "mixed_bfloat16" if cpu_supports_bfloat16() else "float32"
    if precision not in POLICIES:
        raise ValueError(
            f"Unknown precision={precision!r}; use 'auto' or one of {list(POLICIES)}."
        )
    return precision
