"""Computer algebra for the attention kernel κ: exact Taylor coefficients at β = γ = 0.

The kernel of chapter *The transformer random-features kernel* (brief §4.2) is

    κ(X, Y) = E[ softmax(β u)ᵀ (X Yᵀ + γ² I) softmax(β v) ],
    (u, v) jointly Gaussian, Cov(u) = A + γ² I, Cov(v) = B + γ² I, Cov(u, v) = G + γ² I,

with ``A = X Xᵀ``, ``B = Y Yᵀ``, ``G = X Yᵀ`` the k×k token-equality matrices.  κ is even in β
(flip the sign of (u, v)) and depends on γ only through γ², so its Taylor series at 0 is

    κ ~ Σ_{n even, m} c[n, m] β^n γ^(2m),      ∂_β^n ∂_γ^(2m) κ |_0 = n! (2m)! c[n, m].

How c[n, m] is computed, exactly:

1. softmax(β u)_i = Σ_n β^n s_n,i(u), with s_n,i a polynomial of degree n in u (series of
   exp(β u_i) divided by the series of Σ_j exp(β u_j)).
2. The β^n coefficient of the integrand is Σ_{p+q=n} s_p(u)ᵀ (G + γ² I) s_q(v).
3. Its expectation is taken monomial by monomial with **Wick's (Isserlis') theorem** in the
   recursive form of Stein's lemma, ``E[w_i f(w)] = Σ_j Σ_ij E[∂_j f(w)]``.

Coefficients live in the sympy polynomial ring QQ[γ², matrix entries, u, v]: exact rationals for
given strings (:func:`kappa_taylor`), polynomials in symbolic matrix entries for the general
identities (:func:`kappa_taylor_generic`).  Numerical checks against Monte Carlo and finite
differences live in ``tests/test_symbolic.py`` and the chapter.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from math import factorial
from typing import Hashable, Sequence

import sympy as sp
from sympy.polys.domains import QQ
from sympy.polys.rings import ring

from .checks import int_in


# ----------------------------------------------------------------------------- the engine


class _Wick:
    """Gaussian expectations of polynomials in w = (u, v) over a sympy polynomial ring.

    ``names``: the ring's generators other than w (γ² is always the first, ``g``).
    ``cov(R, params)`` -> the 2k×2k covariance of w as ring elements;
    ``kernel(R, params)`` -> the k×k matrix G + γ² I of the bilinear form.
    """

    def __init__(self, k: int, names: list[str], cov, kernel):
        self.k = k
        wnames = [f"u{i}" for i in range(k)] + [f"v{i}" for i in range(k)]
        self.R, *gens = ring(",".join(names + wnames), QQ)
        self.params = dict(zip(names, gens[:len(names)]))
        self.u, self.v = gens[len(names):len(names) + k], gens[len(names) + k:]
        self.n_params = len(names)
        self.cov = cov(self.R, self.params)
        self.M = kernel(self.R, self.params)
        self._moments: dict[tuple[int, ...], object] = {}

    def moment(self, alpha: tuple[int, ...]):
        """E[Π_i w_i^alpha_i] by Isserlis' theorem (memoised recursion)."""
        if alpha in self._moments:
            return self._moments[alpha]
        total = sum(alpha)
        if total == 0:
            out = self.R.one
        elif total % 2:
            out = self.R.zero
        else:
            i = next(j for j, a in enumerate(alpha) if a)
            rest = list(alpha)
            rest[i] -= 1
            out = self.R.zero
            for j, aj in enumerate(rest):
                if aj and self.cov[i][j]:
                    lower = list(rest)
                    lower[j] -= 1
                    out += self.cov[i][j] * aj * self.moment(tuple(lower))
        self._moments[alpha] = out
        return out

    def expect(self, poly):
        """Replace every monomial in w by its Gaussian moment."""
        p = self.n_params
        out = self.R.zero
        for monom, coeff in poly.terms():
            w = monom[p:]
            if sum(w) % 2:
                continue
            rest = monom[:p] + (0,) * (2 * self.k)
            out += self.moment(tuple(w)) * self.R.from_dict({rest: coeff})
        return out

    def softmax_series(self, xs, order: int) -> list[list]:
        """``s[n][i]``: the β^n coefficient of softmax(β x)_i, a degree-n polynomial in x."""
        k = len(xs)
        num = [[x ** n * QQ(1, factorial(n)) for x in xs] for n in range(order + 1)]
        den = [sum(row, self.R.zero) for row in num]            # den[0] = k
        inv = [self.R.one * QQ(1, k)]                            # series of 1 / den
        for n in range(1, order + 1):
            inv.append(-sum((den[m] * inv[n - m] for m in range(1, n + 1)), self.R.zero) * QQ(1, k))
        return [[sum((num[m][i] * inv[n - m] for m in range(n + 1)), self.R.zero) for i in range(k)]
                for n in range(order + 1)]

    def kappa_orders(self, order: int) -> dict[int, object]:
        """{n: E[β^n coefficient of the integrand]} for n = 0..order (ring elements without w)."""
        a, b = self.softmax_series(self.u, order), self.softmax_series(self.v, order)
        k = self.k
        Mb = [[sum((self.M[i][j] * b[q][j] for j in range(k)), self.R.zero) for i in range(k)]
              for q in range(order + 1)]
        out = {}
        for n in range(order + 1):
            integrand = sum((a[p][i] * Mb[n - p][i] for p in range(n + 1) for i in range(k)), self.R.zero)
            out[n] = self.expect(integrand)
        return out


