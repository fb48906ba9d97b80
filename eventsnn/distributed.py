"""Scale-out on Dask: a cluster connection, data-parallel training, evaluation, tasks with retries.

Everything in eventsnn that imports ``dask``/``distributed`` is here, and this
module imports them only when one of its functions runs: without a
distributed option nothing about single-process behaviour changes. Without
the optional packages (``pip install 'eventsnn[distributed]'``) the functions
raise :class:`DistributedUnavailable`.

Synchronous data-parallel training (:class:`DataParallel`)
----------------------------------------------------------
The count loss is a sum over the batch (``L = sum_s L_s``), so the gradient
of a global batch B is the sum of the gradients of its parts::

    dL/dp = sum_w sum_{s in B_w} dL_s/dp,     B = B_0 + B_1 + ... (contiguous pieces)

Each global batch (the same positions of the same epoch order as a
single-process run) is cut into one contiguous piece per worker. Every worker
holds a replica of the network (a Dask actor) and, for the current epoch, the
images of all the positions it will process (sent once per epoch, augmented
on the worker with the epoch's transforms: they depend only on the seed, the
epoch and the position). Per step the client sends the current parameters
(one flat float64 vector) and the piece bounds; each worker runs the same
forward/loss/backward (:func:`eventsnn.train.batch_gradients`) and returns
its gradient sum and batch statistics; the client adds the gradients in
worker order, clips and takes the AdamW step (:func:`eventsnn.train.apply_gradients`).

What differs from a single-process run is only the order of floating-point
additions: the sum over the samples of a batch is split into per-worker
partial sums. Per step the gradients therefore differ by rounding (relative
``~ n eps`` with eps = 2.2e-16 of the sum of absolute contributions), and
the parameters by the propagation of that rounding through AdamW and the
spiking dynamics, which amplify it from step to step (a spike within rounding
of the threshold appears in one run and not in the other): an epoch of a few
steps stays within 1e-12 (tests/test_distributed.py), long epochs are equal
to one process only statistically. The measured bound and its growth are in
``docs/distributed.md``. With one worker the run is bit-identical.

Dropout masks are drawn per worker from ``default_rng([seed, epoch, 1, w])``:
with dropout a data-parallel run is reproducible for a given number of workers
but not identical to a single-process run (which draws the masks of a whole
batch from one generator).

Retries (:func:`map_with_retries`)
----------------------------------
Each item runs as one Dask task. A task that raises, or whose worker dies
(``KilledWorker``), is resubmitted by the client up to ``retries`` more times;
every execution that started is counted (the task logs its start on the
scheduler before doing any work, so executions that Dask itself re-ran after
a worker died are counted too). An item that fails every attempt is returned
as failed with its errors: nothing is dropped silently.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from .allocator import MALLOC_ENVIRONMENT
from .train import piece_bounds

#: How long ``connect`` waits for a scheduler.
CONNECT_TIMEOUT = "20s"
#: glibc malloc settings of local workers (set before they start): those of
#: :func:`eventsnn.allocator.keep_freed_memory`. Dask's default
#: ``MALLOC_TRIM_THRESHOLD_=65536`` also freezes the mmap threshold at 128 KiB, so every
#: large temporary array of a training step is a fresh mmap: about 10 000 minor page
#: faults per 784-800 step of 50 samples; with kept memory, 4-9 (docs/performance.md).
WORKER_MALLOC = MALLOC_ENVIRONMENT


class DistributedUnavailable(ValueError):
    """A distributed option was used but ``dask``/``distributed`` are not installed."""


class WorkerLostError(ConnectionError):
    """A data-parallel worker failed or disappeared during training."""


def require():
    """Import and return the ``distributed`` package, or raise :class:`DistributedUnavailable`."""
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError as exc:
        raise DistributedUnavailable(
            f"distributed training needs the optional packages dask and distributed ({exc}): "
            "pip install 'eventsnn[distributed]'"
        ) from None
    return distributed


# ------------------------------------------------------------------------ connection
def local_worker_env(n_workers: int, cores: int | None = None) -> dict:
    """Environment of local worker processes: the cores shared out as numba threads."""
    cores = cores or os.cpu_count() or 1
    return {"NUMBA_NUM_THREADS": str(max(1, cores // max(int(n_workers), 1)))}


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int | None = None):
    """A Dask client: connected to ``scheduler`` or to a new local cluster of ``workers`` processes.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``), e.g. started by
        ``dask-jobqueue`` on SLURM/PBS or by ``dask scheduler``.
    workers : int, optional
        Start a ``LocalCluster`` of this many single-threaded worker processes
        (the machine's cores shared out as numba threads); closed on exit.

    Exactly one of them must be given. The client talks to the workers
    directly (``direct_to_workers``: the data-parallel parameters and gradients
    do not pass through the scheduler), so the workers must be reachable from
    the client's machine.

    Yields
    ------
    distributed.Client
    """
    if (scheduler is None) == (workers is None):
        raise ValueError("give exactly one of scheduler (an address) or workers (a number)")
    distributed = require()
    if scheduler is not None:
        with distributed.Client(scheduler, timeout=CONNECT_TIMEOUT, direct_to_workers=True) as client:
            yield client
        return
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    import dask

    # malloc: see WORKER_MALLOC; silence_logs: workers that loaded numba take seconds to exit and are
    # killed at close, with a warning each
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_MALLOC}
    saved = {k: os.environ.get(k) for k in environ}  # the nanny writes them into this process too
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            cluster = distributed.LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                               dashboard_address="127.0.0.1:0", env=local_worker_env(workers),
                                               silence_logs=logging.ERROR)
        with cluster, distributed.Client(cluster, direct_to_workers=True) as client:
            yield client
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _workers(client) -> dict:
    """Every worker's info (some versions list only 5 unless asked for all; older ones had no option)."""
    try:
        return client.scheduler_info(n_workers=-1)["workers"]
    except TypeError:
        return client.scheduler_info()["workers"]


def worker_addresses(client) -> list:
    """The addresses of the client's workers, sorted (the fixed order of the shards)."""
    return sorted(_workers(client))


def describe(client) -> str:
    """One line: scheduler address and workers."""
    workers = _workers(client)
    threads = sum(w.get("nthreads", 0) for w in workers.values())
    return f"{client.scheduler.address}, {len(workers)} workers, {threads} threads"


# ------------------------------------------------------------------------ flat vectors
def flatten(arrays) -> np.ndarray:
    """One float64 vector of ``arrays`` (in order)."""
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def unflatten_into(flat: np.ndarray, arrays) -> None:
    """Write ``flat`` back into ``arrays`` (in place, in order)."""
    k = 0
    for a in arrays:
        a[...] = flat[k:k + a.size].reshape(a.shape)
        k += a.size
    if k != flat.size:
        raise ValueError(f"flat vector of {flat.size} values for {k} parameters")


def split_like(flat: np.ndarray, arrays) -> list:
    """``flat`` cut into new arrays shaped like ``arrays``."""
    out, k = [], 0
    for a in arrays:
        out.append(flat[k:k + a.size].reshape(a.shape).copy())
        k += a.size
    return out


def add_sums(parts: list) -> dict:
    """Add :func:`eventsnn.train.evaluation_sums` of parts of a test set (in the given order)."""
    lists = [k for k, v in parts[0].items() if isinstance(v, list)]  # per layer, confusion matrix
    total = {k: (np.asarray(v) if k in lists else v) for k, v in parts[0].items()}
    for p in parts[1:]:
        for k, v in p.items():
            total[k] = total[k] + (np.asarray(v) if k in lists else v)
    return {k: (v.tolist() if k in lists else v) for k, v in total.items()}


# ------------------------------------------------------------------------ worker side
class _Replica:
    """A worker's network replica and its share of the data (a Dask actor)."""

    def __init__(self, config_json: str, n_classes: int, input_shape, index: int, device: str = "cpu"):
        from .checkpoint import build_network
        from .config import TrainConfig
        from .device import set_device

        self.config = TrainConfig.from_json(config_json)
        self.net = build_network(self.config, n_classes, tuple(input_shape))
        set_device(self.net, device)  # the client's device: a worker without a usable GPU refuses "cuda"
        self.params = [a for _, a in self.net.parameters()]
        self.index = int(index)
        self.x = self.y = self.x_test = self.y_test = None

    def load_epoch(self, epoch: int, images, labels, transforms) -> int:
        """Keep this epoch's images (augmented here) and labels; returns their number."""
        from .train import augment_images, set_dropout

        self.x = augment_images(images, transforms, self.config)
        self.y = np.asarray(labels)
        rng = (np.random.default_rng([self.config.seed, epoch, 1, self.index])
               if self.config.dropout > 0 else None)
        set_dropout(self.net, rng)
        return len(self.y)

    def load_test(self, images, labels) -> int:
        self.x_test, self.y_test = images, np.asarray(labels)
        return len(self.y_test)

    def gradients(self, flat_params, a: int, b: int):
        """Gradient sum and statistics of this epoch's samples ``a:b``, and the seconds it took."""
        from threadpoolctl import threadpool_limits

        from .train import batch_gradients

        t0 = time.perf_counter()
        unflatten_into(flat_params, self.params)
        with threadpool_limits(1, user_api="blas"):
            grads, stats = batch_gradients(self.net, self.x[a:b], self.y[a:b], self.config)
        return flatten(grads), stats, time.perf_counter() - t0

    def evaluate(self, flat_params) -> dict:
        """:func:`eventsnn.train.evaluation_sums` of this worker's test samples (dropout off)."""
        from threadpoolctl import threadpool_limits

        from .train import evaluation_sums, set_dropout

        unflatten_into(flat_params, self.params)
        set_dropout(self.net, None)
        with threadpool_limits(1, user_api="blas"):
            return evaluation_sums(self.net, self.x_test, self.y_test, self.config)


def _evaluate_part(net, images, labels, config_json: str, batch_size: int) -> dict:
    from threadpoolctl import threadpool_limits

    from .config import TrainConfig
    from .train import evaluation_sums

    with threadpool_limits(1, user_api="blas"):
        return evaluation_sums(net, images, labels, TrainConfig.from_json(config_json), batch_size=batch_size)


# ------------------------------------------------------------------------ client side
@dataclass
class StepTimes:
    """Communication accounting of :class:`DataParallel` (totals since the start).

    ``bytes_sent``/``bytes_received``: array payloads of the step messages
    (parameters out, gradients back); ``wall``: seconds of the exchanges (from
    sending the parameters to holding every gradient); ``compute``: seconds the
    slowest worker of each step spent computing (sum over steps); ``update``:
    seconds of the client's sum, clip and AdamW step; ``epoch_bytes``: images
    sent at the epoch starts.
    """

    steps: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    wall: float = 0.0
    compute: float = 0.0
    update: float = 0.0
    epoch_bytes: int = 0

    def summary(self) -> dict:
        n = max(self.steps, 1)
        return {"steps": self.steps, "bytes_per_step": (self.bytes_sent + self.bytes_received) / n,
                "sent_per_step": self.bytes_sent / n, "received_per_step": self.bytes_received / n,
                "exchange_s_per_step": self.wall / n, "compute_s_per_step": self.compute / n,
                "overhead_s_per_step": (self.wall - self.compute) / n, "update_s_per_step": self.update / n,
                "epoch_bytes": self.epoch_bytes}


class DataParallel:
    """Step runner of :func:`eventsnn.train.train` on the workers of a Dask client (see module docstring).

    Parameters
    ----------
    client : distributed.Client
    workers : list of str, optional
        Worker addresses to use, in shard order (default: all, sorted).

    Attributes
    ----------
    times : StepTimes
        Bytes and seconds of the communication.
    """

    def __init__(self, client, workers=None):
        require()
        self.client = client
        self.workers = list(workers) if workers is not None else worker_addresses(client)
        if not self.workers:
            raise ValueError("the Dask cluster has no workers")
        self.times = StepTimes()
        self.replicas = []

    def _result(self, futures, what: str):
        try:
            with self.client.as_current():  # actors bind to the current client when they arrive
                return [f.result() for f in futures]
        except Exception as exc:
            raise WorkerLostError(f"data-parallel {what} failed on a worker ({type(exc).__name__}: {exc}); "
                                  "the last completed epoch is in checkpoint.h5 (continue with --resume)") from exc

    def bind(self, config, net, train_data, test_data, progress):
        if config.grad_pieces not in (1, len(self.workers)):
            raise ValueError(f"grad_pieces {config.grad_pieces} does not fit {len(self.workers)} workers: use "
                             f"--grad-pieces {len(self.workers)} (the same bits as one process with it) or 1")
        self.config = config
        self.x, self.y = train_data
        self.params = [a for _, a in net.parameters()]
        device = next((layer.device for layer in net.layers if hasattr(layer, "device")), "cpu")
        futures = [self.client.submit(_Replica, config.to_json(), net.n_classes, list(net.input_shape), w,
                                      device, workers=[addr], actor=True, pure=False,
                                      key=f"eventsnn-replica-{uuid.uuid4().hex}")
                   for w, addr in enumerate(self.workers)]
        self.replicas = self._result(futures, "start")
        x_test, y_test = test_data
        bounds = piece_bounds(0, len(y_test), len(self.replicas))
        self._result([r.load_test(x_test[s:e], y_test[s:e])
                      for r, s, e in zip(self.replicas, bounds[:-1], bounds[1:])], "test-set upload")

    def start_epoch(self, epoch, order, transforms):
        n, bs, n_w = len(order), self.config.batch_size, len(self.replicas)
        # positions of worker w: piece w of every batch, in batch order
        pieces = [piece_bounds(a, min(a + bs, n), n_w) for a in range(0, n, bs)]
        self.slices = {}
        positions = [[] for _ in range(n_w)]
        fill = [0] * n_w
        for a, bounds in zip(range(0, n, bs), pieces):
            self.slices[a] = []
            for w in range(n_w):
                s, e = int(bounds[w]), int(bounds[w + 1])
                positions[w].append(np.arange(s, e))
                self.slices[a].append((fill[w], fill[w] + e - s))
                fill[w] += e - s
        calls = []
        for w, r in enumerate(self.replicas):
            pos = np.concatenate(positions[w]) if positions[w] else np.zeros(0, dtype=np.int64)
            idx = order[pos]
            images = self.x[idx]
            self.times.epoch_bytes += images.nbytes
            calls.append(r.load_epoch(epoch, images, self.y[idx], transforms[pos]))
        self._result(calls, "epoch upload")

    def step(self, net, opt, a, b):
        from .train import apply_gradients, merge_stats

        t0 = time.perf_counter()
        flat = flatten(self.params)
        calls = [(r.gradients(flat, s, e)) for r, (s, e) in zip(self.replicas, self.slices[a]) if e > s]
        results = self._result(calls, "step")
        t1 = time.perf_counter()
        total = results[0][0].copy()
        for g, _, _ in results[1:]:
            total += g
        grads = split_like(total, self.params)
        apply_gradients(opt, grads, self.config)
        t2 = time.perf_counter()
        compute = max(r[2] for r in results)
        self.times.steps += 1
        self.times.bytes_sent += flat.nbytes * len(calls)
        self.times.bytes_received += sum(r[0].nbytes for r in results)
        self.times.wall += t1 - t0
        self.times.compute += compute
        self.times.update += t2 - t1
        return merge_stats([r[1] for r in results])

    def evaluate(self, net):
        from .train import summarise_evaluation

        flat = flatten(self.params)
        return summarise_evaluation(add_sums(self._result([r.evaluate(flat) for r in self.replicas],
                                                          "evaluation")))

    def close(self) -> None:
        """Release the replicas and the data they hold on the workers."""
        self.replicas = []


def evaluate(client, net, images, labels, config, *, batch_size: int = 200) -> dict:
    """:func:`eventsnn.train.evaluate` with the test set split across the client's workers.

    The network is sent once to every worker; each worker evaluates a
    contiguous part (whole batches of ``batch_size``) and the sums are added in
    part order. Accuracy, counts and spikes equal the single-process result
    exactly; the mean time to decision differs at most by summation rounding.
    """
    require()
    from .train import summarise_evaluation

    labels = np.asarray(labels)
    n = len(labels)
    n_w = max(len(worker_addresses(client)), 1)
    per = -(-max(-(-n // batch_size), 1) // n_w) * batch_size  # whole batches per part
    net_future = client.scatter(net, broadcast=True)
    futures = [client.submit(_evaluate_part, net_future, images[s:s + per], labels[s:s + per],
                             config.to_json(), batch_size, pure=False)
               for s in range(0, n, per)]
    return summarise_evaluation(add_sums(client.gather(futures)))


# ------------------------------------------------------------------------ tasks with retries
@dataclass
class Outcome:
    """What became of one item of :func:`map_with_retries`."""

    name: str
    ok: bool
    result: object = None
    attempts: int = 0
    errors: list = field(default_factory=list)


#: Error recorded for an execution whose worker died and that Dask re-ran by itself.
LOST = "worker lost during the attempt (re-run by the Dask scheduler)"


def _logged_call(topic: str, name: str, fn, *args):
    """Task body: record this execution's start on the scheduler, then call ``fn``."""
    from distributed import get_client, get_worker

    with contextlib.suppress(Exception):  # counting is best effort; the submission count remains
        get_client().log_event(topic, {"name": name, "worker": get_worker().address})
    return fn(*args)


def error_line(exc) -> str:
    """``Type: message`` of an exception, first line only (for summaries)."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__


def map_with_retries(client, fn, items: list, *, retries: int = 2, on_done=None) -> list:
    """Run ``fn(*args)`` for every ``(name, args)`` of ``items`` as Dask tasks, with retries.

    Parameters
    ----------
    client : distributed.Client
    fn : callable
        Importable on the workers (a module-level function).
    items : list of (str, tuple)
        Unique names and the arguments (Dask futures allowed).
    retries : int
        Further attempts after a failure (an exception or a lost worker).
    on_done : callable, optional
        Called with each :class:`Outcome` as soon as it is final.

    Returns
    -------
    list of Outcome
        In the order of ``items``; ``attempts`` counts every execution that started.
    """
    distributed = require()
    if int(retries) < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    tag = uuid.uuid4().hex[:12]
    topic = f"eventsnn-attempts-{tag}"
    args_of = dict(items)
    if len(args_of) != len(items):
        raise ValueError("item names must be unique")
    outcomes = {name: Outcome(name, False) for name, _ in items}
    submitted = {name: 0 for name, _ in items}
    name_of = {}

    def submit(name):
        submitted[name] += 1
        fut = client.submit(_logged_call, topic, name, fn, *args_of[name], pure=False,
                            key=f"eventsnn-{name}-{tag}-{submitted[name]}")
        name_of[fut.key] = name
        return fut

    def started(name):
        events = [m for _, m in client.get_events(topic) if isinstance(m, dict) and m.get("name") == name]
        return max(len(events), submitted[name])

    pending = distributed.as_completed([submit(name) for name, _ in items])
    for fut in pending:
        name = name_of.pop(fut.key)
        out = outcomes[name]
        if fut.status == "finished":
            out.ok, out.result = True, fut.result()
        else:
            try:
                exc = fut.exception()
            except Exception as err:  # noqa: BLE001 - e.g. a cancelled future
                exc = err
            out.errors.append(error_line(exc))
        out.attempts = started(name)
        lost = out.attempts - len(out.errors) - int(out.ok)  # executions Dask re-ran after a worker died
        if lost > 0:  # before the error of this completion, if it failed
            final = [] if out.ok else out.errors[-1:]
            out.errors = out.errors[:len(out.errors) - len(final)] + [LOST] * lost + final
        fut.release()
        if not out.ok and out.attempts <= retries:
            pending.add(submit(name))
            continue
        if on_done is not None:
            on_done(out)
    return [outcomes[name] for name, _ in items]
