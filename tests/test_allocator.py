"""eventsnn.allocator: glibc keeps freed memory in the process (fewer page faults per step).

The effect is measured in fresh processes (malloc settings are per process): the
minor page faults of allocating, filling and freeing a 200 MiB array again and
again. With glibc's defaults such a block is a fresh mmap every time (every page
faulted in again); once kept, the same heap memory is reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from eventsnn import allocator
from eventsnn.allocator import keep_freed_memory, user_set_malloc

glibc_only = pytest.mark.skipif(allocator._glibc() is None, reason="the C library is not glibc")

CYCLES = """
import json, resource, sys
import numpy as np
from eventsnn.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
np.ones(25 << 20).sum()  # 200 MiB: first use (faults in any case)
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    a = np.ones(25 << 20)
    a.sum()
    del a
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0}))
"""


def _cycles(arm: str, **env_extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in allocator.USER_MALLOC_VARIABLES
           and k != "GLIBC_TUNABLES"}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", CYCLES, arm], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_kept_memory_is_reused_without_page_faults():
    default = _cycles("default")
    kept = _cycles("keep")
    assert kept["applied"] is True
    # 10 cycles of 200 MiB: at least 100 faults per cycle with 2 MiB pages, 51 200 with 4 KiB ones
    assert default["faults"] >= 1000, default
    assert kept["faults"] < 200, kept


@glibc_only
def test_user_malloc_settings_win():
    user = _cycles("keep", MALLOC_TRIM_THRESHOLD_="131072")
    assert user["applied"] is False
    assert user["faults"] >= 1000, user  # still the user's (small) trim threshold


def test_user_set_malloc_reads_the_environment():
    assert not user_set_malloc({})
    assert not user_set_malloc({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"})
    assert user_set_malloc({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"})
    for name in allocator.USER_MALLOC_VARIABLES:
        assert user_set_malloc({name: "1"})


@pytest.mark.parametrize("nbytes", [0, -1, 2**31])
def test_bad_size_is_refused(nbytes):
    with pytest.raises(ValueError, match="nbytes"):
        keep_freed_memory(nbytes)


def test_not_glibc_leaves_malloc_alone(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert keep_freed_memory() is False


def test_every_command_and_train_keep_freed_memory(monkeypatch, tmp_path):
    import eventsnn.cli.main as cli
    import eventsnn.train as tr

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("cli"))
    res = CliRunner().invoke(cli.main, ["evaluate", str(tmp_path / "missing.h5")])
    assert res.exit_code == 2 and calls == ["cli"]

    monkeypatch.setattr(tr, "keep_freed_memory", lambda: calls.append("train"))
    with pytest.raises(AttributeError):  # config None: the call comes before it is read
        tr.train(None, tmp_path, train_data=None, test_data=None, dataset_checksum="c")
    assert calls == ["cli", "train"]