def _coefficients(engine: _Wick, order: int) -> dict[tuple[int, int], object]:
    """Split each β^n coefficient into powers of g = γ²: {(n, m): coefficient}."""
    out = {}
    for n, poly in engine.kappa_orders(order).items():
        for monom, coeff in poly.terms():
            m = monom[0]
            rest = (0,) + monom[1:]
            out[(n, m)] = out.get((n, m), engine.R.zero) + engine.R.from_dict({rest: coeff})
    return {key: val for key, val in out.items() if val}


# ----------------------------------------------------------------------------- given strings


def equality_matrix(x: Sequence[Hashable], y: Sequence[Hashable]) -> list[list[int]]:
    """``X Yᵀ`` for one-hot strings: entry (i, j) is 1 if x_i = y_j, else 0."""
    return [[int(a == b) for b in y] for a in x]


def kappa_taylor(x: Sequence[Hashable], y: Sequence[Hashable], order: int = 4) -> dict[tuple[int, int], Fraction]:
    """Exact Taylor coefficients ``{(n, m): c[n, m]}`` of κ(x, y) in β^n γ^(2m), n <= ``order``.

    ``x`` and ``y`` are strings of equal length k (any hashable tokens).  Zero coefficients are
    left out.  Cost grows like the number of monomials of degree ``order`` in 2k variables:
    order 10 for k = 2, order 8 for k = 3, order 6 for k = 4 take seconds.
    """
    x, y = tuple(x), tuple(y)
    if len(x) != len(y) or not x:
        raise ValueError(f"x and y must be non-empty strings of one length; got lengths {len(x)} and {len(y)}")
    int_in("order", order, 0)
    k = len(x)
    A, B, G = equality_matrix(x, x), equality_matrix(y, y), equality_matrix(x, y)

    def cov(R, p):
        g = p["g"]
        top = [[A[i][j] + (g if i == j else 0) for j in range(k)] + [G[i][j] + (g if i == j else 0) for j in range(k)]
               for i in range(k)]
        bottom = [[G[j][i] + (g if i == j else 0) for j in range(k)] + [B[i][j] + (g if i == j else 0) for j in range(k)]
                  for i in range(k)]
        return [[R(e) for e in row] for row in top + bottom]

    def kernel(R, p):
        return [[R(G[i][j]) + (p["g"] if i == j else 0) for j in range(k)] for i in range(k)]

    engine = _Wick(k, ["g"], cov, kernel)
    out = {}
    for key, val in _coefficients(engine, order).items():
        c = val.LC if val.is_ground else None
        if c is None:
            raise AssertionError(f"coefficient {key} is not a number: {val}")
        out[key] = Fraction(int(c.numerator), int(c.denominator))
    return out


