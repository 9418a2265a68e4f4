"""Slow, readable reference implementations, computed from covariance matrices pair by pair.

They follow the formulas literally and share no code with the fast path, so tests can cross-check
it and ``cca-scale bench`` can time the naive per-pair method against it. NumPy only, float64.
"""

from __future__ import annotations

import numpy as np

__all__ = ["reference_cca", "reference_cka", "reference_cosine", "reference_euclidean",
           "reference_mean_cca", "reference_procrustes", "reference_pwcca", "reference_pwcca_paper",
           "reference_pwcca_svcca", "reference_svcca"]


def _inv_sqrt(cov: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(cov)
    return (v / np.sqrt(w)) @ v.T


def reference_cca(x: np.ndarray, y: np.ndarray):
    """Canonical correlations and x's canonical variates from ``Sxx^-1/2 Sxy Syy^-1/2``.

    Returns ``(rho, h)`` with ``rho`` (k,) descending and ``h`` (n_datapoints, k) the
    Gram-Schmidt-orthonormalised canonical variates of x, ``k = min(n_neurons_x, n_neurons_y)``.
    Assumes full-rank, centred-able input (no dropped neurons).
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    xc, yc = x - x.mean(0), y - y.mean(0)
    n = x.shape[0]
    sxx, syy, sxy = xc.T @ xc / (n - 1), yc.T @ yc / (n - 1), xc.T @ yc / (n - 1)
    ix, iy = _inv_sqrt(sxx), _inv_sqrt(syy)
    u, rho, _ = np.linalg.svd(ix @ sxy @ iy, full_matrices=False)
    h = xc @ ix @ u  # canonical variates, orthogonal in exact arithmetic (paper eq. **)
    h, _ = np.linalg.qr(h)  # "explicitly orthonormalize via Gram-Schmidt"
    return rho, h


def reference_pwcca_paper(x: np.ndarray, y: np.ndarray) -> float:
    """The paper's Section 2.2: ``1 - sum_i alpha_i rho_i``, ``alpha_i ~ sum_j |<h_i, z_j>|``."""
    rho, h = reference_cca(x, y)
    xc = np.asarray(x, np.float64) - np.mean(x, axis=0)
    alpha = np.abs(h.T @ xc).sum(axis=1)
    alpha /= alpha.sum()
    return float(1.0 - np.sum(alpha * rho))


def reference_mean_cca(x: np.ndarray, y: np.ndarray) -> float:
    return float(1.0 - reference_cca(x, y)[0].mean())


def reference_svcca(x: np.ndarray, y: np.ndarray, keep) -> float:
    """SVD-reduce each centred layer to its top directions, then mean CCA."""
    reduced = []
    for a in (x, y):
        ac = np.asarray(a, np.float64) - np.mean(a, axis=0)
        u, s, _ = np.linalg.svd(ac, full_matrices=False)
        if isinstance(keep, (int, np.integer)):
            k = min(int(keep), len(s))
        else:
            frac = np.cumsum(s**2) / np.sum(s**2)
            k = int(np.argmax(frac >= keep - 1e-12) + 1)
        reduced.append(u[:, :k] * s[:k])
    return reference_mean_cca(*reduced)


def reference_pwcca_svcca(x: np.ndarray, y: np.ndarray, epsilon: float = 1e-10) -> float:
    """The original implementation's PWCCA (google/svcca), step by step from covariances.

    The method the original uses for every pair: covariance of the stacked layers; blocks rescaled
    by their max |entry|; low-variance neurons dropped; ``epsilon * I`` added; pseudo-inverse; eigh
    square root; SVD; weights from the side with fewer kept neurons, from un-whitened directions
    ``(Z - mu) c + mu``, QR, projected onto the uncentred kept neurons. Its upstream bug (PR #9)
    is fixed, and kept-neuron means are used.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    dx = x.shape[1]
    cov = np.cov(x.T, y.T)
    sxx, sxy, syy = cov[:dx, :dx], cov[:dx, dx:], cov[dx:, dx:]
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)
    kx = np.abs(np.diag(sxx)) >= epsilon
    ky = np.abs(np.diag(syy)) >= epsilon
    sxx = sxx[np.ix_(kx, kx)] + epsilon * np.eye(kx.sum())
    syy = syy[np.ix_(ky, ky)] + epsilon * np.eye(ky.sum())
    sxy = sxy[np.ix_(kx, ky)]

    def inv_sqrt_pinv(a):
        w, v = np.linalg.eigh(np.linalg.pinv(a))
        return v @ (np.diag(np.sqrt(w)) @ v.T)

    # Same association order as the original: its SVD signs, and so its value, depend on it.
    u, s, vh = np.linalg.svd(inv_sqrt_pinv(sxx) @ (sxy @ inv_sqrt_pinv(syy)))
    s = np.abs(s)
    if kx.sum() <= ky.sum():
        acts, kept, coef = x, kx, u
    else:
        acts, kept, coef = y, ky, vh.T
    z = acts[:, kept]
    mu = z.mean(axis=0)
    dirns = (z - mu) @ coef + mu
    p, _ = np.linalg.qr(dirns)
    weights = np.abs(p.T @ z).sum(axis=1)
    weights /= weights.sum()
    return float(1.0 - np.sum(weights * s))


def reference_pwcca(x: np.ndarray, y: np.ndarray, *, variant: str = "paper",
                    epsilon: float = 1e-10) -> float:
    """PWCCA ``d(x, y)`` in either variant: :func:`reference_pwcca_paper` or
    :func:`reference_pwcca_svcca`."""
    if variant == "paper":
        return reference_pwcca_paper(x, y)
    return reference_pwcca_svcca(x, y, epsilon)


def reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    """``1 - ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` (Kornblith et al. 2019, linear)."""
    xc = np.asarray(x, np.float64) - np.mean(x, axis=0)
    yc = np.asarray(y, np.float64) - np.mean(y, axis=0)
    hsic = np.linalg.norm(xc.T @ yc) ** 2
    return float(1.0 - hsic / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))


def reference_cosine(x: np.ndarray, y: np.ndarray) -> float:
    """``1 - <X, Y>_F / (||X||_F ||Y||_F)`` on the uncentred activations, neuron by neuron."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(1.0 - np.sum(x * y) / (np.linalg.norm(x) * np.linalg.norm(y)))


def reference_euclidean(x: np.ndarray, y: np.ndarray) -> float:
    """``sqrt(||X - Y||_F^2 / n_datapoints)``: root-mean-square distance between datapoints."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.sqrt(np.sum((x - y) ** 2) / x.shape[0]))


def reference_procrustes(x: np.ndarray, y: np.ndarray) -> float:
    """``arccos(||Xc^T Yc||_* / (||Xc||_F ||Yc||_F))``: the angular Procrustes distance (Williams et
    al. 2021), the angle between the centred layers after the best rotation of one onto the other
    (the narrower one zero-padded), with the nuclear norm as the sum of singular values."""
    xc = np.asarray(x, np.float64) - np.mean(x, axis=0)
    yc = np.asarray(y, np.float64) - np.mean(y, axis=0)
    nuclear = np.sum(np.linalg.svd(xc.T @ yc, compute_uv=False))
    return float(np.arccos(np.clip(nuclear / (np.linalg.norm(xc) * np.linalg.norm(yc)), 0, 1)))
