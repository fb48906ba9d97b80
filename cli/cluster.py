"""``--scheduler ADDRESS`` / ``--workers N``: the Dask options of ``train``, ``evaluate``, ``sweep`` and ``ablation``.

Without either option nothing is imported from Dask. Both together, or either
without the optional packages (``pip install 'eventsnn[distributed]'``), end
with one line ``Error: ...`` and exit code 2 (before any data is loaded).
"""

from __future__ import annotations

import contextlib

import click


def cluster_options(f):
    """Add ``--scheduler`` and ``--workers`` to a command."""
    f = click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Start a local Dask cluster of N worker processes (needs eventsnn[distributed]).")(f)
    f = click.option("--scheduler", default=None, metavar="ADDRESS",
                     help="Run on the Dask cluster of this scheduler, e.g. tcp://10.0.0.5:8786 "
                          "(dask-jobqueue on SLURM/PBS; needs eventsnn[distributed]).")(f)
    return f


class Cluster:
    """The cluster the options ask for; checked at construction, connected by :meth:`client`."""

    def __init__(self, scheduler: str | None, workers: int | None):
        if scheduler is not None and workers is not None:
            raise click.UsageError("use either --scheduler ADDRESS or --workers N, not both")
        self.scheduler, self.workers = scheduler, workers
        if self:
            from eventsnn.distributed import require

            require()

    def __bool__(self) -> bool:
        return self.scheduler is not None or self.workers is not None

    @contextlib.contextmanager
    def client(self):
        """A ``distributed.Client`` (one line on the cluster is printed), or None without options."""
        if not self:
            yield None
            return
        from eventsnn.distributed import connect, describe

        with connect(scheduler=self.scheduler, workers=self.workers) as client:
            click.echo(f"dask: {describe(client)}", err=True)
            yield client


def data_parallel(client):
    """The step runner of ``train``: data-parallel on the client's workers, or None (this process)."""
    if client is None:
        return None
    from eventsnn.distributed import DataParallel

    return DataParallel(client)
