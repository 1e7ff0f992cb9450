"""The transformer random-features kernel (brief §4.2): chapter *The transformer random-features kernel*.

The model [recon/ours, stated in the chapter]: one attention layer and a one-hidden-layer ReLU
MLP, no residual, no LayerNorm, infinitely many heads and infinite widths, only the readout
trained.  Token embeddings ``e_t`` and positional embeddings ``p_i`` are orthonormal, so the
input at position i is ``h_i = e_{x_i} + γ p_i`` and ``⟨h_i(X), h_j(Y)⟩ = (X Yᵀ + γ² I)_ij``.
The readout query is a CLS-like vector orthogonal to every ``h_i``; with random W_Q, W_K its
logits ``u_j = β ⟨q, h_j⟩`` form a Gaussian vector with ``Cov(u(X), u(Y)) = X Yᵀ + γ² I``.  Hence

    κ(X, Y)   = E[ softmax(β u)ᵀ (X Yᵀ + γ² I) softmax(β v) ]          (the attention kernel)
    K_trans   = relu_nngp(κ)                                           (the MLP's NNGP map)

What is here:

* :func:`kappa_mc`            κ by (quasi-)Monte Carlo over the Gaussian logits, a Gram matrix
                              of attention features, so PSD by construction;
* :func:`kappa_quadrature`    κ of one pair by Gauss–Hermite quadrature (smooth, for derivatives);
* :func:`relu_nngp`           the arc-cosine map of a ReLU layer (Cho & Saul), κ -> K_trans;
* :func:`finite_width_kernels` a finite random-features transformer and its empirical kernels;
* :class:`PatternKernel`      K_trans for many token-id strings, computed once per joint
                              equality pattern (κ depends on the strings only through it);
* :func:`template_kappa`, :func:`template_matrix`   the template matrix N of a task (disjoint
                              substitutions), accurately by conditioning on the positional Gaussian;
* :func:`kernel_regression`   ridge regression with K_trans on a task, tested on fresh symbols,
                              and :func:`effective_test_loss`, its prediction from N alone;
* :func:`regression_curves`, :func:`eigen_grid`, :func:`width_convergence`   the chapter's
                              sweeps, stored as ``data/kernel/*.json`` by :func:`cached`.

The KQ identity (``a`` > 0) [ours]: the readout is the mean over query rows i of
``softmax(β u + a (X Xᵀ + γ² I)_i)``; at ``a = 0`` every row equals the brief's κ.

The chapter's figures, drawn from those tables: :func:`width_convergence_figure`,
:func:`eigen_grid_figure`, :func:`kq_gain_figure`, :func:`regression_figure`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Hashable, Sequence

import numpy as np
from scipy.special import roots_hermitenorm, softmax
from scipy.stats import norm, qmc

from .checks import positive_int
from .data import DataConfig, make_data
from .store import cached_result, default_root
from .tasks import from_spec, get_task, task_label
from .templates import TemplateTask, substitute, wildcards

CHUNK = 4096  # Monte Carlo samples per vectorised step


# ----------------------------------------------------------------------------- inputs


def _check(beta: float, gamma: float, a: float = 0.0, samples: int | None = None) -> None:
    for name, v in (("beta", beta), ("gamma", gamma), ("a", a)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0; got {v!r}")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, (int, np.integer))
                                or samples < 2 or samples & (samples - 1)):
        raise ValueError(f"samples must be a power of two >= 2 (Sobol points); got {samples!r}")


def _as_ids(strings: Sequence[Sequence[Hashable]]) -> tuple[np.ndarray, int]:
    """Strings of any hashable tokens -> ``(n, k)`` ids ``0..V-1`` and V."""
    rows = [tuple(s) for s in strings]
    if not rows or not rows[0]:
        raise ValueError("need at least one non-empty string")
    k = len(rows[0])
    if any(len(r) != k for r in rows):
        raise ValueError(f"all strings must have one length; got lengths {sorted({len(r) for r in rows})}")
    vocab: dict = {}
    ids = np.array([[vocab.setdefault(t, len(vocab)) for t in r] for r in rows], dtype=np.int64)
    return ids, len(vocab)


def equality(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``X Yᵀ`` for batches of id strings: ``(n, k)``, ``(m, k)`` -> ``(n, m, k, k)`` of 0/1."""
    return (x[:, None, :, None] == y[None, :, None, :]).astype(np.float64)


def gaussian_samples(samples: int, dim: int, seed: int = 0) -> np.ndarray:
    """``(samples, dim)`` standard normals from a scrambled Sobol sequence (randomised QMC):
    the same ``seed`` gives the same points, so kernels at different (β, γ) share them."""
    points = qmc.Sobol(dim, scramble=True, seed=seed).random(samples)
    return norm.ppf(np.clip(points, 1e-12, 1 - 1e-12))


def _weights(logits: np.ndarray, beta: float, bonus: np.ndarray | None) -> np.ndarray:
    """Attention of the readout: ``(S, n, k)`` logits -> ``(S, n, k)`` weights.

    ``bonus`` ``(..., k, k)`` broadcasting against ``logits[..., None, :]``: the KQ identity's
    ``a (X Xᵀ + γ² I)``; each query row i attends with ``softmax(β u + bonus_i)`` and the rows
    are averaged.
    """
    if bonus is None:
        return softmax(beta * logits, axis=-1)
    rows = softmax(beta * logits[..., None, :] + bonus, axis=-1)  # (..., k_query, k)
    return rows.mean(axis=-2)


# ----------------------------------------------------------------------------- κ