def derivative(coefficients: dict[tuple[int, int], Fraction], n: int, m: int) -> Fraction:
    """``∂_β^n ∂_γ^m κ |_0`` (ordinary derivatives in β and γ) from the coefficients."""
    if m % 2:
        return Fraction(0)
    return coefficients.get((n, m // 2), Fraction(0)) * factorial(n) * factorial(m)


# ----------------------------------------------------------------------------- generic matrices


def generic_matrices(k: int, shared: bool = True, unit_diagonal: bool = True):
    """Symbolic A = X Xᵀ, B = Y Yᵀ (symmetric) and G = X Yᵀ (``shared=False``: G = 0).

    One-hot strings have unit diagonals in A and B (``unit_diagonal=True``).
    Returns (A, B, G) as sympy matrices and the list of symbol names.
    """
    int_in("k", k, 1)
    names = []

    def sym(prefix):
        M = sp.zeros(k, k)
        for i in range(k):
            for j in range(i, k):
                if i == j and unit_diagonal:
                    M[i, i] = 1
                    continue
                name = f"{prefix}{i}{j}"
                names.append(name)
                M[i, j] = M[j, i] = sp.Symbol(name)
        return M

    A, B = sym("a"), sym("b")
    G = sp.zeros(k, k)
    if shared:
        for i in range(k):
            for j in range(k):
                name = f"c{i}{j}"
                names.append(name)
                G[i, j] = sp.Symbol(name)
    return A, B, G, names


def kappa_taylor_generic(k: int, order: int = 2, shared: bool = True, unit_diagonal: bool = True):
    """Taylor coefficients ``{(n, m): sympy expression}`` of κ for symbolic A, B, G (k fixed).

    The expressions are polynomials in the entries ``a_ij`` of A, ``b_ij`` of B and ``c_ij``
    of G (``shared=False`` sets G = 0: two strings with no common token).
    """
    A, B, G, names = generic_matrices(k, shared, unit_diagonal)

    def cov(R, p):
        g = p["g"]
        blocks = [[A, G], [G.T, B]]
        return [[_expr_to_ring(R, p, blocks[bi][bj][i, j]) + (g if i == j else 0)
                 for bj in range(2) for j in range(k)] for bi in range(2) for i in range(k)]

    def kernel(R, p):
        return [[_expr_to_ring(R, p, G[i, j]) + (p["g"] if i == j else 0) for j in range(k)] for i in range(k)]

    engine = _Wick(k, ["g"] + names, cov, kernel)
    return {key: val.as_expr() for key, val in _coefficients(engine, order).items()}


def _expr_to_ring(R, params, e):
    e = sp.sympify(e)
    if e.is_Number:
        return R(QQ(int(sp.fraction(e)[0]), int(sp.fraction(e)[1])))
    if e.is_Symbol:
        return params[e.name]
    raise ValueError(f"matrix entries must be numbers or symbols; got {e}")


# ----------------------------------------------------------------------------- the theorems


def check_values(k: int) -> dict[str, sp.Expr]:
    """The brief's two check values, for symbolic A, B, G of size k: returns the derived
    expressions and the differences to the brief's formulas (both differences must be 0).

    * ``κ|_{β=γ=0} = 1ᵀ G 1 / k²``
    * ``∂²_β ∂²_γ κ|_0 = 8 tr G / k² − 8 · 1ᵀ G 1 / k³`` (ordinary derivatives in β and γ:
      = 2!·2!·c[2, 1]; in β², γ² it would be c[2, 1], a quarter of it)
    """
    coeffs = kappa_taylor_generic(k, order=2)
    A, B, G, _ = generic_matrices(k)
    one = sp.ones(k, 1)
    sumG = (one.T * G * one)[0, 0]
    value0 = coeffs.get((0, 0), sp.Integer(0))
    d2d2 = 4 * coeffs.get((2, 1), sp.Integer(0))
    return {
        "kappa_0": sp.expand(value0),
        "d2beta_d2gamma": sp.expand(d2d2),
        "diff_kappa_0": sp.expand(value0 - sumG / k ** 2),
        "diff_d2beta_d2gamma": sp.expand(d2d2 - (8 * G.trace() / k ** 2 - 8 * sumG / k ** 3)),
    }


def coupling_formula(k: int) -> sp.Expr:
    """The conjectured first coupling of disjoint strings: ``1ᵀ A P B 1 / k⁴`` with the centring
    ``P = I − 11ᵀ/k`` — the covariance over positions of the two strings' repeat-count vectors
    ``A 1`` and ``B 1`` (coefficient of β⁴γ²)."""
    A, B, _, _ = generic_matrices(k, shared=False)
    one = sp.ones(k, 1)
    P = sp.eye(k) - one * one.T / k
    return sp.expand((one.T * A * P * B * one)[0, 0] / k ** 4)


def _couples(expr: sp.Expr) -> bool:
    """Does a polynomial in a_ij, b_ij hold a monomial with both an a- and a b-symbol?"""
    poly = sp.Poly(expr, *sorted(expr.free_symbols, key=str)) if expr.free_symbols else None
    if poly is None:
        return False
    names = [s.name for s in poly.gens]
    for monom in poly.monoms():
        used = {names[i][0] for i, e in enumerate(monom) if e}
        if {"a", "b"} <= used:
            return True
    return False


def first_coupling_generic(k: int, max_order: int = 6) -> tuple[tuple[int, int], sp.Expr, dict]:
    """Lowest (n, m), ordered by total order n + 2m then n, at which κ of two strings with **no
    shared token** (G = 0) holds a term in both A = X Xᵀ and B = Y Yᵀ; returns the order, its
    coefficient and all coefficients up to ``max_order`` in β (symbolic A, B of size k)."""
    coeffs = kappa_taylor_generic(k, order=max_order, shared=False)
    complete = [key for key in coeffs if key[0] + 2 * key[1] <= max_order]
    for key in sorted(complete, key=lambda nm: (nm[0] + 2 * nm[1], nm[0])):
        if _couples(coeffs[key]):
            return key, sp.factor(coeffs[key]), coeffs
    raise ValueError(f"no coupling up to β^{max_order} for k = {k}; raise max_order")


# ----------------------------------------------------------------------------- equality patterns


def equality_patterns(k: int) -> list[tuple[int, ...]]:
    """All equality patterns of length k (set partitions as restricted growth strings):
    ``(0, 0)`` and ``(0, 1)`` for k = 2, five for k = 3, fifteen for k = 4."""
    int_in("k", k, 1)
    out = []
    for p in itertools.product(range(k), repeat=k):
        if p[0] == 0 and all(p[i] <= max(p[:i]) + 1 for i in range(1, k)):
            out.append(p)
    return out


def coupling_table(patterns: Sequence[Sequence[int]], order: int) -> dict[tuple[int, int], list[list[Fraction]]]:
    """``{(n, m): C}`` with ``C[p][q] = c[n, m](x_p, y_q)`` for disjoint instances of the patterns
    (x_p uses tokens 0.., y_q the tokens k..): exact rationals."""
    pats = [tuple(p) for p in patterns]
    k = len(pats[0])
    if any(len(p) != k for p in pats):
        raise ValueError("all patterns must have one length")
    table: dict[tuple[int, int], list[list[Fraction]]] = {}
    for i, p in enumerate(pats):
        for j, q in enumerate(pats):
            if j < i:
                continue
            c = kappa_taylor(p, tuple(k + t for t in q), order)
            for key, val in c.items():
                C = table.setdefault(key, [[Fraction(0)] * len(pats) for _ in pats])
                C[i][j] = C[j][i] = val
    return table


def interaction(C: list[list[Fraction]]) -> list[list[Fraction]]:
    """Double-centred matrix ``C − row means − column means + grand mean``: zero iff C is of
    the form f(p) + g(q), i.e. iff the patterns do **not** couple."""
    r, c = len(C), len(C[0])
    rows = [sum(row, Fraction(0)) / c for row in C]
    cols = [sum((C[i][j] for i in range(r)), Fraction(0)) / r for j in range(c)]
    mean = sum(rows, Fraction(0)) / r
    return [[C[i][j] - rows[i] - cols[j] + mean for j in range(c)] for i in range(r)]


def first_coupling_patterns(patterns: Sequence[Sequence[int]], order: int):
    """Lowest (n, m) (total order n + 2m, then n) at which κ of disjoint instances of the
    given equality patterns is not additively separable f(p) + g(q); returns the order, the
    coefficient table C and its interaction matrix, or ``None`` if none up to total order
    ``order`` (only total orders <= ``order`` are complete, since n <= order)."""
    table = coupling_table(patterns, order)
    complete = [key for key in table if key[0] + 2 * key[1] <= order]  # every term of that total order known
    for key in sorted(complete, key=lambda nm: (nm[0] + 2 * nm[1], nm[0])):
        inter = interaction(table[key])
        if any(v != 0 for row in inter for v in row):
            return key, table[key], inter
    return None


# ----------------------------------------------------------------------------- nonsingularity of N at small β


def _canonical(z: Sequence[Hashable]) -> tuple[int, ...]:
    seen: dict = {}
    return tuple(seen.setdefault(t, len(seen)) for t in z)


def position_permutation(z1: Sequence[Hashable], z2: Sequence[Hashable]) -> tuple[int, ...] | None:
    """A permutation σ of positions with ``z2 ≅ z1∘σ`` (equal up to renaming symbols), or ``None``.
    Two such templates have the **same self-kernel** κ(x, x) at every (β, γ): permuting positions
    permutes the logits' covariance and the kernel's weight matrix alike, and softmax commutes
    with it."""
    z1, z2 = tuple(z1), tuple(z2)
    if len(z1) != len(z2):
        return None
    target = _canonical(z2)
    for sigma in itertools.permutations(range(len(z1))):
        if _canonical(tuple(z1[i] for i in sigma)) == target:
            return sigma
    return None


def contrast_series(z1: Sequence[Hashable], z2: Sequence[Hashable], order: int) -> dict[tuple[int, int], Fraction]:
    """Exact Taylor coefficients ``{(n, m)}`` in β^n γ^(2m) of the **contrast**
    ``Δ = κ(x₁, x₁') + κ(x₂, x₂') − 2 κ(x₁, x₂')`` between disjoint instances (primes: fresh tokens)
    of two templates, n ≤ ``order``; zero coefficients left out.

    ``Δ = γ² E_s‖m₁(s) − m₂(s)‖² ≥ 0`` (chapter, *Nonsingularity of N*), and for two templates with
    one self-kernel ``det N = s J(ρ) J'(ρ) Δ + O(Δ²)``: the lowest β order of Δ is the order at which
    N degenerates as β → 0."""
    def inst(z, tag):
        return tuple(f"{tag}{c}" for c in z)

    c11 = kappa_taylor(inst(z1, "x"), inst(z1, "y"), order)
    c22 = kappa_taylor(inst(z2, "x"), inst(z2, "y"), order)
    c12 = kappa_taylor(inst(z1, "x"), inst(z2, "y"), order)
    out = {}
    for key in sorted(set(c11) | set(c22) | set(c12)):
        v = c11.get(key, Fraction(0)) + c22.get(key, Fraction(0)) - 2 * c12.get(key, Fraction(0))
        if v:
            out[key] = v
    return out


def contrast_leading(z1: Sequence[Hashable], z2: Sequence[Hashable], order: int) -> tuple[int, dict[int, Fraction]]:
    """Lowest β order n of the contrast Δ (:func:`contrast_series`) and its coefficient as a polynomial
    in γ², ``{m: coefficient of γ^(2m)}`` — exact, since every β^n coefficient is computed as a whole
    polynomial in γ².  Raises if Δ vanishes to β^order."""
    c = contrast_series(z1, z2, order)
    if not c:
        raise ValueError(f"the contrast of {z1!r}, {z2!r} vanishes up to β^{order}; raise order")
    n0 = min(n for n, _ in c)
    return n0, {m: v for (n, m), v in c.items() if n == n0}
