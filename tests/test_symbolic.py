"""The computer-algebra derivation of κ's Taylor series (symlib.symbolic), checked against the
brief's exact values, its own closed forms, and finite differences of quadrature values."""

from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from symlib import symbolic as S
from symlib.kernel import taylor_by_finite_differences


@pytest.mark.parametrize("k", [2, 3])
def test_brief_check_values_hold_for_generic_strings(k):
    out = S.check_values(k)
    assert out["diff_kappa_0"] == 0 and out["diff_d2beta_d2gamma"] == 0
    assert out["d2beta_d2gamma"] != 0  # not a vacuous identity


def test_series_is_even_in_beta_and_matches_closed_forms():
    x, y = "abca", "bbca"
    c = S.kappa_taylor(x, y, order=5)
    assert all(n % 2 == 0 for n, _ in c)             # κ(β) = κ(−β)
    G = np.array(S.equality_matrix(x, y))
    k = len(x)
    assert c[(0, 0)] == Fraction(int(G.sum()), k ** 2)
    assert c[(0, 1)] == Fraction(1, k)                # γ² k / k²
    assert S.derivative(c, 2, 2) == Fraction(8 * int(np.trace(G)), k ** 2) - Fraction(8 * int(G.sum()), k ** 3)
    assert S.derivative(c, 2, 2) == 4 * c[(2, 1)]    # ∂²_β∂²_γ = 2!·2!·c[2,1]
    assert S.derivative(c, 1, 2) == 0 and S.derivative(c, 2, 1) == 0


def test_first_coupling_of_disjoint_strings_k3():
    key, coeff, _ = S.first_coupling_generic(3, max_order=6)
    assert key == (4, 1)                              # β⁴ γ²
    assert sp.expand(coeff - S.coupling_formula(3)) == 0


def test_first_coupling_same_different_is_higher():
    key, C, inter = S.first_coupling_patterns(S.equality_patterns(2), order=10)
    assert key == (6, 2)                              # β⁶ γ⁴ for k = 2
    assert C[0][0] == 0 and C[0][1] == Fraction(1, 8) and C[1][1] == Fraction(5, 16)
    assert inter[0][0] == Fraction(1, 64)


def test_equality_patterns_are_set_partitions():
    assert [len(S.equality_patterns(k)) for k in (1, 2, 3, 4)] == [1, 2, 5, 15]  # Bell numbers


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_series_against_finite_differences_fuzz(seed):
    rng = np.random.default_rng(seed)
    x, y = (tuple(rng.integers(0, 3, size=2)) for _ in range(2))
    c = S.kappa_taylor(x, y, order=4)
    C = taylor_by_finite_differences(x, y, nodes=14)  # C[i, j]: coefficient of β^(2i) γ^(2j)
    for (n, m), tol in [((0, 0), 1e-8), ((0, 1), 1e-6), ((2, 0), 1e-4), ((2, 1), 1e-3), ((4, 0), 2e-3)]:
        assert abs(float(c.get((n, m), 0)) - C[n // 2, m]) < tol, (x, y, n, m)


def test_bad_input():
    with pytest.raises(ValueError, match="one length"):
        S.kappa_taylor("ab", "abc")
    with pytest.raises(ValueError, match="order"):
        S.kappa_taylor("ab", "ab", order=-1)
    with pytest.raises(ValueError, match="k must be"):
        S.equality_patterns(0)


# ----------------------------------------------------------------------------- nonsingularity of N (issue 22)


def test_position_permutations_share_a_self_kernel():
    assert S.position_permutation("αβα", "αββ") is not None
    assert S.position_permutation("ααββ", "αβαβ") is not None
    assert S.position_permutation("αα", "αβ") is None
    x, xp = S.kappa_taylor("aba", "aba", 4), S.kappa_taylor("abb", "abb", 4)
    assert x == xp                                   # equal self-kernels, every coefficient


def test_contrast_aba_abb_starts_at_beta4_gamma2():
    n0, P = S.contrast_leading("αβα", "αββ", 6)
    assert n0 == 4 and P == {1: Fraction(2, 81)}     # det N ∝ β⁴ γ² at small β
    c = S.contrast_series("αβα", "αββ", 6)
    assert all(n >= 4 for n, _ in c)                 # nothing at β⁰, β² for any power of γ


def test_contrast_aabb_abab_starts_at_beta6_gamma4():
    n0, P = S.contrast_leading("ααββ", "αβαβ", 6)
    assert n0 == 6 and P == {2: Fraction(1, 32)}


def test_contrast_vanishing_is_reported():
    with pytest.raises(ValueError, match="vanishes"):
        S.contrast_leading("αβα", "αββ", 2)
