"""Exact first threshold crossing of the SRM potential between two input events.

State. Between two consecutive input events the potential of Eq. 1, written
relative to the time t0 of the last event (d = t - t0 >= 0), is::

    u(d) = V exp(-d/tau_m) + R eps(d)
    V = u(t0) = sum_m c_m eps(t0 - t_m),     R = sum_m c_m exp(-(t0 - t_m)/tau_s)

with efficacies c_m = w a_m. V is the potential, R the synaptic trace. An input
event of efficacy c at t0 adds c to R (V is unchanged since eps(0) = 0); moving
on by L gives V <- V exp(-L/tau_m) + R eps(L), R <- R exp(-L/tau_s). Nothing
grows (all factors are <= 1 or bounded), so nothing overflows however long the
simulation runs; eps is evaluated with expm1 (see :mod:`eventsnn.kernels`), so
the state keeps full precision even for close time constants (where the
equivalent form P e^{-d/tau_m} - Q e^{-d/tau_s} would cancel).

Critical point. u'(d) = -V/tau_m exp(-d/tau_m) + R eps'(d) vanishes at most
once; with P = V + A R, Q = A R (A = tau_m/(tau_m - tau_s))::

    d* = [log1p(V/(A R)) + log1p((tau_s - tau_m)/tau_m)] / ((tau_s - tau_m)/(tau_m tau_s))

so on (0, L] the potential is monotone on [0, d*] and on [d*, L]. The first
crossing of theta is bracketed exactly by these ends (a maximum that touches
the threshold between events is never missed) and solved by a safeguarded
Newton iteration from the secant point (Newton steps that leave the bracket are
replaced by bisection) to a relative tolerance ``rtol`` of the absolute time.

These are scalar ``numba.njit`` routines taking floats only; every engine calls
the same functions, so engines and backends cannot drift.
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


@njit(cache=True, inline="always")
def _interval_factors(L, tau_m, tau_s):
    """(exp(-L/tau_m), exp(-L/tau_s), eps(L), eps'(L)) from two transcendental calls.

    With tau_slow = max(tau_m, tau_s), tau_fast = min, delta = 1/tau_fast - 1/tau_slow
    and x = expm1(-L delta): exp(-L/tau_fast) = exp(-L/tau_slow) (1 + x),
    eps(L) = -|A| exp(-L/tau_slow) x, eps'(L) = exp(-L/tau_slow) (1/tau_s + |A|/tau_fast x).
    """
    slow = max(tau_m, tau_s)
    fast = min(tau_m, tau_s)
    delta = (slow - fast) / (slow * fast)
    abs_a = tau_m / abs(tau_m - tau_s)
    e_slow = math.exp(-L / slow)
    x = math.expm1(-L * delta)
    e_fast = e_slow * (1.0 + x)
    e_m = e_slow if tau_m >= tau_s else e_fast
    e_s = e_fast if tau_m >= tau_s else e_slow
    return e_m, e_s, -abs_a * e_slow * x, e_slow * (1.0 / tau_s + abs_a / fast * x)


@njit(cache=True)
def _u_du(V, R, d, tau_m, tau_s):
    """(u(d), u'(d)) of the state (V, R), with two transcendental calls."""
    e_m, _, eps, deps = _interval_factors(d, tau_m, tau_s)
    return V * e_m + R * eps, -V / tau_m * e_m + R * deps


@njit(cache=True)
def _u(V, R, d, tau_m, tau_s):
    """Potential u(d) = V e^{-d/tau_m} + R eps(d)."""
    return _u_du(V, R, d, tau_m, tau_s)[0]


@njit(cache=True)
def _du(V, R, d, tau_m, tau_s):
    """Slope u'(d) = -V/tau_m e^{-d/tau_m} + R eps'(d)."""
    return _u_du(V, R, d, tau_m, tau_s)[1]


@njit(cache=True)
def _critical_point(V, R, tau_m, tau_s):
    """The d where u'(d) = 0, or -1.0 when there is none."""
    if R == 0.0:
        return -1.0
    a = tau_m / (tau_m - tau_s)
    r = V / (a * R)
    if r <= -1.0:
        return -1.0
    return (math.log1p(r) + math.log1p((tau_s - tau_m) / tau_m)) / ((tau_s - tau_m) / (tau_m * tau_s))


@njit(cache=True)
def _solve_bracket(V, R, lo, hi, u_lo, u_hi, tau_m, tau_s, theta, tol, max_iter):
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
        ux, dux = _u_du(V, R, x, tau_m, tau_s)
        fx = ux - theta
        if fx == 0.0:
            return x
        if fx > 0.0:
            hi = x
        else:
            lo = x
        if hi - lo <= tol:
            return hi
        xn = 0.5 * (lo + hi)
        if dux > 0.0:
            xnewton = x - fx / dux
            if xnewton > lo and xnewton < hi:
                if abs(xnewton - x) <= tol:
                    return xnewton
                xn = xnewton
        x = xn
    return hi


@njit(cache=True)
def _first_crossing(V, R, L, em_L, eps_L, deps_L, tau_m, tau_s, theta, t0, rtol, max_iter):
    """First time d in (0, L] at which u(d) reaches ``theta``, or ``NO_CROSSING``.

    Parameters
    ----------
    V, R : float
        State at the start of the interval (see module docstring); u(0) = V is
        assumed below threshold.
    L : float
        Length of the interval (> 0).
    em_L, eps_L, deps_L : float
        exp(-L/tau_m), eps(L), eps'(L): shared by all neurons of a layer.
    tau_m, tau_s, theta : float
    t0 : float
        Absolute time of the interval start; the tolerance is
        ``rtol * max(|t0| + L, 1)``.
    rtol : float
    max_iter : int

    Returns
    -------
    float
        d in (0, L], or -1.0 when u stays below theta on (0, L].
    """
    if L <= 0.0:
        return NO_CROSSING
    if V == 0.0 and R == 0.0:
        return NO_CROSSING
    uL = V * em_L + R * eps_L
    du0 = R / tau_s - V / tau_m
    duL = R * deps_L - V / tau_m * em_L
    interior_max = du0 > 0.0 and duL < 0.0
    if uL < theta and not interior_max:
        return NO_CROSSING
    tol = rtol * max(abs(t0) + L, 1.0)
    if interior_max:
        dstar = min(max(_critical_point(V, R, tau_m, tau_s), 0.0), L)
        ustar = _u(V, R, dstar, tau_m, tau_s)
        if ustar >= theta:
            return _solve_bracket(V, R, 0.0, dstar, V, ustar, tau_m, tau_s, theta, tol, max_iter)
        if uL >= theta:
            # u decreases after d* and cannot come back up: unreachable in exact
            # arithmetic; kept as a safe branch for rounding at the ends.
            return _solve_bracket(V, R, dstar, L, ustar, uL, tau_m, tau_s, theta, tol, max_iter)
        return NO_CROSSING
    if du0 < 0.0 and duL > 0.0:
        # a minimum inside, then a rise to uL >= theta
        dstar = min(max(_critical_point(V, R, tau_m, tau_s), 0.0), L)
        return _solve_bracket(V, R, dstar, L, _u(V, R, dstar, tau_m, tau_s), uL, tau_m, tau_s,
                              theta, tol, max_iter)
    return _solve_bracket(V, R, 0.0, L, V, uL, tau_m, tau_s, theta, tol, max_iter)


@njit(cache=True, inline="always")
def _screen(V, R, em_L, eps_L, deps_L, rm, rs, theta):
    """True when the interval (0, L] may hold a crossing: u(L) >= theta, or a maximum
    inside (u'(0) > 0 > u'(L)). ``rm`` = 1/tau_m, ``rs`` = 1/tau_s; no transcendental call."""
    return (V * em_L + R * eps_L >= theta) or ((R * rs - V * rm > 0.0) and (R * deps_L - V * rm * em_L < 0.0))


@njit(cache=True, inline="always")
def _interval_spike(V, R, L, em_L, eps_L, deps_L, tau_m, tau_s, theta, t0, t_next, has_next,
                    rtol, max_iter):
    """The spike of a neuron in the interval (t0, t0 + L] after an input group.

    Returns ``(d, t_k, on_next)``: d < 0 when there is no crossing; a crossing that
    lands on the end of the interval (d >= L, or t0 + d rounding to t_next or beyond)
    is placed exactly at ``t_next`` (the next group's time, or t_end) with d = L, and
    ``on_next`` = ``has_next`` says that the next group's inputs are forgotten.
    """
    d = _first_crossing(V, R, L, em_L, eps_L, deps_L, tau_m, tau_s, theta, t0, rtol, max_iter)
    if d < 0.0:
        return d, 0.0, False
    tk = t0 + d
    if d >= L or tk >= t_next:
        return L, t_next, has_next
    return d, tk, False


@njit(cache=True, inline="always")
def _advance(V, R, em_L, es_L, eps_L):
    """State after an interval of length L: (V e^{-L/tau_m} + R eps(L), R e^{-L/tau_s})."""
    return V * em_L + R * eps_L, R * es_L


#: The scalar routines of this module, compiled once more for every other backend by
#: :func:`compile_family` (the GPU engine adds its own scalar routines to the list).
SCALAR_ROUTINES = (_interval_factors, _u_du, _u, _du, _critical_point, _solve_bracket,
                   _first_crossing, _screen, _interval_spike, _advance)


class FamilyError(ValueError):
    """A routine compiled by :func:`compile_family` calls a compiled routine outside its family."""


def compile_family(routines, decorator, overrides=None) -> dict:
    """Compile the *same Python source* of ``routines`` with another decorator.

    Each routine's code object is rebound to a copy of its module's globals in
    which every member of the family (and every entry of ``overrides``) stands
    for its new compilation, so calls between members resolve within the family:
    e.g. ``compile_family(SCALAR_ROUTINES, numba.cuda.jit(device=True))`` gives
    device functions whose ``_first_crossing`` calls the device ``_solve_bracket``.
    The CPU routines (``njit(cache=True)`` dispatchers) are left untouched.

    Parameters
    ----------
    routines : sequence of numba dispatchers or plain functions
    decorator : callable
        Applied to each rebound function (e.g. ``numba.cuda.jit(device=True)``).
    overrides : dict, optional
        name -> routine used instead of the module's global of that name (e.g. an
        atomic accumulation on the GPU for a plain ``+=`` on the CPU).

    Returns
    -------
    dict
        name -> compiled routine, overrides included.

    Raises
    ------
    FamilyError
        When a routine refers to a compiled (numba) routine that is neither in the
        family nor overridden: it would silently call the CPU version.
    """
    import types

    from numba.core.dispatcher import Dispatcher

    family = dict(overrides or {})
    spaces = {}
    members = []
    for routine in routines:
        py = getattr(routine, "py_func", routine)
        space = spaces.setdefault(id(py.__globals__), dict(py.__globals__))
        members.append((py, space))
    names = {py.__name__ for py, _ in members} | set(family)
    for py, space in members:
        for name in py.__code__.co_names:
            if isinstance(space.get(name), Dispatcher) and name not in names:
                raise FamilyError(f"{py.__name__} calls {name}, which is not in the family")
        fn = types.FunctionType(py.__code__, space, py.__name__, py.__defaults__, py.__closure__)
        family[py.__name__] = decorator(fn)
    for space in spaces.values():
        space.update(family)
    return family
