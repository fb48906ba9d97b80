"""Exact first threshold crossing of the SRM potential between two input events.

Between two consecutive input events the potential of Eq. 1, written relative
to the time t0 of the last event (d = t - t0 >= 0), is::

    u(d) = P exp(-d/tau_m) - Q exp(-d/tau_s)
    P = A sum_m c_m exp(-(t0 - t_m)/tau_m),  Q = A sum_m c_m exp(-(t0 - t_m)/tau_s)

with efficacies c_m = w a_m and A = tau_m/(tau_m - tau_s). The state (P, Q)
only ever decays (factors exp(-d/tau) <= 1), so nothing overflows however long
the simulation runs. An input event at t0 adds A c to both P and Q.

u'(d) = -P/tau_m exp(-d/tau_m) + Q/tau_s exp(-d/tau_s) vanishes at most once::

    d* = ln(P tau_s / (Q tau_m)) / (1/tau_m - 1/tau_s)     (when P Q > 0)

so on (0, L] the potential is monotone on [0, d*] and on [d*, L]. The first
crossing of theta is bracketed exactly by these ends (a maximum that touches
the threshold between events is never missed) and solved by a safeguarded
Newton/bisection iteration (Newton steps that leave the bracket are replaced by
bisection) to a relative tolerance ``rtol`` of the absolute time.

These are scalar ``numba.njit`` routines taking floats only; the CPU engines
call them per neuron and interval, and the GPU kernels compile the same
functions as device functions, so the backends cannot drift.
"""

from __future__ import annotations

import math

from numba import njit

#: Default relative tolerance of a crossing time (relative to max(|t|, 1)).
CROSSING_RTOL = 1e-14
#: Default iteration limit of the safeguarded Newton/bisection solver.
CROSSING_MAX_ITER = 200
#: Sentinel returned by :func:`_first_crossing` when there is no crossing.
NO_CROSSING = -1.0


@njit(cache=True)
def _u(P, Q, d, tau_m, tau_s):
    """Potential u(d) = P e^{-d/tau_m} - Q e^{-d/tau_s}."""
    return P * math.exp(-d / tau_m) - Q * math.exp(-d / tau_s)


@njit(cache=True)
def _du(P, Q, d, tau_m, tau_s):
    """Slope u'(d) = -P/tau_m e^{-d/tau_m} + Q/tau_s e^{-d/tau_s}."""
    return -P / tau_m * math.exp(-d / tau_m) + Q / tau_s * math.exp(-d / tau_s)


@njit(cache=True)
def _solve_bracket(P, Q, lo, hi, u_lo, u_hi, tau_m, tau_s, theta, tol, max_iter):
    """Root of u(d) = theta in (lo, hi], given u increasing on [lo, hi] with
    u(lo) = u_lo < theta <= u(hi) = u_hi. Starts from the secant point, then
    safeguarded Newton: a Newton step that leaves the current bracket is
    replaced by bisection; stops when the bracket or the Newton step is below
    ``tol``."""
    x = hi
    if u_hi > u_lo:
        x = lo + (theta - u_lo) / (u_hi - u_lo) * (hi - lo)
        if not (x > lo and x < hi):
            x = hi
    for _ in range(max_iter):
        e_m = math.exp(-x / tau_m)
        e_s = math.exp(-x / tau_s)
        fx = P * e_m - Q * e_s - theta
        if fx == 0.0:
            return x
        if fx > 0.0:
            hi = x
        else:
            lo = x
        if hi - lo <= tol:
            return hi
        dfx = -P / tau_m * e_m + Q / tau_s * e_s
        xn = 0.5 * (lo + hi)
        if dfx > 0.0:
            xnewton = x - fx / dfx
            if xnewton > lo and xnewton < hi:
                if abs(xnewton - x) <= tol:
                    return xnewton
                xn = xnewton
        x = xn
    return hi


@njit(cache=True)
def _first_crossing(P, Q, L, em_L, es_L, tau_m, tau_s, theta, t0, rtol, max_iter):
    """First time d in (0, L] at which u(d) reaches ``theta``, or ``NO_CROSSING``.

    Parameters
    ----------
    P, Q : float
        State at the start of the interval (see module docstring); u(0) = P - Q
        is assumed below threshold.
    L : float
        Length of the interval (> 0).
    em_L, es_L : float
        exp(-L/tau_m), exp(-L/tau_s), shared by all neurons of a layer.
    tau_m, tau_s, theta : float
    t0 : float
        Absolute time of the interval start; the tolerance is
        ``rtol * max(|t0 + L|, 1)``.
    rtol : float
    max_iter : int

    Returns
    -------
    float
        d in (0, L], or -1.0 when u stays below theta on (0, L].
    """
    if L <= 0.0:
        return NO_CROSSING
    if P == 0.0 and Q == 0.0:
        return NO_CROSSING
    uL = P * em_L - Q * es_L
    du0 = -P / tau_m + Q / tau_s
    duL = -P / tau_m * em_L + Q / tau_s * es_L
    interior_max = du0 > 0.0 and duL < 0.0
    if uL < theta and not interior_max:
        return NO_CROSSING
    tol = rtol * max(abs(t0) + L, 1.0)
    if interior_max:
        dstar = math.log(P * tau_s / (Q * tau_m)) / (1.0 / tau_m - 1.0 / tau_s)
        if dstar <= 0.0:
            dstar = 0.0
        elif dstar > L:
            dstar = L
        ustar = _u(P, Q, dstar, tau_m, tau_s)
        if ustar >= theta:
            return _solve_bracket(P, Q, 0.0, dstar, P - Q, ustar, tau_m, tau_s, theta, tol, max_iter)
        if uL >= theta:
            # u decreases after d* and cannot come back up: unreachable in exact
            # arithmetic; kept as a safe branch for rounding at the ends.
            return _solve_bracket(P, Q, dstar, L, ustar, uL, tau_m, tau_s, theta, tol, max_iter)
        return NO_CROSSING
    # monotone increasing on (0, L], or a minimum inside followed by a rise to uL >= theta
    if du0 < 0.0 and duL > 0.0:
        dstar = math.log(P * tau_s / (Q * tau_m)) / (1.0 / tau_m - 1.0 / tau_s)
        if dstar < 0.0:
            dstar = 0.0
        elif dstar > L:
            dstar = L
        return _solve_bracket(P, Q, dstar, L, _u(P, Q, dstar, tau_m, tau_s), uL, tau_m, tau_s,
                              theta, tol, max_iter)
    return _solve_bracket(P, Q, 0.0, L, P - Q, uL, tau_m, tau_s, theta, tol, max_iter)
