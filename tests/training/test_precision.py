import pytest

from tfbert.training import cpu_flags, cpu_supports_bfloat16, resolve_precision
from tfbert.training.precision import CPU_FLAGS


def test_auto_precision_follows_the_cpu():
    expected = "mixed_bfloat16" if cpu_supports_bfloat16() else "float32"
    assert resolve_precision("auto") == expected
    assert resolve_precision("float32") == "float32"


def test_unknown_precision_raises():
    with pytest.raises(ValueError, match="Unknown precision='fp8'"):
        resolve_precision("fp8")


def test_cpu_flags_name_the_extensions_in_proc_cpuinfo():
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        present = set(f.read().split())
    expected = [name for flag, name in CPU_FLAGS.items() if flag in present]
    assert cpu_flags() == expected
    assert cpu_supports_bfloat16() == ("avx512_bf16" in present or "amx_bf16" in present)
