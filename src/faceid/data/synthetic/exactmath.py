"""The renderer's transcendental functions, in arithmetic every CPU does alike.

numpy picks an implementation of exp, sin, cos, power … per instruction set at run time
(Intel SVML for float64 on AVX512_SKX machines, its own SIMD kernels for float32 on AVX2
or AVX-512, plain libm elsewhere), and they disagree in the last bit; scipy's filters and
BLAS sums differ by build and CPU too. A last-bit difference moves a pixel across a
rounding boundary now and then, and one pixel changes a JPEG: the embedded dataset came
out 36 bytes different on an AMD machine than in the dvc.lock recorded on an AVX-512
one. Everything here is built from IEEE-754 operations that are correctly rounded on
every CPU (+, −, ×, ÷, sqrt, rint, ldexp, frexp), one numpy ufunc call per operation so
no compiler can fuse a multiply-add, in float64: same inputs, same bits, on any x86-64
or arm64 machine, whatever numpy, scipy or BLAS picks. Accuracy ≈ 1e-15 relative,
far below a pixel's 1/255.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["arcsin", "cos", "exp", "gaussian_filter", "log", "power", "sin", "upsample_cubic"]

# Cody–Waite splits (fdlibm): the high parts have trailing zero bits, so k * HI is exact
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
PIO2_HI, PIO2_LO = 1.57079632673412561417e00, 6.07710050650619224932e-11
_INV_LN2 = 1.4426950408889634
_TWO_OVER_PI = 0.6366197723675814
_SQRT_HALF = 0.7071067811865476
# Taylor terms for (float64, float32) results: truncation error < 1e-17 resp. < 1e-10
# relative (a float32 keeps 7 digits; fewer terms make the renderer ~2x faster)
_EXP_TERMS = [[1.0 / math.factorial(n) for n in range(n_terms)] for n_terms in (14, 9)]  # |r| <= ln2/2
_SIN_TERMS = [[(-1.0) ** n / math.factorial(2 * n + 1) for n in range(n_terms)] for n_terms in (9, 6)]  # |r| <= pi/4
_COS_TERMS = [[(-1.0) ** n / math.factorial(2 * n) for n in range(n_terms)] for n_terms in (10, 7)]
_ATAN_TERMS = [[(-1.0) ** n / (2 * n + 1) for n in range(n_terms)] for n_terms in (13, 7)]  # |y| <= tan(pi/16)
_LOG_TERMS = [[1.0 / (2 * n + 1) for n in range(n_terms)] for n_terms in (12, 7)]  # |s| <= 0.172


def _f64(x) -> np.ndarray:
    """float64, at least 1-d (ufuncs on 0-d arrays return scalars, which take no `out=`)."""
    array = np.asarray(x, dtype=np.float64)
    return array.reshape(1) if array.ndim == 0 else array


def _single(x) -> int:
    """1 when the result is float32 (the short series), else 0."""
    return int(isinstance(x, np.ndarray | np.generic) and np.asarray(x).dtype == np.float32)


def _like(result: np.ndarray, x) -> np.ndarray | float:
    """float for a Python scalar, the input's float dtype for an array (float32 stays float32)."""
    if np.ndim(x) == 0 and not isinstance(x, np.ndarray):
        return float(np.asarray(result).reshape(-1)[0])
    dtype = np.asarray(x).dtype
    return np.asarray(result).reshape(np.shape(x)).astype(dtype if dtype.kind == "f" else np.float64, copy=False)


def _horner(z: np.ndarray, coefficients: list[float]) -> np.ndarray:
    """sum(c[n] * z**n), as separate multiplies and adds."""
    acc = np.full_like(z, coefficients[-1])
    for c in reversed(coefficients[:-1]):  # in place: full-frame float64 temporaries cost page faults
        np.multiply(acc, z, out=acc)
        np.add(acc, c, out=acc)
    return acc


# below this exp(x) rounds to 0 in float32: those entries are left 0, not computed
_SINGLE_UNDERFLOW = -104.0