def kappa_mc(strings: Sequence[Sequence[Hashable]], beta: float, gamma: float, a: float = 0.0,
             samples: int = 2 ** 14, seed: int = 0, n_tokens: int | None = None) -> np.ndarray:
    """κ for every pair of ``strings`` by randomised quasi-Monte Carlo over the Gaussian logits.

    One Gaussian vector ``g`` over the token and position coordinates gives every string its
    logits ``u(X) = (X + γ P) g`` and its attention feature ``ψ(X) = softmax(β u)ᵀ (X + γ P)``;
    κ is the sample mean of ``⟨ψ(X), ψ(Y)⟩`` — a Gram matrix, so symmetric and PSD.
    ``n_tokens`` pads the token space (fixed dimension -> identical points across calls).
    Returns ``(n, n)``.
    """
    _check(beta, gamma, a, samples)
    ids, V = _as_ids(strings)
    if n_tokens is not None:
        if n_tokens < V:
            raise ValueError(f"n_tokens = {n_tokens} is fewer than the {V} distinct tokens of the strings")
        V = n_tokens
    n, k = ids.shape
    bonus = None
    if a > 0:
        bonus = a * (equality(ids, ids)[np.arange(n), np.arange(n)] + gamma ** 2 * np.eye(k))  # (n, k, k)
    g_all = gaussian_samples(samples, V + k, seed)
    gram = np.zeros((n, n))
    for start in range(0, samples, CHUNK):
        g = g_all[start:start + CHUNK]                                   # (S, V + k)
        logits = g[:, ids] + gamma * g[:, None, V:]                      # (S, n, k)
        w = _weights(logits, beta, bonus)                                # (S, n, k)
        psi = np.zeros((len(g), n, V + k))                               # attention features
        np.add.at(psi, (slice(None), np.arange(n)[:, None], ids), w)     # token part  Σ_i w_i e_{x_i}
        psi[:, :, V:] = gamma * w                                        # position part γ Σ_i w_i p_i
        gram += np.einsum("snd,smd->nm", psi, psi)
    return gram / samples


def kappa_quadrature(x: Sequence[Hashable], y: Sequence[Hashable], beta: float, gamma: float,
                     nodes: int | None = None, max_points: int = 2_000_000) -> float:
    """κ(x, y) by tensor Gauss–Hermite quadrature over the joint Gaussian (u, v) (plain
    attention, a = 0).  Exact up to quadrature error, which is tiny for small β (the integrand is
    smooth); use it for finite differences.  The joint covariance is factorised on its range, of
    dimension r; ``nodes=None`` takes the most nodes per dimension (at most 20) with
    ``nodes^r <= max_points``."""
    _check(beta, gamma)
    ids, _ = _as_ids([x, y])
    k = ids.shape[1]
    E = equality(ids, ids)                                              # (2, 2, k, k)
    cov = np.block([[E[0, 0], E[0, 1]], [E[1, 0], E[1, 1]]]) + gamma ** 2 * np.block(
        [[np.eye(k), np.eye(k)], [np.eye(k), np.eye(k)]])
    lam, vec = np.linalg.eigh(cov)
    keep = lam > 1e-12 * lam.max()
    L = vec[:, keep] * np.sqrt(lam[keep])                                # (2k, r): w = L z
    r = L.shape[1]
    if nodes is None:
        nodes = min(20, int(max_points ** (1 / r) + 1e-9))
    if nodes ** r > max_points:
        raise ValueError(f"{nodes}^{r} quadrature points exceed max_points = {max_points}; use fewer nodes")
    z1, w1 = roots_hermitenorm(nodes)
    w1 = w1 / w1.sum()
    grids = np.meshgrid(*([z1] * r), indexing="ij")
    z = np.stack([g.ravel() for g in grids], axis=1)                     # (P, r)
    weights = np.prod(np.stack(np.meshgrid(*([w1] * r), indexing="ij")).reshape(r, -1), axis=0)
    w = z @ L.T                                                          # (P, 2k)
    pa, pb = softmax(beta * w[:, :k], axis=1), softmax(beta * w[:, k:], axis=1)
    M = E[0, 1] + gamma ** 2 * np.eye(k)
    return float(np.einsum("p,pi,ij,pj->", weights, pa, M, pb))


# ----------------------------------------------------------------------------- K_trans


def taylor_by_finite_differences(x: Sequence[Hashable], y: Sequence[Hashable], h: float = 0.3, degree: int = 4,
                                 nodes: int | None = None, max_points: int = 2_000_000) -> np.ndarray:
    """The Taylor coefficients of κ(x, y) in (β², γ²) by finite differences of
    :func:`kappa_quadrature`: κ on a ``(degree + 1)²`` grid of β², γ² in [0, h], fitted exactly by a
    polynomial of that degree in each.  Entry ``[i, j]`` is the coefficient of β^(2i) γ^(2j) — an
    independent check of the exact series (chapter *The transformer random-features kernel*); its
    truncation error grows with the order of the term.  ``nodes``, ``max_points``: the quadrature's."""
    s = np.linspace(0, h, degree + 1)
    F = np.array([[kappa_quadrature(x, y, np.sqrt(b2), np.sqrt(g2), nodes=nodes, max_points=max_points) for g2 in s]
                  for b2 in s])
    V = np.vander(s, degree + 1, increasing=True)
    return np.linalg.solve(V, np.linalg.solve(V, F).T).T


def relu_nngp(kxy: np.ndarray, kxx: np.ndarray | None = None, kyy: np.ndarray | None = None) -> np.ndarray:
    """The NNGP map of a ReLU layer with N(0, 1) weights (arc-cosine kernel of degree 1):

        E[relu(wᵀφ_x) relu(wᵀφ_y)] = √(k_xx k_yy)/(2π) · (sin θ + (π − θ) cos θ),
        cos θ = k_xy / √(k_xx k_yy).

    ``kxy`` a square Gram matrix (diagonals taken from it), or a cross matrix ``(n, m)`` with the
    self-kernels ``kxx`` ``(n,)`` and ``kyy`` ``(m,)``.
    """
    kxy = np.asarray(kxy, dtype=np.float64)
    if kxx is None and kyy is None:
        if kxy.ndim != 2 or kxy.shape[0] != kxy.shape[1]:
            raise ValueError(f"without kxx/kyy, kxy must be a square Gram matrix; got shape {kxy.shape}")
        kxx = kyy = np.diag(kxy)
    elif kxx is None or kyy is None:
        raise ValueError("give both kxx and kyy, or neither")
    norms = np.sqrt(np.outer(kxx, kyy))
    if np.any(norms <= 0):
        raise ValueError("self-kernels must be positive")
    theta = np.arccos(np.clip(kxy / norms, -1.0, 1.0))
    return norms / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))


