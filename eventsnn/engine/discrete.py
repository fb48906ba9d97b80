"""Discrete-time engine: the paper's official clock-driven algorithm, as a mode and a baseline.

The official code (zhuyaoyu/SNN-event-driven-learning) does not simulate
continuous time: it steps a clock. This module reproduces its forward and
backward for dense, convolution and pooling layers, with the clock step dt as
a parameter (official: dt = 1, T steps; ``Clock``).

Clock and binning
-----------------
The window (0, t_end] is cut into ``steps`` steps of dt = t_end / steps. An
input event at time t falls in step ``n = floor(t/dt + BIN_TOL)`` (BIN_TOL
absorbs the rounding of times that are multiples of dt); events of one input
neuron in one step add up: ``x_j[n] = sum a_m``. Events with n >= steps (at or
after t_end) are dropped; negative times are refused. The official code feeds
the normalised image at each of its T steps: the T impulses of
:func:`eventsnn.encode.current` at t = 0..T-1 fall in steps 0..T-1 (dt = 1).

Neuron (official ``neuron_forward``), per neuron with input current
``I[n] = sum_j W_ij x_j[n]`` (no bias), decay factors a = 1 - dt/tau::

    m[n] = (m[n-1] + I[n]) a_m,   s[n] = (s[n-1] + I[n]) a_s
    u[n] = A (m[n] - s[n]),       A = tau_m / (tau_m - tau_s)
    du[n] = u[n] - u_last          (the one-step increase; u_last = 0 after a spike)
    spike at step n if u[n] >= theta; then m = s = 0

so that between resets ``u[n] = sum_{n'} I[n'] syn_a[n - n']`` with
``syn_a[d] = A (a_m^(d+1) - a_s^(d+1))``. A spike at step n is reported at
time n dt and is the input of the next layer at the same step n (official: no
delay between layers).

Relation to continuous time. With tau' = -dt / ln(1 - dt/tau) (e.g. 5 -> 4.48,
3 -> 2.47, 2.5 -> 1.96 for dt = 1) a^(d+1) = exp(-(d+1) dt / tau'), so without
spikes ``u[n] = (A / A') u'((n+1) dt)``, where u' is the exact continuous
potential (Eq. 1) of the same inputs as impulses at n' dt with time constants
tau'_m, tau'_s and A' = tau'_m / (tau'_m - tau'_s): an input at step n' acts
like an impulse at time n' dt, and u[n] is the potential at the *end* of step
n. As dt -> 0, tau' = tau - dt/2 + O(dt^2) -> tau, A'/A -> 1 and u[n] -> u((n+1) dt);
a spike is then reported up to one step before the exact crossing (per layer).

Backward (official ``neuron_backward``; Eqs. 12-14 on the clock)
---------------------------------------------------------------
Only steps with an output spike carry gradient. For spike k of neuron i at
step n_k with G_k = dL/dt_k (positive: "move earlier"; the supervisory spike
included) and window steps (n_{k-1}, n_k] (n_{k-1}: the neuron's previous
spike, supervisory spike included, or -1)::

    dL/dx_j[n]  += G_k h[n_k - n] / D_k  W_ij x_j[n]           (Eq. 12/13, input path)
    dL/dW_ij    += G_k clamp(-dt/du_k, -cap, 0) syn_a[n_k - n] x_j[n]  (Eq. 14, weight path)

* "exp" (official "exponential"): ``h[d] = a_g^(d+1)``, a_g = 1 - dt/tau_grad,
  and D_k is the trace ``g[n] = (g[n-1] + I[n]) a_g`` at n_k (reset with m and s
  at real spikes): D_k = sum_{n'} I[n'] h[n_k - n'] over the inputs since the
  last real spike;
* "depsilon" (official "original"): ``h[d] = syn_a[d] - syn_a[d-1]``
  (syn_a[-1] = 0), the kernel's own one-step increase, and D_k = du_k.

Stabilisers, as in the official code: ``cap`` = ``max_dt_du`` (official 4;
None: no cap) on |dt/du|; -dt/du is also clamped at 0 from above (a spike
whose potential fell gets no weight gradient); a window whose denominator is
<= 0 is dropped when ``drop_nonpositive`` (official: always), and a zero
denominator always; dL/dx is multiplied by ``input_grad_scale`` (official
0.85) per dense/conv layer. The input-path cap of the official code
(``max_dudt_inv``, 123456789 by default) is not applied. With dt = 1 every
formula is literally the official one; as dt -> 0 the shares h / D and
-dt/du approach the continuous Eqs. 12 and 14.

A sample none of whose output or supervisory spikes carries a gradient (G = 0
throughout: the count loss is zero for most samples once a network is trained)
contributes exact zeros to every sum above; it is not walked, and the input
gradients are formed only for the events of the samples that are (as in
continuous time, ``sweep.gradient_samples``).

The supervisory spike (official output layer, training only): at the last
step where the label neuron's potential rose by more than 0.05 dt
(official: du > 0.05 with dt = 1), or at step 0 if it never did
(:func:`supervision_times`, rule "last-rise"; rule "end": the last step). It
is written into the output raster after the forward (it does not reset the
neuron) where du != 0; it counts in the loss only where it is not already a
real spike; in the backward it is a spike like the others (it closes the
window of the later spike).

Pooling (official ``PoolLayer``), per step on the binned input values, k x k
windows, the last H % k rows / W % k columns dropped:

* avg: y = mean of the window; backward g/k^2 to every position;
* max: y = max of the window (empty positions count 0); backward g to the
  first maximal position (row-major);
* adjusted-avg: y = mean; backward g r/k^2 to every position with r = 1/y
  where 1/y <= k^2 + 1, else 0 (g/n to each of n spiking positions).

Each non-zero y is one output event (amplitude y) at the step time. A
position's gradient is split over its events in proportion to their
amplitudes (one event per position and step for spikes); non-spiking
positions have no event and lose their share, as in the official code.

Computation (a fair clock-driven baseline): per layer, the input is binned to
the (step, sample) rows that hold any event ("active rows"; rows without
input only decay). Currents of dense inputs are one BLAS product over all
active rows, ``(rows, n_in) @ W^T``; sparse inputs (hidden spikes, under
``DENSE_INPUT_DENSITY``) are scattered event by event; convolutions use
im2col in chunks and BLAS. ``Clock(every_step=True)`` makes every (step,
sample) row active and takes the BLAS product over all of them, zeros
included, as the official code does (same results). The elementwise recurrences run in compiled
kernels, parallel over samples, vectorised over the neurons of a sample. The
record keeps the currents, du and the spike raster: memory grows with the
number of steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from ..params import GradParams, NeuronParams
from ..spikes import SpikeTrains, csr_offsets, offsets_of
from .conv import (
    ConvGeometry,
    PoolGeometry,
    PoolGrads,
    _dense_event_grads,
    _im2col,
    check_conv_weight,
    check_pool_inputs,
)
from .sweep import (
    DENSE_INPUT_DENSITY,
    FLAG_NO_GRADIENT,
    DenseGrads,
    ForcedSpikes,
    _by_neuron,
    _check_weight,
    _dense_group_inputs,
    gradient_samples,
    take,
)

#: Tolerance of the binning floor(t/dt + BIN_TOL) (times that are multiples of dt).
BIN_TOL = 1e-9
#: Supervisory spike: the last step whose one-step rise of u exceeds MIN_RISE dt.
MIN_RISE = 0.05
#: Rules of the supervisory spike understood by :func:`supervision_times`.
SUPERVISION_RULES = ("end", "last-rise")
#: Largest im2col block of a convolution (bytes).
IM2COL_BYTES = 32 * 2 ** 20


# ----------------------------------------------------------------------------------
# the clock
# ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clock:
    """A discrete clock over (0, t_end]: ``steps`` steps of ``dt = t_end / steps``.

    ``every_step``: compute the currents of every (step, sample) row with one dense BLAS
    product, rows without input included (the official code's computation) instead of
    only the rows that hold events (same results).

    Raises ValueError naming the field if steps < 1 or t_end is not finite positive.
    """

    steps: int
    t_end: float
    every_step: bool = False

    def __post_init__(self):
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or int(self.steps) < 1:
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        t_end = float(self.t_end)
        if not math.isfinite(t_end) or t_end <= 0:
            raise ValueError(f"t_end must be a finite positive number, got {self.t_end!r}")
        object.__setattr__(self, "steps", int(self.steps))
        object.__setattr__(self, "t_end", t_end)
        object.__setattr__(self, "every_step", bool(self.every_step))

    @property
    def dt(self) -> float:
        return self.t_end / self.steps

    def decay(self, tau: float, name: str = "tau") -> float:
        """1 - dt/tau; ValueError if dt >= tau (the factor would not be a decay)."""
        a = 1.0 - self.dt / tau
        if not a > 0.0:
            raise ValueError(f"the clock step dt = {self.dt:g} must be smaller than {name} = {tau:g} "
                             f"(use more steps)")
        return a

    def step_of(self, times) -> np.ndarray:
        """Step index floor(t/dt + BIN_TOL) of every time (int64)."""
        return np.floor(np.asarray(times, dtype=np.float64) / self.dt + BIN_TOL).astype(np.int64)


def kernel_tables(clock: Clock, params: NeuronParams, gp: GradParams):
    """(syn_a, h) of length ``clock.steps``: the PSP of an input d steps back and the
    backward kernel h[d] ("exp": a_g^(d+1); "depsilon": syn_a[d] - syn_a[d-1])."""
    a_m = clock.decay(params.tau_m, "tau_m")
    a_s = clock.decay(params.tau_s, "tau_s")
    d1 = np.arange(1, clock.steps + 1, dtype=np.float64)
    syn_a = params.amplitude * (a_m ** d1 - a_s ** d1)
    if gp.kernel == "exp":
        h = clock.decay(gp.tau_grad, "tau_grad") ** d1
    else:
        h = np.diff(syn_a, prepend=0.0)
    return syn_a, h


# ----------------------------------------------------------------------------------
# binning
# ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Binned:
    """Input events on the clock, grouped by active row (step n, sample s): row key n S + s.

    Attributes
    ----------
    n_samples, n_in : int
    keep : ndarray int64 (n_kept,) — indices of the input events inside the window, in
        row order (events of one row keep their input order).
    ev_row, ev_neuron : ndarray int64 (n_kept,) — active row and source of each kept event.
    ev_amp : ndarray float64 (n_kept,)
    row_offsets : ndarray int64 (n_active + 1,) — events of active row r: row_offsets[r]:[r+1].
    row_step, row_sample : ndarray int64 (n_active,) — step and sample of each active row.
    row_of : ndarray int64 (steps, n_samples) — active row of (n, s), -1 if it holds no event.
    all_rows : bool — every (n, s) is an active row (``Clock.every_step``).
    """

    n_samples: int
    n_in: int
    keep: np.ndarray
    ev_row: np.ndarray
    ev_neuron: np.ndarray
    ev_amp: np.ndarray
    row_offsets: np.ndarray
    row_step: np.ndarray
    row_sample: np.ndarray
    row_of: np.ndarray
    all_rows: bool = False

    @property
    def n_active(self) -> int:
        return self.row_step.size

    @property
    def dense(self) -> bool:
        """Whether the currents come from BLAS: every row requested, or the (active rows x
        inputs) matrix dense enough."""
        return self.all_rows or self.ev_row.size >= DENSE_INPUT_DENSITY * max(self.n_active * self.n_in, 1)

    def matrix(self) -> np.ndarray:
        """X (n_active, n_in): the summed amplitudes x_j[n] of every active row."""
        X = np.zeros((self.n_active, self.n_in))
        _dense_group_inputs(self.ev_row, self.ev_neuron, self.ev_amp, X)
        return X


def bin_events(inputs: SpikeTrains, clock: Clock) -> Binned:
    """Bin the events of a batch on the clock (see the module docstring)."""
    if inputs.n_events and inputs.times.min() < 0:
        raise ValueError("discrete time: input event times must be >= 0")
    S = inputs.n_samples
    step = clock.step_of(inputs.times)
    keep = np.flatnonzero(step < clock.steps)
    key = step[keep] * S + inputs.samples[keep]
    order = np.argsort(key, kind="stable")
    keep, key = keep[order], key[order]
    if clock.every_step:
        rows, ev_row = np.arange(clock.steps * S, dtype=np.int64), key
        counts = np.bincount(key, minlength=rows.size)
    else:
        rows, ev_row, counts = np.unique(key, return_inverse=True, return_counts=True)
    row_offsets = csr_offsets(counts)
    row_of = np.full(clock.steps * S, -1, dtype=np.int64)
    row_of[rows] = np.arange(rows.size)
    return Binned(S, inputs.n_neurons, keep, ev_row.astype(np.int64).reshape(-1),
                  inputs.neurons[keep], inputs.amplitudes[keep], row_offsets,
                  (rows // max(S, 1)).astype(np.int64), (rows % max(S, 1)).astype(np.int64),
                  row_of.reshape(clock.steps, S), clock.every_step)


def raster_spikes(raster: np.ndarray, clock: Clock):
    """Events of a (steps, S, n) raster as SpikeTrains (times n dt, sorted per sample by
    time then neuron) and the (step, sample, neuron) index arrays aligned with them."""
    T, S, n = raster.shape
    t, s, i = np.nonzero(raster)
    order = np.lexsort((i, t, s))
    t, s, i = t[order], s[order], i[order]
    return SpikeTrains(t * clock.dt, i, np.ones(i.size), offsets_of(s, S), n), (t, s, i)


# ----------------------------------------------------------------------------------
# compiled kernels
# ----------------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def _scatter_currents(row_offsets, ev_neuron, ev_amp, WT, cur):
    """cur[r] += a_m W[:, j_m] for every event m of active row r (sparse inputs)."""
    n_out = cur.shape[1]
    for r in prange(row_offsets.size - 1):
        c = cur[r]
        for m in range(row_offsets[r], row_offsets[r + 1]):
            a = ev_amp[m]
            w = WT[ev_neuron[m]]
            for i in range(n_out):
                c[i] += a * w[i]


@njit(cache=True, parallel=True)
def _clock_forward(cur, row_of, a_m, a_s, amp, theta, m_tr, s_tr, u_last, du, out):
    """The official forward recurrence (module docstring) of every neuron of every sample
    (parallel over samples). cur (n_active, n); row_of (T, S); du float64 and out int8
    (T, S, n) are written; m_tr, s_tr, u_last (S, n) are workspace."""
    T, S, n = du.shape
    for s in prange(S):
        ms = m_tr[s]
        ss = s_tr[s]
        ul = u_last[s]
        for i in range(n):
            ms[i] = 0.0
            ss[i] = 0.0
            ul[i] = 0.0
        for t in range(T):
            r = row_of[t, s]
            if r >= 0:
                c = cur[r]
                for i in range(n):
                    ms[i] = (ms[i] + c[i]) * a_m
                    ss[i] = (ss[i] + c[i]) * a_s
            else:
                for i in range(n):
                    ms[i] = ms[i] * a_m
                    ss[i] = ss[i] * a_s
            dut = du[t, s]
            ot = out[t, s]
            for i in range(n):
                u = amp * (ms[i] - ss[i])
                dut[i] = u - ul[i]
                if u >= theta:
                    ot[i] = 1
                    ms[i] = 0.0
                    ss[i] = 0.0
                    ul[i] = 0.0
                else:
                    ot[i] = 0
                    ul[i] = u


@njit(cache=True, parallel=True)
def _clock_backward(cur, row_of, out, spk, grad, du, dt, a_g, exp_kernel, h, syn_a, cap,
                    drop_nonpositive, active, g_tr, c_share, c_wf, lag, share, wf, flags, gin, gw):
    """The official backward (module docstring), parallel over the ``active`` samples (bool
    (S,): those with a nonzero G; the others' rows of gin and gw stay zero, their flags 0).

    out: real spikes (resets of the g trace); spk: spikes carrying gradient (real and
    supervisory), grad: G at those steps; all (T, S, n). Pass 1 (forward in time) forms
    per spike share = G/D (0 if dropped), wf = G clamp(-dt/du, -cap, 0) and flags
    (1 dropped, 2 D <= 0, 4 clamped) into share, wf, flags (T, S, n). Pass 2 (backward in
    time) writes gin = share h[lag] and gw = wf syn_a[lag] into the active rows
    (n_active, n) (zero-initialised). g_tr, c_share, c_wf, lag (S, n) are workspace.
    """
    T, S, n = du.shape
    for s in prange(S):
        if not active[s]:
            continue
        g = g_tr[s]
        for i in range(n):
            g[i] = 0.0
        for t in range(T):
            if exp_kernel:
                r = row_of[t, s]
                if r >= 0:
                    c = cur[r]
                    for i in range(n):
                        g[i] = (g[i] + c[i]) * a_g
                else:
                    for i in range(n):
                        g[i] = g[i] * a_g
            for i in range(n):
                if spk[t, s, i]:
                    d_u = du[t, s, i]
                    D = g[i] if exp_kernel else d_u
                    f = 0
                    if D <= 0.0:
                        f |= 2
                        if drop_nonpositive or D == 0.0:
                            f |= 1
                    G = grad[t, s, i]
                    share[t, s, i] = 0.0 if (f & 1) else G / D
                    if d_u > 0.0:
                        dtdu = -dt / d_u
                    elif d_u == 0.0:
                        dtdu = -np.inf
                    else:
                        dtdu = 0.0
                    if dtdu < -cap:
                        dtdu = -cap
                        f |= 4
                    if dtdu == -np.inf:  # no cap and a flat potential: no usable slope
                        dtdu = 0.0
                    wf[t, s, i] = G * dtdu
                    flags[t, s, i] = f
                if exp_kernel and out[t, s, i]:
                    g[i] = 0.0
        cs = c_share[s]
        cw = c_wf[s]
        lg = lag[s]
        for i in range(n):
            lg[i] = -1
        for t in range(T - 1, -1, -1):
            for i in range(n):
                if spk[t, s, i]:
                    cs[i] = share[t, s, i]
                    cw[i] = wf[t, s, i]
                    lg[i] = 0
                elif lg[i] >= 0:
                    lg[i] += 1
            r = row_of[t, s]
            if r >= 0:
                gi = gin[r]
                gwr = gw[r]
                for i in range(n):
                    d = lg[i]
                    if d >= 0:
                        gi[i] = cs[i] * h[d]
                        gwr[i] = cw[i] * syn_a[d]


@njit(cache=True, parallel=True)
def _event_grads(ev_row, ev_neuron, ev_amp, WT, gin, gw, d_times, d_amps):
    """Per event m of active row r = ev_row[m] (sparse inputs):
    d_times[m] = a_m sum_i gin[r, i] W[i, j_m], d_amps[m] = sum_i gw[r, i] W[i, j_m]."""
    n_out = gin.shape[1]
    for m in prange(ev_row.size):
        gi = gin[ev_row[m]]
        gwr = gw[ev_row[m]]
        w = WT[ev_neuron[m]]
        bt = 0.0
        ba = 0.0
        for i in range(n_out):
            bt += gi[i] * w[i]
            ba += gwr[i] * w[i]
        d_times[m] = bt * ev_amp[m]
        d_amps[m] = ba


@njit(cache=True, parallel=True)
def _sparse_weight_grad(neuron_offsets, by_neuron, ev_row, ev_amp, gw, dWT):
    """dWT[j] += a_m gw[row_m] for every event m of input j (parallel over inputs)."""
    n_out = gw.shape[1]
    for j in prange(neuron_offsets.size - 1):
        acc = dWT[j]
        for q in range(neuron_offsets[j], neuron_offsets[j + 1]):
            m = by_neuron[q]
            a = ev_amp[m]
            g = gw[ev_row[m]]
            for i in range(n_out):
                acc[i] += a * g[i]


# ----------------------------------------------------------------------------------
# dense and convolution layers
# ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ClockRecord:
    """What the backward of a dense or convolution layer on the clock needs.

    Memory grows with the number of steps: ``du`` and ``out`` hold T S n_out entries,
    ``cur`` one row of n_out currents per active (step, sample) row.

    Attributes
    ----------
    params : NeuronParams
    clock : Clock
    weight : ndarray — effective weights, (n_out, n_in) or the conv kernel (C_out, C_in, k, k).
    geometry : ConvGeometry or None (dense layer)
    binned : Binned — the input events on the clock.
    X : ndarray (n_active, n_in) or None — the binned input matrix (dense inputs only).
    cur : ndarray float64 (n_active, n_out) — input currents of the active rows.
    du : ndarray float64 (T, S, n_out) — one-step increase of u at every step.
    out : ndarray int8 (T, S, n_out) — the spike raster.
    outputs : SpikeTrains — the spikes as events (times n dt).
    spike_index : tuple of int64 arrays (step, sample, neuron), aligned with ``outputs``.
    n_in_events : int
    """

    params: NeuronParams
    clock: Clock
    weight: np.ndarray
    geometry: ConvGeometry | None
    binned: Binned
    X: np.ndarray | None
    cur: np.ndarray
    du: np.ndarray
    out: np.ndarray
    outputs: SpikeTrains
    spike_index: tuple
    n_in_events: int

    @property
    def n_out(self) -> int:
        return self.du.shape[2]


def _conv_blocks(n_rows: int, geom: ConvGeometry):
    """Row blocks [a, b) whose im2col fits IM2COL_BYTES."""
    per_row = max(geom.n_pos * geom.n_taps * 8, 1)
    size = max(1, IM2COL_BYTES // per_row)
    return [(a, min(a + size, n_rows)) for a in range(0, n_rows, size)]


def _conv_cols(X, a, b, geom):
    cols = np.empty((b - a, geom.n_pos, geom.n_taps))
    _im2col(np.ascontiguousarray(X[a:b]), *geom.scalars(), cols)
    return cols.reshape((b - a) * geom.n_pos, geom.n_taps)


def _currents(binned: Binned, weight, geom: ConvGeometry | None):
    """(X or None, currents (n_active, n_out)) of the active rows."""
    if geom is not None:
        X = binned.matrix()
        K2 = weight.reshape(geom.c_out, geom.n_taps)
        cur = np.empty((binned.n_active, geom.c_out, geom.n_pos))
        for a, b in _conv_blocks(binned.n_active, geom):
            c = _conv_cols(X, a, b, geom) @ K2.T                                # (rows*P, C_out)
            cur[a:b] = c.reshape(b - a, geom.n_pos, geom.c_out).transpose(0, 2, 1)
        return X, cur.reshape(binned.n_active, geom.n_out)
    if binned.dense:
        X = binned.matrix()
        return X, X @ weight.T
    cur = np.zeros((binned.n_active, weight.shape[0]))
    _scatter_currents(binned.row_offsets, binned.ev_neuron, binned.ev_amp,
                      np.ascontiguousarray(weight.T), cur)
    return None, cur


def _forward(inputs: SpikeTrains, weight, geom, params: NeuronParams, clock: Clock):
    binned = bin_events(inputs, clock)
    X, cur = _currents(binned, weight, geom)
    S = inputs.n_samples
    n_out = cur.shape[1] if geom is None else geom.n_out
    du = np.empty((clock.steps, S, n_out))
    out = np.empty((clock.steps, S, n_out), dtype=np.int8)
    work = [np.empty((S, n_out)) for _ in range(3)]
    if S and n_out:
        _clock_forward(cur, binned.row_of, clock.decay(params.tau_m, "tau_m"),
                       clock.decay(params.tau_s, "tau_s"), params.amplitude, params.threshold,
                       *work, du, out)
    outputs, index = raster_spikes(out, clock)
    rec = ClockRecord(params, clock, weight, geom, binned, X, cur, du, out, outputs, index,
                      inputs.n_events)
    return outputs, rec


def dense_forward(inputs: SpikeTrains, weight, params: NeuronParams, clock: Clock):
    """Forward of a dense layer on the clock (module docstring).

    Parameters
    ----------
    inputs : SpikeTrains — input events, times >= 0.
    weight : array_like float64 (n_out, inputs.n_neurons) — effective weights.
    params : NeuronParams
    clock : Clock

    Returns
    -------
    outputs : SpikeTrains — spikes at the step times n dt (amplitude 1).
    record : ClockRecord
    """
    w = _check_weight(weight, inputs.n_neurons)
    return _forward(inputs, w, None, params, clock)


def conv_forward(inputs: SpikeTrains, weight, geometry: ConvGeometry, params: NeuronParams,
                 clock: Clock):
    """Forward of a convolution on the clock (im2col + BLAS per block of active rows).

    ``weight`` is the effective kernel (C_out, C_in, k, k); neurons are flattened
    (C, H, W) row-major. Returns (outputs, ClockRecord) as :func:`dense_forward`.
    """
    if inputs.n_neurons != geometry.n_in:
        raise ValueError(f"convolution expects {geometry.n_in} inputs {geometry.in_shape}, "
                         f"got events from {inputs.n_neurons} neurons")
    return _forward(inputs, check_conv_weight(weight, geometry), geometry, params, clock)


def _grad_array(grad_out, n: int, what: str) -> np.ndarray:
    """``grad_out`` as a float64 vector of n finite entries (ValueError otherwise)."""
    grad = np.ascontiguousarray(grad_out, dtype=np.float64).reshape(-1)
    if grad.size != n:
        raise ValueError(f"grad_out must have one entry per {what} ({n}), got {grad.size}")
    if not np.all(np.isfinite(grad)):
        raise ValueError("grad_out contains NaN or inf")
    return grad


def _grad_raster(record: ClockRecord, grad: np.ndarray, forced: ForcedSpikes | None):
    """(spk, G) rasters: the real spikes with their G, plus the supervisory spikes
    (written where no real spike is)."""
    t, s, i = record.spike_index
    G = np.zeros(record.du.shape)
    G[t, s, i] = grad
    spk = record.out
    if forced is not None and forced.times.size:
        ft = np.minimum(record.clock.step_of(forced.times), record.clock.steps - 1)
        if ft.min() < 0:
            raise ValueError("supervisory spike times must be >= 0")
        fs, fi = forced.samples, forced.neurons
        if fs.size and (fs.min() < 0 or fs.max() >= record.du.shape[1]
                        or fi.min() < 0 or fi.max() >= record.n_out):
            raise ValueError("supervisory spikes: sample or neuron index out of range")
        new = record.out[ft, fs, fi] == 0
        spk = record.out.copy()
        spk[ft[new], fs[new], fi[new]] = 1
        G[ft[new], fs[new], fi[new]] = forced.grads[new]
    return spk, G


def clock_backward(record: ClockRecord, grad_out, grad_params: GradParams | None = None, *,
                   need_input_grad: bool = True, forced: ForcedSpikes | None = None) -> DenseGrads:
    """Backward of a dense or convolution layer on the clock (module docstring).

    Parameters
    ----------
    record : ClockRecord — from :func:`dense_forward` or :func:`conv_forward`.
    grad_out : array_like float64 (n_spikes,) — G of every output spike (aligned with
        ``record.outputs``).
    grad_params : GradParams — kernel ("exp" | "depsilon"), tau_grad, max_dt_du (cap on
        |dt/du|), input_grad_scale, drop_nonpositive. Default: GradParams().
    need_input_grad : bool — compute dL/dt and dL/da of the input events.
    forced : ForcedSpikes, optional — supervisory spikes (their ``max_dt_du`` is not used:
        they get the same cap as real spikes, as in the official code).

    Returns
    -------
    DenseGrads
        ``d_times`` (n_in_events,) — dL/dx of each event's bin, split over the bin's
        events in proportion to their amplitude, times ``input_grad_scale``;
        ``d_amplitudes`` — sum_i gw W_ij (the weight-path analogue, unscaled);
        ``d_weight`` — shape of ``record.weight``; ``flags`` (n_spikes,) per real spike:
        1 dropped, 2 denominator <= 0, 4 |dt/du| clamped, 8 not walked (its sample carries no
        gradient: every output and supervisory G of it is 0, so all of its terms are zero).
    """
    gp = grad_params if grad_params is not None else GradParams()
    grad = _grad_array(grad_out, record.outputs.n_events, "output spike")
    clock, p, b = record.clock, record.params, record.binned
    T, S, n_out = record.du.shape
    syn_a, h = kernel_tables(clock, p, gp)
    exp_kernel = gp.kernel == "exp"
    a_g = clock.decay(gp.tau_grad, "tau_grad") if exp_kernel else 0.0
    cap = gp.max_dt_du if gp.max_dt_du is not None else np.inf
    spk, G = _grad_raster(record, grad, forced)
    t, s, i = record.spike_index
    active = gradient_samples(S, s, grad, forced)  # the others' G is 0: exact zeros throughout
    gin = np.zeros((b.n_active, n_out))
    gw = np.zeros((b.n_active, n_out))
    flags = np.zeros((T, S, n_out), dtype=np.int8)
    if S and n_out:
        share = np.empty((T, S, n_out))
        wf = np.empty((T, S, n_out))
        work = (np.empty((S, n_out)), np.empty((S, n_out)), np.empty((S, n_out)),
                np.empty((S, n_out), dtype=np.int64))
        _clock_backward(record.cur, b.row_of, record.out, spk, G, record.du, clock.dt, a_g,
                        exp_kernel, h, syn_a, float(cap), bool(gp.drop_nonpositive), active, *work,
                        share, wf, flags, gin, gw)
    d_kept = np.zeros(b.keep.size)
    a_kept = np.zeros(b.keep.size)
    # input gradients: only the events of the active samples (the others' rows of gin, gw are 0)
    ev = None if active.all() or not need_input_grad else np.flatnonzero(active[b.row_sample[b.ev_row]])
    ev_row, ev_neuron, ev_amp = ((b.ev_row, b.ev_neuron, b.ev_amp) if ev is None
                                 else take((b.ev_row, b.ev_neuron, b.ev_amp), ev))
    d_ev = d_kept if ev is None else np.zeros(ev.size)
    a_ev = a_kept if ev is None else np.zeros(ev.size)
    geom = record.geometry
    if geom is not None:
        K2 = record.weight.reshape(geom.c_out, geom.n_taps)
        d_w = np.zeros((geom.c_out, geom.n_taps))
        for a, e in _conv_blocks(b.n_active, geom):
            gwc = gw[a:e].reshape(e - a, geom.c_out, geom.n_pos).transpose(1, 0, 2)
            d_w += gwc.reshape(geom.c_out, -1) @ _conv_cols(record.X, a, e, geom)
        d_weight = d_w.reshape(geom.weight_shape)
        if need_input_grad and ev_row.size:
            _dense_event_grads(ev_row, ev_neuron, ev_amp, gin, gw, K2, *geom.scalars(), d_ev, a_ev)
    elif record.X is not None:
        d_weight = gw.T @ record.X
        if need_input_grad and ev_row.size:
            w = record.weight
            d_ev[:] = (gin @ w)[ev_row, ev_neuron] * ev_amp
            a_ev[:] = (gw @ w)[ev_row, ev_neuron]
    else:
        n_in = b.n_in
        dWT = np.zeros((n_in, n_out))
        if b.keep.size:
            offs, by = _by_neuron(b.ev_neuron, n_in)
            _sparse_weight_grad(offs, by, b.ev_row, b.ev_amp, gw, dWT)
            if need_input_grad and ev_row.size:
                _event_grads(ev_row, ev_neuron, ev_amp, np.ascontiguousarray(record.weight.T),
                             gin, gw, d_ev, a_ev)
        d_weight = dWT.T.copy()
    d_times = np.zeros(record.n_in_events)
    d_amps = np.zeros(record.n_in_events)
    if need_input_grad:
        if ev is not None:
            d_kept[ev] = d_ev
            a_kept[ev] = a_ev
        d_times[b.keep] = gp.input_grad_scale * d_kept
        d_amps[b.keep] = a_kept
    out_flags = flags[t, s, i]
    out_flags[~active[s]] = FLAG_NO_GRADIENT
    return DenseGrads(d_times=d_times, d_amplitudes=d_amps, d_weight=d_weight, flags=out_flags)


def supervision_times(record: ClockRecord, labels, rule: str = "last-rise", *,
                      min_rise: float = MIN_RISE) -> np.ndarray:
    """Time of each sample's supervisory spike on the label neuron (official output layer).

    "last-rise": the last step n with du[n] > min_rise dt (official: du > 0.05), step 0
    if there is none; "end": the last step. The spike is written only where du != 0
    and it is not already a real spike; elsewhere the time is NaN (no supervisory
    spike: :func:`eventsnn.loss.count_loss` then adds none).

    Returns
    -------
    ndarray float64 (n_samples,) — n dt, or NaN.
    """
    if rule not in SUPERVISION_RULES:
        raise ValueError(f"rule must be one of {SUPERVISION_RULES}, got {rule!r}")
    T, S, n = record.du.shape
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size != S:
        raise ValueError(f"labels must have one entry per sample ({S}), got {labels.size}")
    if S and (labels.min() < 0 or labels.max() >= n):
        raise ValueError(f"labels must lie in [0, {n})")
    rows = np.arange(S)
    du = record.du[:, rows, labels]                                         # (T, S)
    if rule == "end":
        step = np.full(S, T - 1, dtype=np.int64)
    else:
        rising = du > min_rise * record.clock.dt
        last = T - 1 - np.argmax(rising[::-1], axis=0)
        step = np.where(rising.any(axis=0), last, 0)
    ok = (du[step, rows] != 0.0) & (record.out[step, rows, labels] == 0)
    return np.where(ok, step * record.clock.dt, np.nan)


# ----------------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ClockPoolRecord:
    """Forward state of a pooling on the clock.

    Attributes
    ----------
    kind : str; geometry : PoolGeometry; clock : Clock
    binned : Binned — the input events on the clock.
    X : ndarray (n_active, C, H, W) — binned input values.
    Y : ndarray (n_active, C, H//k, W//k) — pooled values.
    outputs : SpikeTrains — one event per non-zero y (amplitude y, time n dt).
    out_row, out_neuron : ndarray int64 (n_out_events,) — active row and pooled neuron
        of each output event.
    n_in_events : int
    """

    kind: str
    geometry: PoolGeometry
    clock: Clock
    binned: Binned
    X: np.ndarray
    Y: np.ndarray
    outputs: SpikeTrains
    out_row: np.ndarray
    out_neuron: np.ndarray
    n_in_events: int

    @property
    def count(self) -> np.ndarray:
        """Non-zero input positions in the window of each output event (int64, aligned with
        ``outputs``): the n of the avg-pooling loss g (k^2 - n)/k^2."""
        nz = (_windows(self.X, self.geometry) != 0).sum(axis=-1).reshape(self.binned.n_active, -1)
        return nz[self.out_row, self.out_neuron].astype(np.int64)


def _windows(X: np.ndarray, geom: PoolGeometry) -> np.ndarray:
    """(rows, C, Ho, Wo, k*k) view-copy of the k x k windows (remainder rows/columns cut)."""
    c, k = geom.c, geom.k
    _, ho, wo = geom.out_shape
    cut = X[:, :, :ho * k, :wo * k].reshape(X.shape[0], c, ho, k, wo, k)
    return cut.transpose(0, 1, 2, 4, 3, 5).reshape(X.shape[0], c, ho, wo, k * k)


def pool_forward(inputs: SpikeTrains, geometry: PoolGeometry, kind: str, clock: Clock):
    """Pooling on the clock (module docstring). Returns (outputs, ClockPoolRecord)."""
    geom = check_pool_inputs(inputs, geometry, kind)
    b = bin_events(inputs, clock)
    X = b.matrix().reshape(b.n_active, *geom.in_shape)
    win = _windows(X, geom)
    Y = win.max(axis=-1) if kind == "max" else win.mean(axis=-1)
    # output events sorted per sample by step, then neuron
    order = np.lexsort((b.row_step, b.row_sample))
    q, nrn = np.nonzero(Y.reshape(b.n_active, -1)[order])
    rows = order[q]
    S = inputs.n_samples
    offsets = offsets_of(b.row_sample[rows], S)
    amps = Y.reshape(b.n_active, -1)[rows, nrn]
    outputs = SpikeTrains(b.row_step[rows] * clock.dt, nrn, amps, offsets, geom.n_out)
    rec = ClockPoolRecord(kind, geom, clock, b, X, Y, outputs, rows.astype(np.int64),
                          nrn.astype(np.int64), inputs.n_events)
    return outputs, rec


def pool_backward(record: ClockPoolRecord, grad_out) -> PoolGrads:
    """dL/dt of the input events of a pooling on the clock (module docstring)."""
    grad = _grad_array(grad_out, record.outputs.n_events, "pooled event")
    geom, b = record.geometry, record.binned
    k2 = geom.k * geom.k
    g = np.zeros(record.Y.shape)
    g.reshape(b.n_active, -1)[record.out_row, record.out_neuron] = grad
    if record.kind == "avg":
        factor = np.full(record.Y.shape, 1.0 / k2)
    elif record.kind == "adjusted-avg":
        with np.errstate(divide="ignore"):
            inv = 1.0 / record.Y
        factor = np.where(inv > k2 + 1, 0.0, inv) / k2
    else:
        factor = None
    gy = g if factor is None else g * factor                           # per window
    c_idx = b.ev_neuron // (geom.h * geom.w)
    y = (b.ev_neuron // geom.w) % geom.h
    x = b.ev_neuron % geom.w
    _, ho, wo = geom.out_shape
    inside = (y < ho * geom.k) & (x < wo * geom.k)
    r, c_idx, y, x = b.ev_row[inside], c_idx[inside], y[inside], x[inside]
    val = gy[r, c_idx, y // geom.k, x // geom.k]
    if record.kind == "max":
        first = np.argmax(_windows(record.X, geom), axis=-1)               # first maximal position
        local = (y % geom.k) * geom.k + (x % geom.k)
        val = np.where(first[r, c_idx, y // geom.k, x // geom.k] == local, val, 0.0)
    xv = record.X[r, c_idx, y, x]
    amp = b.ev_amp[inside]
    with np.errstate(invalid="ignore", divide="ignore"):
        split = np.where(xv != 0.0, amp / xv, 0.0)
    d_kept = np.zeros(b.keep.size)
    d_kept[inside] = val * split
    d_times = np.zeros(record.n_in_events)
    d_times[b.keep] = d_kept
    return PoolGrads(d_times=d_times, d_amplitudes=np.zeros(record.n_in_events),
                          flags=np.zeros(0, dtype=np.int8))