def _exp(xf: np.ndarray, single: int) -> np.ndarray:
    if single and xf.ndim and xf.size:
        live = xf > _SINGLE_UNDERFLOW  # a Gaussian is mostly its tails: compute only the rest
        if not live.all():
            out = np.zeros_like(xf)
            out[live] = _exp(xf[live], single)
            return out
    xf = np.minimum(np.maximum(xf, -745.5), 709.7)
    k = np.rint(np.multiply(xf, _INV_LN2))
    r = np.multiply(k, LN2_HI)
    np.subtract(xf, r, out=r)
    np.subtract(r, np.multiply(k, LN2_LO), out=r)
    return np.ldexp(_horner(r, _EXP_TERMS[single]), k.astype(np.int64))


def exp(x):
    if isinstance(x, float):
        return _exp_scalar(x)
    return _like(_exp(_f64(x), _single(x)), x)


def _sin_cos_reduced(x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sin r, cos r, k mod 4) with x = k * pi/2 + r, |r| <= pi/4."""
    xf = _f64(x)
    k = np.multiply(xf, _TWO_OVER_PI)
    np.rint(k, out=k)
    r, tmp = np.multiply(k, PIO2_HI), np.multiply(k, PIO2_LO)
    np.subtract(xf, r, out=r)
    np.subtract(r, tmp, out=r)
    r2 = np.multiply(r, r, out=tmp)
    single = _single(x)
    s = _horner(r2, _SIN_TERMS[single])
    return np.multiply(r, s, out=s), _horner(r2, _COS_TERMS[single]), np.mod(k, 4.0, out=k)


def sin(x):
    if isinstance(x, float):
        s, c, q = _sin_cos_scalar(x)
        return (s, c, -s, -c)[int(q)]
    s, c, q = _sin_cos_reduced(x)
    return _like(np.select([q == 0, q == 1, q == 2], [s, c, -s], -c), x)


def cos(x):
    if isinstance(x, float):
        s, c, q = _sin_cos_scalar(x)
        return (c, -s, -c, s)[int(q)]
    s, c, q = _sin_cos_reduced(x)
    return _like(np.select([q == 0, q == 1, q == 2], [c, -s, -c], s), x)


def _atan_unit(y: np.ndarray, single: int) -> np.ndarray:
    """atan(y) for |y| <= 1: two argument halvings (atan y = 2 atan(y / (1 + sqrt(1 + y²)))), then a series."""
    for _ in range(2):
        t = np.multiply(y, y)
        np.add(1.0, t, out=t)
        np.sqrt(t, out=t)
        np.add(1.0, t, out=t)
        y = np.divide(y, t, out=t)
    return np.multiply(4.0, np.multiply(y, _horner(np.multiply(y, y), _ATAN_TERMS[single])))


def arcsin(x):
    """arcsin x = 2 atan(x / (1 + sqrt(1 − x²))), |x| <= 1 (clipped)."""
    if isinstance(x, float):
        return _arcsin_scalar(x)
    xf = np.minimum(np.maximum(_f64(x), -1.0), 1.0)
    y = np.divide(xf, np.add(1.0, np.sqrt(np.subtract(1.0, np.multiply(xf, xf)))))
    return _like(np.multiply(2.0, _atan_unit(y, _single(x))), x)


def _log(xf: np.ndarray, single: int) -> np.ndarray:
    m, e = np.frexp(np.where(xf > 0, xf, 1.0))
    low = m < _SQRT_HALF
    m = np.where(low, np.multiply(m, 2.0), m)
    e = np.subtract(e, low).astype(np.float64)
    s = np.divide(np.subtract(m, 1.0), np.add(m, 1.0, out=m), out=m)
    log_m = _horner(np.multiply(s, s), _LOG_TERMS[single])
    np.multiply(s, log_m, out=log_m)
    np.multiply(2.0, log_m, out=log_m)
    np.add(log_m, np.multiply(e, LN2_LO), out=log_m)
    result = np.add(np.multiply(e, LN2_HI, out=e), log_m, out=e)
    return np.where(xf > 0, result, -np.inf)


def log(x):
    """Natural log of x > 0 (0 → -inf): x = m·2^e, log m by the atanh series."""
    return _like(_log(_f64(x), _single(x)), x)


def power(x, p):
    """x ** p for x >= 0 and p > 0 (what the renderer needs), 0 ** p = 0."""
    xf = _f64(x)
    if np.all(_f64(p) == 1.0):  # the camera's gamma when params.gamma is 0: keep x exactly
        return _like(xf, x)
    single, positive = _single(x), xf > 0
    p = _f64(p)
    if xf.ndim and p.ndim == 0 and not positive.all():  # only the entries that are not 0
        out = np.zeros_like(xf)
        out[positive] = _exp(np.multiply(p, _log(xf[positive], single)), single)
        return _like(out, x)
    result = _exp(np.multiply(p, _log(np.where(positive, xf, 1.0), single)), single)
    return _like(np.where(positive, result, 0.0), x)


# --- the same operations on one Python float: a face's landmarks and box are 14 points,
# each 5 transcendental calls, and a numpy call on a 1-element array costs ~1 µs per
# operation (≈ 9 ms a photo). A Python float is an IEEE float64 and CPython rounds each
# +, −, ×, ÷ on its own (no fused multiply-add); math.sqrt and math.ldexp are exact as
# numpy's, so each result has the bits of the array path's (tests/test_render_speed_equivalence.py).


def _rint(x: float) -> float:
    """np.rint on a float: round half to even, and rint(-0.3) is -0.0."""
    return math.copysign(float(round(x)), x)


def _horner_scalar(z: float, coefficients: list[float]) -> float:
    acc = coefficients[-1]
    for c in reversed(coefficients[:-1]):
        acc = acc * z + c
    return acc


def _exp_scalar(x: float) -> float:
    x = min(max(x, -745.5), 709.7)
    k = _rint(x * _INV_LN2)
    r = x - k * LN2_HI
    r = r - k * LN2_LO
    return math.ldexp(_horner_scalar(r, _EXP_TERMS[0]), int(k))


def _sin_cos_scalar(x: float) -> tuple[float, float, float]:
    k = _rint(x * _TWO_OVER_PI)
    r = x - k * PIO2_HI
    r = r - k * PIO2_LO
    r2 = r * r
    return r * _horner_scalar(r2, _SIN_TERMS[0]), _horner_scalar(r2, _COS_TERMS[0]), k % 4.0


def _arcsin_scalar(x: float) -> float:
    x = min(max(x, -1.0), 1.0)
    y = x / (1.0 + math.sqrt(1.0 - x * x))
    for _ in range(2):
        y = y / (1.0 + math.sqrt(1.0 + y * y))
    return 2.0 * (4.0 * (y * _horner_scalar(y * y, _ATAN_TERMS[0])))


def _kernel(sigma: float, truncate: float) -> np.ndarray:
    radius = int(truncate * float(sigma) + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    z = np.divide(offsets, float(sigma))
    weights = _exp(np.multiply(-0.5, np.multiply(z, z)), 0)
    return np.divide(weights, math.fsum(weights.tolist()))  # fsum: the exact sum, whatever the order


@functools.lru_cache(maxsize=64)
def _kernel_taps(sigma: float, truncate: float) -> tuple[float, ...]:
    """`_kernel` as floats, once per sigma: a photo filters with two or three sigmas, all photos alike."""
    return tuple(_kernel(sigma, truncate).tolist())


def _pad_symmetric(a: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """np.pad(a, radius along axis, mode="symmetric") in float64, by three copies (np.pad's
    generic code cost more than the filter's multiply-adds)."""
    n = a.shape[axis]
    if radius > n:  # the reflection wraps more than once: np.pad knows how
        pad = [(0, 0)] * a.ndim
        pad[axis] = (radius, radius)
        return np.pad(_f64(a), pad, mode="symmetric")
    shape = list(a.shape)
    shape[axis] = n + 2 * radius
    padded = np.empty(shape)
    into, source = np.moveaxis(padded, axis, 0), np.moveaxis(a, axis, 0)
    into[radius : radius + n] = source
    into[:radius] = source[:radius][::-1]  # d c b a | a b c d
    into[radius + n :] = source[n - radius :][::-1]
    return padded


def gaussian_filter(image: np.ndarray, sigma: tuple[float, ...], truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage.gaussian_filter(image, sigma) (mode 'reflect', truncate 4), with the
    taps added in a fixed order in float64; returns the input's dtype."""
    out = image if image.ndim else _f64(image)
    for axis, s in enumerate(sigma):
        if s <= 0:
            continue
        weights = _kernel_taps(float(s), float(truncate))
        radius = len(weights) // 2
        padded = _pad_symmetric(out, radius, axis)  # scipy's 'reflect': d c b a | a b c d
        acc, term = np.zeros(out.shape), np.empty(out.shape)
        n = out.shape[axis]
        window = [slice(None)] * out.ndim
        for i, w in enumerate(weights):
            window[axis] = slice(i, i + n)
            np.add(acc, np.multiply(padded[tuple(window)], w, out=term), out=acc)  # in place: no page faults
        out = acc
    return _f64(out).astype(image.dtype, copy=False)


_POLE = math.sqrt(3.0) - 2.0  # the cubic B-spline's prefilter pole (sqrt: correctly rounded everywhere)


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Whole-sample mirror boundary (d c b | a b c d | c b a), as scipy's 'mirror'."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.mod(index, period)
    return np.where(index >= n, period - index, index)


def _spline_coefficients(a: np.ndarray, axis: int) -> np.ndarray:
    """Cubic B-spline interpolation coefficients along `axis` (Unser's recursive
    prefilter, mirror boundary; what scipy.ndimage.spline_filter1d computes)."""
    s = np.moveaxis(np.multiply(a, 6.0), axis, 0)
    n, z = s.shape[0], _POLE
    causal, zk = [s[0]], 1.0
    for k in range(1, min(n, 30)):  # z**30 < 1e-17: the initial sum's horizon
        zk *= z  # powers by multiplication: libm's pow may round differently per CPU
        causal[0] = np.add(causal[0], np.multiply(s[k], zk))
    for k in range(1, n):
        causal.append(np.add(s[k], np.multiply(causal[k - 1], z)))
    out = [None] * n
    last = np.add(causal[n - 1], np.multiply(causal[n - 2], z)) if n > 1 else causal[0]
    out[n - 1] = np.multiply(last, z / (z * z - 1.0))
    for k in range(n - 2, -1, -1):
        out[k] = np.multiply(np.subtract(out[k + 1], causal[k]), z)
    return np.moveaxis(np.stack(out), 0, axis)


def _spline_axis(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Resample `a` along `axis` to n_out samples, corner-aligned, by cubic spline
    interpolation (scipy.ndimage.zoom's order 3)."""
    n_in = a.shape[axis]
    coefficients = _spline_coefficients(a, axis)
    pos = np.multiply(np.arange(n_out, dtype=np.float64), (n_in - 1) / max(n_out - 1, 1))
    base = np.floor(pos)
    t = np.subtract(pos, base)
    u = np.subtract(1.0, t)
    t2 = np.multiply(t, t)
    t3 = np.multiply(t2, t)
    weights = (  # the uniform cubic B-spline at the samples base-1 … base+2
        np.divide(np.multiply(np.multiply(u, u), u), 6.0),
        np.divide(np.add(np.subtract(np.multiply(3.0, t3), np.multiply(6.0, t2)), 4.0), 6.0),
        np.divide(np.add(np.add(np.add(np.multiply(-3.0, t3), np.multiply(3.0, t2)), np.multiply(3.0, t)), 1.0), 6.0),
        np.divide(t3, 6.0),
    )
    shape = [1] * a.ndim
    shape[axis] = n_out
    acc = np.zeros((*a.shape[:axis], n_out, *a.shape[axis + 1 :]))
    for offset, w in zip((-1, 0, 1, 2), weights, strict=True):
        index = _mirror(base.astype(np.int64) + offset, n_in)
        acc = np.add(acc, np.multiply(np.take(coefficients, index, axis=axis), w.reshape(shape)))
    return acc


def upsample_cubic(coarse: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """scipy.ndimage.zoom(coarse, order=3) to `shape` (height, width), in fixed-order
    float64 arithmetic (scipy's compiled spline code rounds as its build does); the input's dtype."""
    out = _spline_axis(_f64(coarse), shape[0], 0)
    return _spline_axis(out, shape[1], 1).astype(coarse.dtype, copy=False)