def k_trans(strings: Sequence[Sequence[Hashable]], beta: float, gamma: float, a: float = 0.0,
            samples: int = 2 ** 14, seed: int = 0) -> np.ndarray:
    """``K_trans`` for every pair of ``strings``: ``relu_nngp(kappa_mc(...))``, ``(n, n)``."""
    return relu_nngp(kappa_mc(strings, beta, gamma, a, samples, seed))


# ----------------------------------------------------------------------------- finite width


def finite_width_kernels(strings: Sequence[Sequence[Hashable]], beta: float, gamma: float, heads: int,
                         dim_head: int, mlp_width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A finite random-features transformer and its two empirical kernels ``(κ̂, K̂_trans)``.

    Inputs ``h_i = e_{x_i} + γ p_i`` plus a CLS vector ``c``, all orthonormal coordinates.  Each
    head has N(0, 1) matrices ``W_Q, W_K, W_V`` (``dim_head`` × input dim); its logits are
    ``β ⟨W_Q c, W_K h_j⟩ / √dim_head``, its output ``z = Σ_j a_j W_V h_j``; the layer's output
    ``φ = concat_h z_h / √(heads · dim_head)``, the MLP's ``relu(W_1 φ) / √mlp_width`` with N(0, 1)
    ``W_1``.  ``κ̂ = φ φᵀ`` and ``K̂_trans`` (the features' Gram) converge to κ and K_trans as
    the widths grow (chapter: the convergence plot).
    """
    _check(beta, gamma)
    for name, v in (("heads", heads), ("dim_head", dim_head), ("mlp_width", mlp_width)):
        positive_int(name, v, numpy_ok=True)
    ids, V = _as_ids(strings)
    n, k = ids.shape
    D = V + k + 1                                                        # tokens, positions, CLS
    H = np.zeros((n, k, D))
    H[np.arange(n)[:, None], np.arange(k)[None], ids] = 1.0
    H[:, np.arange(k), V + np.arange(k)] = gamma
    rng = np.random.default_rng(seed)
    W_q, W_k, W_v = (rng.standard_normal((heads, dim_head, D)) for _ in range(3))
    q = W_q[:, :, -1]                                                    # W_Q c: (heads, m)
    keys = np.einsum("nkd,hmd->nhkm", H, W_k)                            # (n, heads, k, m)
    att = softmax(beta * np.einsum("nhkm,hm->nhk", keys, q) / np.sqrt(dim_head), axis=-1)
    values = np.einsum("nkd,hmd->nhkm", H, W_v)
    phi = np.einsum("nhk,nhkm->nhm", att, values).reshape(n, -1) / np.sqrt(heads * dim_head)
    kappa_hat = phi @ phi.T
    k_hat = np.zeros((n, n))
    for start in range(0, mlp_width, 512):
        w1 = rng.standard_normal((min(512, mlp_width - start), phi.shape[1]))
        hidden = np.maximum(phi @ w1.T, 0.0)
        k_hat += hidden @ hidden.T
    return kappa_hat, k_hat / mlp_width


# ----------------------------------------------------------------------------- many strings


def _canonical_ids(row: np.ndarray) -> tuple[int, ...]:
    """Relabel a token string by first appearance: (7, 3, 7) -> (0, 1, 0)."""
    seen: dict = {}
    return tuple(seen.setdefault(int(t), len(seen)) for t in row)


class PatternKernel:
    """``K_trans`` on token-id strings, computed once per **joint equality pattern**.

    κ(X, Y) depends on the two strings only through ``X Xᵀ``, ``Y Yᵀ`` and ``X Yᵀ`` — the
    equality pattern of the concatenation ``x ⊕ y``.  A data set of n strings has n² pairs but
    only a few patterns: pairs with no common token reduce to the template matrix N, the few pairs
    sharing a token to a handful more.  Every pattern is evaluated with the same Sobol points
    (token space padded to 2k), and the results are cached, so a whole regression curve costs a
    few hundred Monte Carlo evaluations.
    """

    def __init__(self, beta: float, gamma: float, a: float = 0.0, samples: int = 2 ** 14, seed: int = 0):
        _check(beta, gamma, a, samples)
        self.beta, self.gamma, self.a, self.samples, self.seed = beta, gamma, a, samples, seed
        self._kappa: dict[tuple[int, ...], float] = {}  # pattern of x ⊕ y -> κ(x, y)

    def kappa_pattern(self, joint: tuple[int, ...]) -> float:
        """κ(x, y) for the joint canonical pattern of ``x ⊕ y`` (length 2k).  κ is symmetric, so
        ``x ⊕ y`` and ``y ⊕ x`` share one cache entry (the K matrices come out symmetric)."""
        k = len(joint) // 2
        joint = min(joint, _canonical_ids(np.array(joint[k:] + joint[:k])))
        if joint not in self._kappa:
            K = kappa_mc([joint[:k], joint[k:]], self.beta, self.gamma, self.a, self.samples,
                         self.seed, n_tokens=2 * k)
            self._kappa[joint] = float(K[0, 1])
        return self._kappa[joint]

    def self_kappa(self, x: np.ndarray) -> np.ndarray:
        """κ(x, x) for every row of ``x`` ``(n, k)``."""
        pats = [_canonical_ids(r) for r in x]
        table = {p: self.kappa_pattern(p + p) for p in set(pats)}
        return np.array([table[p] for p in pats])

    def matrix(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``K_trans(x_i, y_j)`` for id strings ``x`` ``(n, k)`` and ``y`` ``(m, k)``: ``(n, m)``."""
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
            raise ValueError(f"x and y must be (n, k) and (m, k) id arrays; got {x.shape} and {y.shape}")
        kxx, kyy = self.self_kappa(x), self.self_kappa(y)
        # pairs with no common token: κ depends only on the two strings' own patterns
        px = [_canonical_ids(r) for r in x]
        py = [_canonical_ids(r) for r in y]
        ux, ix = np.unique(np.array(px), axis=0, return_inverse=True)
        uy, iy = np.unique(np.array(py), axis=0, return_inverse=True)
        k = x.shape[1]
        disjoint = np.array([[self.kappa_pattern(tuple(int(t) for t in p) + tuple(int(t) + k for t in q))
                              for q in uy] for p in ux])
        kappa = disjoint[ix.ravel()][:, iy.ravel()]
        # pairs with a common token: patch them one pattern at a time
        for i, j in _sharing_pairs(x, y):
            kappa[i, j] = self.kappa_pattern(_canonical_ids(np.concatenate([x[i], y[j]])))
        return relu_nngp(kappa, kxx, kyy)


def _sharing_pairs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """All (i, j) with a token common to ``x[i]`` and ``y[j]``, by a join on token ids."""
    tx, sx = x.ravel(), np.repeat(np.arange(len(x)), x.shape[1])
    ty, sy = y.ravel(), np.repeat(np.arange(len(y)), y.shape[1])
    order = np.argsort(ty, kind="stable")
    ty, sy = ty[order], sy[order]
    lo, hi = np.searchsorted(ty, tx, "left"), np.searchsorted(ty, tx, "right")
    counts = hi - lo
    i = np.repeat(sx, counts)
    j = sy[np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)])] if counts.sum() else np.empty(0, int)
    return np.unique(np.stack([i, j], axis=1), axis=0) if len(i) else np.empty((0, 2), int)


