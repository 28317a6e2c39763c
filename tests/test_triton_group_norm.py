"""The Triton GroupNorm kernels (bench/gpu_check/candidates/), run by Triton's interpreter on the CPU.

They are written for CUDA (bench/gpu_profile.py times them there); the interpreter runs the same kernel code with
NumPy, so the arithmetic, the masks at the edges of rows and tiles, and the merge of split statistics are checked
here on small shapes.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("triton")  # torch's Linux wheels bring it; the engine itself never imports it

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def interpreted() -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "tests.triton_interpreted"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def test_kernels_keep_the_dtype_and_the_layout(interpreted: dict[str, Any]) -> None:
    cases = interpreted["kernels"]
    assert len(cases) == 3 * 3 * 2 * 2  # shapes x dtypes x layouts x swish
    assert all(case["same_dtype"] and case["same_layout"] for case in cases)


def test_reduced_precision_results_are_within_one_unit_in_the_last_place(interpreted: dict[str, Any]) -> None:
    reduced = [case for case in interpreted["kernels"] if case["dtype"] != "float32"]
    assert len(reduced) == 24
    assert [case for case in reduced if case["error"] > case["ulp"]] == []


def test_float32_results_are_within_1e_5_of_the_largest_value_even_where_the_mean_dwarfs_the_spread(
    interpreted: dict[str, Any],
) -> None:
    exact = [case for case in interpreted["kernels"] if case["dtype"] == "float32"]
    assert len(exact) == 12
    assert [case for case in exact if case["error"] > 1e-5 * case["largest"]] == []


def test_a_swapped_resblock_runs_the_fused_kernel_only_on_reduced_features(interpreted: dict[str, Any]) -> None:
    block = interpreted["resblock"]
    assert block["swaps"] == 2 and block["norm_types"] == ["TritonGroupNorm"]
    assert block["float32_identical"] and block["float32_kernel_calls"] == {"plain": 0, "with swish": 0}
    assert block["bf16_kernel_calls"] == {"plain": 0, "with swish": 2}
    assert block["bf16_triton_error"] <= 1.25 * block["bf16_native_error"]


@pytest.mark.parametrize(("arch", "dtype"), [(75, "fp16"), (86, "bf16"), (90, "fp16"), (90, "bf16")])
def test_every_kernel_compiles_for_the_gpus_spaces_and_the_check_run_on(
    arch: int, dtype: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # T4 (sm_75, fp16 only), A10G (sm_86), H100 (sm_90): Triton compiles to a GPU binary without a GPU present,
    # so what the interpreter cannot see (types, layouts, register allocation) is checked here.
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from bench.gpu_check.candidates import triton_group_norm as kernels

    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))  # compiled here, not found in a cache
    compiled = []
    for channels in (64, 1024):
        launches = [
            (kernels._row_moments_nchw, {"BLOCK": kernels.STATISTICS_BLOCK}),
            (kernels._row_moments_nhwc, {"C": channels, "G": 32, "ROWS": kernels.TILE_VALUES // channels}),
            (kernels._row_statistics, {"SPLITS": 16}),
            (kernels._normalize_nchw, {"SWISH": True, "BLOCK": kernels.NORMALIZE_BLOCK}),
            (kernels._normalize_nhwc, {"C": channels, "G": 32, "SWISH": True, "ROWS": kernels.TILE_VALUES // channels}),
        ]
        for kernel, constants in launches:
            source = ASTSource(fn=kernel, signature=_signature(kernel, dtype), constexprs=constants)
            binary = triton.compile(source, target=GPUTarget("cuda", arch, 32))
            compiled.append((kernel.fn.__name__, len(binary.asm["cubin"])))
    assert len(compiled) == 10 and all(size > 0 for _, size in compiled)
    assert any(tmp_path.iterdir())


def _signature(kernel: Any, dtype: str) -> dict[str, str]:
    """Triton's argument types for one of the kernels: features in `dtype`, statistics and affine in float32."""
    types = {}
    for parameter in kernel.params:
        name = parameter.name
        if parameter.is_constexpr:
            types[name] = "constexpr"
        elif name in ("x_ptr", "y_ptr"):
            types[name] = f"*{dtype}"
        elif name.endswith("_ptr"):
            types[name] = "*fp32"
        else:
            types[name] = "fp32" if name == "eps" else "i32"
    return types
