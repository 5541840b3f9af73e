"""Same inputs, same bytes, whatever the CPU: the dataset and pairs stages under forced
instruction sets, and the renderer's arithmetic checked to be the exact kind.

numpy dispatches exp, sin, cos, power … per instruction set (float64 through Intel SVML on
AVX512_SKX machines only; float32 through its own AVX2 / AVX-512 kernels), and those
disagree in the last bit: on this project's AVX2 machines float32 exp differs from the
baseline build's in ~40% of inputs. The renderer uses none of them (faceid.data.synthetic.exactmath).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from faceid.data.synthetic import exactmath as em

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ROOT / "src" / "faceid" / "synthetic"

# numpy functions whose result depends on the instruction set (or BLAS), and scipy
INEXACT = {"exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sin", "cos", "tan", "arcsin", "arccos",
           "arctan", "arctan2", "sinh", "cosh", "tanh", "power", "float_power", "hypot", "cbrt", "linalg", "dot",
           "matmul", "einsum", "tensordot", "inner", "vdot", "convolve", "correlate", "sum", "mean", "std",
           "var"}  # fmt: skip


def _dispatched_features() -> list[str]:
    """The optional instruction sets numpy uses on this machine (beyond its baseline)."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]


def _outputs(tmp: Path, name: str, env: dict[str, str]) -> dict[str, str]:
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "_isa_outputs.py"), str(tmp / name), "--crop"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.slow
def test_dataset_crop_and_pairs_are_the_same_bytes_under_other_instruction_sets(tmp_path):
    features = _dispatched_features()
    reference = _outputs(tmp_path, "native", {})
    assert any(k.startswith("celeba/") for k in reference) and any(k.startswith("wild/") for k in reference)
    assert any(k.startswith("pairs/") for k in reference)
    # MTCNN's floats differ in the last bits across kernels; the crop decisions and the
    # stored boxes, landmarks and probabilities are quantised (faceid.crop.accept)
    assert "crops/manifest.parquet" in reference and any(k.startswith("crops/shard") for k in reference)
    forced = {
        # numpy's baseline kernels (what a CPU without these features runs), libjpeg-turbo without SIMD
        "baseline": {"NPY_DISABLE_CPU_FEATURES": " ".join(features), "JSIMD_FORCENONE": "1"},
        # torch and oneDNN on their generic paths: MTCNN's convolutions in the crop stage
        "torch-default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    }
    for name, env in forced.items():
        assert _outputs(tmp_path, name, env) == reference, f"{name} ({env}) differs from the native run"


def _calls(tree: ast.AST) -> list[str]:
    """`np.x`, `numpy.x`, `math.x`, `ndimage.x`, scipy imports, `**` by a non-integer and `@`."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("np", "numpy", "math")
        ):
            if node.attr in INEXACT:
                found.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found += [f"import {n} (line {node.lineno})" for n in names if n.split(".")[0] == "scipy"]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            exponent = node.right
            if not (isinstance(exponent, ast.Constant) and isinstance(exponent.value, int)):
                found.append(f"** {ast.unparse(exponent)} (line {node.lineno})")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            found.append(f"@ (line {node.lineno})")
    return found


def test_renderer_uses_only_exact_arithmetic():
    """Every transcendental function of the renderer goes through exactmath (x ** 2 is a
    multiplication; a sum over an axis is left to numpy only where its order is fixed)."""
    for path in sorted(SYNTHETIC.glob("*.py")):
        if path.name == "exactmath.py":
            continue
        assert _calls(ast.parse(path.read_text())) == [], path.name


def test_exactmath_agrees_with_numpy_and_scipy():
    rng = np.random.default_rng(0)
    x = np.linspace(-40.0, 5.0, 20001)
    np.testing.assert_allclose(em.exp(x), np.exp(x), rtol=1e-15)
    angles = np.linspace(-20.0, 20.0, 20001)
    np.testing.assert_allclose(em.sin(angles), np.sin(angles), atol=1e-15)
    np.testing.assert_allclose(em.cos(angles), np.cos(angles), atol=1e-15)
    unit = np.linspace(-1.0, 1.0, 20001)
    np.testing.assert_allclose(em.arcsin(unit), np.arcsin(unit), atol=1e-14)
    positive = np.linspace(1e-6, 10.0, 20001)
    np.testing.assert_allclose(em.log(positive), np.log(positive), atol=1e-15)
    np.testing.assert_allclose(em.power(positive, 0.7), positive**0.7, rtol=1e-14)
    assert em.power(np.array([0.0]), 1.5)[0] == 0.0
    for f, reference in (
        (em.exp, np.exp),
        (em.sin, np.sin),
        (em.cos, np.cos),
        (em.arcsin, np.arcsin),
        (em.log, np.log),
    ):
        assert isinstance(f(0.5), float) and abs(f(0.5) - reference(0.5)) < 1e-15  # scalars stay scalars
        assert f(np.array(0.5)).shape == () and f(np.ones((2, 3), np.float32)).dtype == np.float32
    # float32 in, float32 out, as numpy's (the shorter series: within 2 float32 ulps)
    single = x.astype(np.float32)
    assert em.exp(single).dtype == np.float32
    np.testing.assert_allclose(em.exp(single), np.exp(single), rtol=3e-7)
    image = rng.random((40, 30, 3)).astype(np.float32)
    np.testing.assert_allclose(
        em.gaussian_filter(image, (1.7, 1.7, 0)), ndimage.gaussian_filter(image, (1.7, 1.7, 0)), atol=1e-6
    )
    coarse = rng.standard_normal((20, 17)).astype(np.float32)
    zoomed = ndimage.zoom(coarse, (218 / 20, 178 / 17), order=3)[:218, :178]
    np.testing.assert_allclose(em.upsample_cubic(coarse, (218, 178)), zoomed, atol=1e-5)