# ----------------------------------------------------------------------------- template matrix


def disjoint_instances(task: TemplateTask, copies: int = 2) -> list[list[tuple[str, ...]]]:
    """``copies`` instances of every template, each substitution with its own fresh tokens:
    ``out[c][i] = sub(z_i, s_{c,i})``, all images disjoint (regular tokens kept)."""
    out = []
    for c in range(copies):
        row = []
        for i, z in enumerate(task.templates):
            s = {w: f"#{c}.{i}.{w}" for w in wildcards(z)}
            row.append(substitute(z, s))
        out.append(row)
    return out


def template_kappa(task: TemplateTask, beta: float, gamma: float, a: float = 0.0, nodes: int = 16,
                   samples: int = 2 ** 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """κ between disjoint instances of the templates, ``(r, r)``, and each template's self-kernel
    κ(x, x), ``(r,)``, accurately, for tasks without regular tokens.

    Two strings with no common token have independent token Gaussians, and share only the
    positional Gaussian s.  Conditionally on s they are independent, so

        κ(X, Y) = γ² E_s[ m_X(s) · m_Y(s) ],   m_X(s) = E_t[ softmax(β (t_X + γ s)) ],

    with ``t_X`` the token Gaussian read at X's positions.  The inner mean is Gauss–Hermite over
    the template's wildcards (``nodes`` per wildcard), the outer one Sobol points s shared by
    every template: the κ matrix is a Gram matrix, so PSD, and smooth in (β, γ).
    """
    _check(beta, gamma, a, samples)
    if task.regular:
        raise ValueError(f"template_kappa needs a task without regular tokens; {task.name!r} has "
                         f"{', '.join(task.regular)} (estimate N by Monte Carlo instead: k_trans on disjoint_instances(task))")
    k = task.length
    z1, w1 = roots_hermitenorm(nodes)
    w1 = w1 / w1.sum()
    s_all = gaussian_samples(samples, k, seed)                             # (S, k) positional Gaussians
    means, selfs = [], []
    for z in task.templates:
        ws = wildcards(z)
        pattern = np.array([ws.index(t) for t in z])                       # position -> wildcard
        T = np.stack(np.meshgrid(*([z1] * len(ws)), indexing="ij")).reshape(len(ws), -1).T  # (P, w)
        omega = np.prod(np.stack(np.meshgrid(*([w1] * len(ws)), indexing="ij")).reshape(len(ws), -1), axis=0)
        A = (pattern[:, None] == pattern[None, :]).astype(np.float64) + gamma ** 2 * np.eye(k)  # X Xᵀ + γ² I
        bonus = a * A if a > 0 else None
        m, selfk = np.zeros((samples, k)), 0.0
        for start in range(0, samples, 256):
            s = s_all[start:start + 256]
            logits = T[None, :, pattern] + gamma * s[:, None, :]           # (S, P, k)
            w = _weights(logits, beta, bonus)
            m[start:start + 256] = np.einsum("p,spk->sk", omega, w)
            selfk += np.einsum("p,spi,ij,spj->", omega, w, A, w)
        means.append(m)
        selfs.append(selfk / samples)
    M = np.stack(means)                                                    # (r, S, k)
    return gamma ** 2 * np.einsum("isk,jsk->ij", M, M) / samples, np.array(selfs)


def template_matrix(task: TemplateTask, beta: float, gamma: float, a: float = 0.0,
                    samples: int = 2 ** 12, seed: int = 0) -> np.ndarray:
    """``N_ij = K_trans(sub(z_i, s), sub(z_j, s'))`` with disjoint substitutions (the paper's template
    matrix; chapter *The transformer random-features kernel*): :func:`template_kappa` then the ReLU
    map — PSD by construction (Schur: the arc-cosine series has non-negative coefficients).
    ``tests/test_kernel.py`` checks it against a direct Monte Carlo :func:`k_trans` Gram matrix of
    :func:`disjoint_instances`."""
    kxy, kself = template_kappa(task, beta, gamma, a, samples=samples, seed=seed)
    return relu_nngp(kxy, kself, kself)


def smallest_eigenvalue(N: np.ndarray) -> float:
    """Smallest eigenvalue of a symmetric matrix (N is PSD: nonsingular iff this is > 0)."""
    return float(np.linalg.eigvalsh(np.asarray(N))[0])


# ----------------------------------------------------------------------------- regression


def ridge_fit(K: np.ndarray, y: np.ndarray, ridge: float = 1e-5) -> np.ndarray:
    """Dual coefficients ``α = (K + ridge · mean(diag K) · I)^{-1} y``.

    The default ridge is near-interpolation: it only covers the Monte Carlo inconsistency of a
    pattern-by-pattern K (eigenvalues down to about −1e-5), far below the diagonal gap
    K(x, x) − N that regularises the fit on its own (chapter, *Why so much data*).
    """
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0; got {ridge}")
    lam = ridge * float(np.mean(np.diag(K)))
    return np.linalg.solve(K + lam * np.eye(len(K)), y)


def kernel_regression(task: TemplateTask, n: int, kernel: PatternKernel, seed: int = 0,
                      ridge: float = 1e-5, n_test: int = 1000) -> dict:
    """Kernel ridge regression with ``K_trans`` on ``n`` samples of ``task`` (the paper's data
    protocol: train alphabet of n tokens, :func:`symlib.data.make_data`), tested on ``n_test``
    strings of a fresh 1000-token alphabet.  Returns n, seed, train and test MSE."""
    if task.kind != "regression":
        raise ValueError(f"kernel regression needs a regression task; {task.name!r} is {task.kind!r}")
    data = make_data(task, DataConfig(n=n, n_test=n_test), seed)
    x, y = data.x["train"].numpy(), data.y["train"].numpy().astype(np.float64)
    xt, yt = data.x["test"].numpy(), data.y["test"].numpy().astype(np.float64)
    K = kernel.matrix(x, x)
    alpha = ridge_fit(K, y, ridge)
    train_pred = K @ alpha
    test_pred = kernel.matrix(xt, x) @ alpha
    return {"n": n, "seed": seed, "train_loss": float(np.mean((train_pred - y) ** 2)),
            "test_loss": float(np.mean((test_pred - yt) ** 2))}


def effective_test_loss(task: TemplateTask, ns: Sequence[int], beta: float, gamma: float, a: float = 0.0,
                        samples: int = 2 ** 12) -> list[float]:
    """Test loss on fresh symbols predicted from N alone, for each n in ``ns``.

    Model of the train kernel: ``K ≈ Z N Zᵀ + diag(c_z)`` — pairs of strings with no common token
    see N, a string sees itself with ``K(x, x) = κ(x, x)/2``, so ``c_z = κ_z/2 − N_zz``; the
    sparse pairs sharing a token are left out.  With ``D = diag(n p_z)`` template counts,
    ``(Z N Zᵀ + C) Z v = Z (N D + C) v`` gives the test error per template
    ``e = −C (N D + C)^{-1} ȳ``: along an eigenvector of N with eigenvalue λ it decays like
    ``c / (c + n p λ)``, so the n needed scales like ``c / (p λ_min)``.
    """
    kxy, kself = template_kappa(task, beta, gamma, a, samples=samples)
    N = relu_nngp(kxy, kself, kself)
    C = np.diag(kself / 2 - np.diag(N))
    ybar, p = np.array(task.labels, dtype=np.float64), np.array(task.probs)
    out = []
    for n in ns:
        e = -C @ np.linalg.solve(N @ np.diag(n * p) + C, ybar)
        out.append(float(p @ e ** 2))
    return out


def regression_curves(tasks: Sequence[str], a_values: Sequence[float], ns: Sequence[int], seeds: Sequence[int],
                      beta: float = 1.0, gamma: float = 1.0, samples: int = 2 ** 12) -> list[dict]:
    """Kernel-regression test loss against n: one row per (task, a, n, seed), tidy for seaborn.
    ``tasks`` are registry names (no parameters); ``a = 0`` is the plain kernel."""
    rows = []
    for name in tasks:
        task = get_task(name)
        for a in a_values:
            kernel = PatternKernel(beta, gamma, a, samples)
            for n in ns:
                for seed in seeds:
                    rows.append({"task": task_label(name), "a": a, **kernel_regression(task, n, kernel, seed)})
    return rows


def eigen_grid(tasks: Sequence[dict], betas: Sequence[float], gammas: Sequence[float], a: float = 0.0,
               samples: int = 2 ** 12, nodes: int = 16) -> list[dict]:
    """Smallest and largest eigenvalue of the template matrix N over a (β, γ) grid.
    ``tasks``: task specs, e.g. ``{"name": "majority", "k": 4}``.  One row per (task, β, γ)."""
    rows = []
    for spec in tasks:
        task = from_spec(spec)
        for beta in betas:
            for gamma in gammas:
                kxy, kself = template_kappa(task, beta, gamma, a, nodes=nodes, samples=samples)
                ev = np.linalg.eigvalsh(relu_nngp(kxy, kself, kself))
                rows.append({"task": task_label(spec), "beta": beta, "gamma": gamma, "a": a,
                             "lambda_min": float(ev[0]), "lambda_max": float(ev[-1])})
    return rows


def eigen_grids(tasks: Sequence[dict], betas: Sequence[float], gammas: Sequence[float], a_values: Sequence[float],
                samples: int = 2 ** 12, nodes: int = 16) -> list[dict]:
    """:func:`eigen_grid` for each KQ strength ``a`` of ``a_values``, rows in that order.  One function
    of every argument, so that a cached table (:func:`cached`) is keyed on the ``a`` values too."""
    return [row for a in a_values for row in eigen_grid(tasks, betas, gammas, a, samples, nodes)]


def width_convergence(strings: Sequence[str], widths: Sequence[int], seeds: Sequence[int], beta: float = 1.0,
                      gamma: float = 1.0, mlp_factor: int = 4, samples: int = 2 ** 16) -> list[dict]:
    """Root-mean-square entry error of the finite-width kernels κ̂, K̂_trans against the Monte
    Carlo κ, K_trans, for ``heads = dim_head = width`` and ``mlp_width = mlp_factor · width``."""
    kappa = kappa_mc(strings, beta, gamma, samples=samples)
    kt = relu_nngp(kappa)
    rows = []
    for w in widths:
        for seed in seeds:
            kh, kth = finite_width_kernels(strings, beta, gamma, w, w, mlp_factor * w, seed=seed)
            rows.append({"width": w, "seed": seed, "kappa_error": float(np.sqrt(np.mean((kh - kappa) ** 2))),
                         "k_trans_error": float(np.sqrt(np.mean((kth - kt) ** 2)))})
    return rows


# ----------------------------------------------------------------------------- stored results


def data_dir(root: str | Path | None = None) -> Path:
    """``<store root>/kernel`` (the repository's ``data/kernel`` by default)."""
    return Path(root if root is not None else default_root()) / "kernel"


def cached(name: str, config: dict, compute: Callable[[], object], recompute: bool = False,
           store: bool = True, root: str | Path | None = None) -> object:
    """``data/kernel/<name>.json`` through :func:`symlib.store.cached_result` (computed once, with
    config and provenance; a config mismatch is an error unless ``recompute``).  ``compute``
    should be ``lambda: K.<function>(**config)``: then the stored config is every argument of the
    computation, and no argument can change without the stored table being refused."""
    return cached_result(data_dir(root) / f"{name}.json", config, compute, recompute, store)


# ----------------------------------------------------------------------------- theory: N at β = 0 and small β


def arccos_j(rho) -> np.ndarray:
    """The ReLU map on correlations: ``relu_nngp(κ_xy, κ_xx, κ_yy) = √(κ_xx κ_yy) · J(ρ)`` with
    ``J(ρ) = (√(1 − ρ²) + (π − arccos ρ) ρ) / 2π``.  Its power series ``Σ a_l ρ^l`` has
    ``a_0 = 1/2π``, ``a_1 = 1/4`` and ``a_l > 0`` for every even l ≥ 2 (odd l ≥ 3: 0)."""
    rho = np.clip(np.asarray(rho, dtype=np.float64), -1.0, 1.0)
    return (np.sqrt(1 - rho ** 2) + (np.pi - np.arccos(rho)) * rho) / (2 * np.pi)


def arccos_j_prime(rho) -> np.ndarray:
    """``J'(ρ) = (π − arccos ρ) / 2π`` (> 0 for ρ > −1)."""
    rho = np.clip(np.asarray(rho, dtype=np.float64), -1.0, 1.0)
    return (np.pi - np.arccos(rho)) / (2 * np.pi)


def beta0_weights(pattern: Sequence[int], gamma: float, a: float = 0.0) -> np.ndarray:
    """The readout's attention weights at β = 0, ``(k,)``: uniform for the plain kernel; with the
    shared-query KQ stand-in the mean over query rows i of ``softmax(a (X Xᵀ + γ² I)_i)``, a
    deterministic function of the equality pattern (position j's weight depends only on its repeat
    count r_j — so it is uniform whenever the repeat profile is constant)."""
    p = np.asarray(pattern)
    A = (p[:, None] == p[None, :]).astype(np.float64) + gamma ** 2 * np.eye(len(p))
    return softmax(a * A, axis=-1).mean(axis=0)


def template_matrix_beta0(task: TemplateTask, gamma: float, a: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(N, κ_self)`` at β = 0 (no sampling): with deterministic weights ``w_z``
    (:func:`beta0_weights`), ``κ(x, y) = γ² w_x·w_y`` for disjoint instances and
    ``κ(x, x) = w_xᵀ (X Xᵀ + γ² I) w_x``; plain kernel: ``κ_self = (1ᵀ X Xᵀ 1 + k γ²)/k²``."""
    _check(0.0, gamma, a)
    if task.regular:
        raise ValueError(f"template_matrix_beta0 needs a task without regular tokens; {task.name!r} has some")
    W, selfs = [], []
    for z in task.templates:
        ws = wildcards(z)
        pattern = [ws.index(t) for t in z]
        w = beta0_weights(pattern, gamma, a)
        p = np.asarray(pattern)
        A = (p[:, None] == p[None, :]).astype(np.float64) + gamma ** 2 * np.eye(len(p))
        W.append(w)
        selfs.append(float(w @ A @ w))
    W, selfs = np.array(W), np.array(selfs)
    return relu_nngp(gamma ** 2 * W @ W.T, selfs, selfs), selfs


def repeat_sum(z: Sequence[Hashable]) -> int:
    """``R_z = 1ᵀ X Xᵀ 1``: the sum over positions of the repeat counts, i.e. the sum of the squared
    multiplicities of the template's symbols (αα: 4, αβ: 2, αβα and αββ: 5).  At β = 0 the
    self-kernel is ``(R_z + k γ²)/k²``, so N at β = 0 separates templates only by R_z."""
    return int(sum(list(z).count(t) ** 2 for t in set(z)))


def det_small_beta(coefficient: float, order: int, repeat: int, k: int, gamma: float) -> float:
    """The predicted limit of ``det N / β^order`` as β → 0, for a task of **two** templates with the
    same self-kernel (position permutations of one another, e.g. ABA vs ABB, AABB vs ABAB):
    ``s₀ J(ρ₀) J'(ρ₀) · P(γ²)``, with ``s₀ = (R + kγ²)/k²`` the common self-kernel at β = 0,
    ``ρ₀ = (γ²/k)/s₀`` and ``P(γ²) = coefficient`` the β^order coefficient of the contrast
    ``κ₁₁ + κ₂₂ − 2κ₁₂`` (:func:`symlib.symbolic.contrast_series`) evaluated at γ."""
    s0 = (repeat + k * gamma ** 2) / k ** 2
    rho0 = gamma ** 2 / k / s0
    return float(s0 * arccos_j(rho0) * arccos_j_prime(rho0) * coefficient)


def small_beta_table(tasks: Sequence[dict], betas: Sequence[float], gamma: float = 1.0, a: float = 0.0,
                     samples: int = 2 ** 12, nodes: int = 16) -> list[dict]:
    """λ_min(N) and det N at small β (γ fixed), for fitting the order at which N degenerates as
    β → 0: one row per (task, β)."""
    rows = []
    for spec in tasks:
        task = from_spec(spec)
        for beta in betas:
            kxy, kself = template_kappa(task, beta, gamma, a, nodes=nodes, samples=samples)
            N = relu_nngp(kxy, kself, kself)
            rows.append({"task": task_label(spec), "beta": beta, "gamma": gamma, "a": a,
                         "lambda_min": smallest_eigenvalue(N), "det": float(np.linalg.det(N)),
                         "lambda_min_kappa": smallest_eigenvalue(kxy)})
    return rows


def local_order(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x: the power p in y ∝ x^p over the given range."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


# ----------------------------------------------------------------------------- theory: the positive theorem


def template_counts(template: np.ndarray, r: int) -> np.ndarray:
    """How many strings of each of the r templates a split holds."""
    return np.bincount(np.asarray(template), minlength=r)


def sharing_degree(x: np.ndarray) -> np.ndarray:
    """For each row of ``x`` (id strings), how many *other* rows share at least one token with it."""
    pairs = _sharing_pairs(x, x)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.bincount(pairs[:, 0], minlength=len(x)) if len(pairs) else np.zeros(len(x), int)


def generalization_check(task: TemplateTask, n: int, kernel: PatternKernel, seed: int = 0,
                         ridge: float = 1e-5, n_test: int = 1000) -> dict:
    """The chapter's theorem *Kernel regression generalizes to unseen symbols*, on one data set.

    Runs :func:`kernel_regression`'s fit, then evaluates the theorem's exact error formula
    ``e = −(I + N S)^{-1} ȳ``, ``S = Zᵀ M^{-1} Z``, ``M = K + λI − Z N Zᵀ``, and its bound
    ``‖e‖₂ ≤ μ ‖ȳ‖₂ / (n_min λ_min(N))`` with ``μ = λ_max(Qᵀ M Q)``, ``Q = Z D^{-1/2}``; and the
    bound's structural form ``μ ≤ λ + c_max (1 + d_max)``.  Returns the measured and predicted test
    losses (over the test strings' template frequencies), the bound and its ingredients.
    """
    if task.kind != "regression" or task.regular:
        raise ValueError("generalization_check needs a regression task without regular tokens")
    data = make_data(task, DataConfig(n=n, n_test=n_test), seed)
    x, y = data.x["train"].numpy(), data.y["train"].numpy().astype(np.float64)
    xt, yt = data.x["test"].numpy(), data.y["test"].numpy().astype(np.float64)
    zi, zt = data.template["train"].numpy(), data.template["test"].numpy()
    r = len(task.templates)
    from scipy.linalg import cho_factor, cho_solve
    K = kernel.matrix(x, x)
    lam = ridge * float(np.mean(np.diag(K)))
    test_pred = kernel.matrix(xt, x) @ np.linalg.solve(K + lam * np.eye(len(K)), y)
    measured = float(np.mean((test_pred - yt) ** 2))
    # N from two disjoint instances of every template (ids 0.. and 10k..), the same cached patterns
    inst = [disjoint_instances(task, 2)[c] for c in range(2)]
    ids, _ = _as_ids(inst[0] + inst[1])
    N = kernel.matrix(ids[:r], ids[r:])
    N = (N + N.T) / 2
    Z = np.eye(r)[zi]                                                     # (n, r) template indicator
    ybar = np.array(task.labels, dtype=np.float64)
    M = K + lam * np.eye(len(K)) - Z @ N @ Z.T
    try:                                                                  # M ≻ 0: a Cholesky factor exists
        factor, m_pd = cho_factor(M), True
        S = Z.T @ cho_solve(factor, Z)
    except np.linalg.LinAlgError:
        m_pd = False
        S = Z.T @ np.linalg.solve(M, Z)
    e = -np.linalg.solve(np.eye(r) + N @ S, ybar)
    freq = template_counts(zt, r) / len(zt)
    counts = template_counts(zi, r)
    Q = Z / np.sqrt(np.maximum(counts, 1))
    mu = float(np.linalg.eigvalsh(Q.T @ M @ Q)[-1])
    lam_min = smallest_eigenvalue(N)
    bound = (mu * np.linalg.norm(ybar) / (counts.min() * lam_min)) ** 2 if counts.min() > 0 else np.inf
    c = np.diag(K) - N[zi, zi]                                            # c_z = K(x, x) − N_zz
    d = sharing_degree(x)
    return {"n": n, "seed": seed, "test_loss": measured, "formula_loss": float(freq @ e ** 2),
            "bound": float(bound), "mu": mu, "mu_structural": float(lam + c.max() * (1 + d.max())),
            "n_min": int(counts.min()), "lambda_min": lam_min, "c_max": float(c.max()), "d_max": int(d.max()),
            "d_mean": float(d.mean()), "M_positive_definite": m_pd}


def generalization_checks(tasks: Sequence[str], ns: Sequence[int], seeds: Sequence[int], beta: float = 1.0,
                          gamma: float = 1.0, a: float = 0.0, samples: int = 2 ** 12) -> list[dict]:
    """:func:`generalization_check` over tasks (registry names), n and seeds: one row each."""
    rows = []
    for name in tasks:
        kernel = PatternKernel(beta, gamma, a, samples)
        for n in ns:
            for seed in seeds:
                rows.append({"task": task_label(name), "a": a, **generalization_check(get_task(name), n, kernel, seed)})
    return rows


# ----------------------------------------------------------------------------- the last-layer regime, wide


def last_layer_wide(task: str, ns: Sequence[int], dim: int, scales: Sequence[float], seeds: Sequence[int],
                    epochs: int = 1000) -> list[dict]:
    """The book's transformer (``symlib.experiments.TRANSFORMER``) with ``dim`` random features, only
    its readout trained (the paper's protocol: Adam, lr 1e-3, full batch, ``epochs``), at several
    initialisation scales; and, on the same frozen features, the minimum-norm least-squares readout
    — the finite-width kernel ("ridgeless") regression that the readout's gradient flow from 0
    converges to.  One row per (scale, n, seed): Adam's train and test loss, the min-norm test loss."""
    import torch
    from dataclasses import replace
    from .experiments import TRANSFORMER
    from .models import cached_readout
    from .runs import TrainConfig
    from .training import fit
    rows = []
    for scale in scales:
        cfg = replace(TRANSFORMER, dim=dim, train_last_layer_only=True, init_scale=scale)
        for n in ns:
            for seed in seeds:
                res, net = fit(get_task(task), cfg, TrainConfig(epochs=epochs, lr=1e-3, batch_size=1024, eval_every=epochs),
                               data=n, seed=seed, return_model=True)
                data = make_data(get_task(task), DataConfig(n=n), seed)
                _, feats = cached_readout(net, data.x)
                F = {s: torch.cat([f, torch.ones(len(f), 1)], 1).double().numpy() for s, f in feats.items()}
                w = np.linalg.lstsq(F["train"], data.y["train"].double().numpy(), rcond=None)[0]
                yt = data.y["test"].double().numpy()
                rows.append({"init scale": scale, "n": n, "seed": seed, "features": dim,
                             "train_loss": res.metrics["train_loss"], "test_loss": res.metrics["test_loss"],
                             "min_norm_test_loss": float(np.mean((F["test"] @ w - yt) ** 2))})
    return rows


# ----------------------------------------------------------------------------- the chapter's figures
#
# Each takes a frame of the chapter's cached tables and returns a matplotlib figure, which the chapter
# hands to the page with :func:`symlib.plots.glue_figure` (numbered caption, alt text).  Seaborn and
# matplotlib are imported inside, so computing kernels does not need them.


def width_convergence_figure(conv):
    """RMS error of the finite random-features transformer's empirical kernels against κ and K_trans
    (:func:`width_convergence`: columns ``width``, ``seed``, ``kappa_error``, ``k_trans_error``)
    against the width, band = min–max over seeds, with the Monte Carlo rate width^-1/2 dotted
    through κ's error at the smallest width.  Chapter *The transformer random-features kernel*, κ three ways."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns
    conv = pd.DataFrame(conv)
    long = conv.melt(id_vars=["width", "seed"], value_vars=["kappa_error", "k_trans_error"],
                     var_name="kernel", value_name="RMS error")
    long["kernel"] = long["kernel"].map({"kappa_error": "κ̂ (attention)", "k_trans_error": "K̂_trans (after MLP)"})
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(long, x="width", y="RMS error", hue="kernel", marker="o", errorbar=("pi", 100), ax=ax)
    w = np.array(sorted(conv["width"].unique()), dtype=float)
    ax.plot(w, conv[conv["width"] == w[0]]["kappa_error"].mean() * (w / w[0]) ** -0.5, "k:", lw=1,
            label="∝ width^-1/2 (Monte Carlo rate)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(w, [f"{x:g}" for x in w])
    ax.minorticks_off()
    ax.set(yscale="log", xlabel="width (heads = dim_head; MLP 4 × width)",
           ylabel="RMS entry error", title="finite random-features transformer → κ, K_trans")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def eigen_grid_figure(eig):
    """λ_min(N) against β, one line per γ, one panel per task (at most three a row, one shared
    legend), from :func:`eigen_grid` (columns ``task``, ``beta``, ``gamma``, ``lambda_min``).
    Chapter *The transformer random-features kernel*, the template matrix N."""
    import seaborn as sns
    tasks = list(dict.fromkeys(eig["task"]))
    g = sns.relplot(eig, x="beta", y="lambda_min", hue="gamma", col="task", col_order=tasks, col_wrap=min(3, len(tasks)),
                    kind="line", marker="o", palette="viridis", height=3.2, aspect=1.0, facet_kws={"sharey": False})
    betas = sorted(eig["beta"].unique())
    g.set(xscale="log", yscale="log")
    g.set_axis_labels("β (logit scale)", "λ_min(N)")
    for ax in g.axes.flat:
        ax.set_xticks(betas, [f"{b:g}" for b in betas], minor=False)
        ax.set_xticks([], minor=True)
    g.set_titles("{col_name}")
    g.legend.set_title("γ")
    g.figure.suptitle("Smallest eigenvalue of the template matrix (plain attention, ReLU MLP)", y=1.03)
    return g.figure


def kq_gain_figure(kq):
    """λ_min(N) at (β, γ) = (1, 1) against the KQ stand-in's strength a, one line per task (columns
    ``task``, ``a``, ``lambda_min``).  Chapter *The transformer random-features kernel*, the KQ identity."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(kq, x="a", y="lambda_min", hue="task", marker="o", ax=ax)
    ax.set(yscale="log", xlabel="a (KQ identity strength)", ylabel="λ_min(N) at (β, γ) = (1, 1)",
           title="Conditioning of N with the KQ identity term")
    fig.tight_layout()
    return fig


def kernel_label(a: float) -> str:
    """How the chapter names the kernel of KQ strength ``a``: ``plain`` or ``KQ, a = 3``."""
    return "plain" if a == 0 else f"KQ, a = {a:g}"


def regression_figure(reg, pred):
    """Kernel regression on fresh symbols, one panel per task: test loss against n per kernel
    (:func:`regression_curves`, columns ``task``, ``a``, ``n``, ``seed``, ``test_loss``; mean over
    seeds, band min–max) and, dashed in the same colour, the prediction from N alone
    (:func:`effective_test_loss`; ``pred`` with ``task``, ``a``, ``n``, ``test_loss``); one shared
    legend.  Chapter *The transformer random-features kernel*, kernel regression on fresh symbols."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D
    from .plots import loss_vs_n
    tasks = list(dict.fromkeys(reg["task"]))
    a_values = sorted(reg["a"].unique())
    order = [kernel_label(a) for a in a_values]
    colours = dict(zip(a_values, sns.color_palette(n_colors=len(a_values))))
    reg = reg.assign(kernel=reg["a"].map(kernel_label))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.8 * len(tasks), 4), sharey=True, squeeze=False)
    axes = list(axes.flat)
    for ax, task in zip(axes, tasks):
        loss_vs_n(reg[reg["task"] == task], hue="kernel", hue_order=order, ax=ax, title=task)
        for a, d in pred[pred["task"] == task].groupby("a"):
            ax.plot(d["n"], d["test_loss"], ls="--", lw=1, color=colours.get(a, "grey"))
        ax.set_xlabel("n (training samples)")
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(Line2D([], [], ls="--", lw=1, color="grey"))
    labels.append("prediction from N alone (colour = its kernel)")
    for ax in axes:
        ax.get_legend().remove()
    fig.legend(handles, labels, loc="lower center", ncols=min(len(labels), 3), fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle("kernel regression with K_trans, (β, γ) = (1, 1), fresh test symbols")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig
