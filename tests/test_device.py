"""Device selection (eventsnn.device), the --device option, and the one-source rule of
the scalar routines (eventsnn.crossing.compile_family)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from numba import njit

from eventsnn import crossing
from eventsnn.cli.main import main
from eventsnn.device import (
    DeviceUnavailableError,
    cuda_status,
    resolve_device,
    select_device,
    set_device,
)
from eventsnn.engine import sweep
from eventsnn.network import Network

HAS_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None


@pytest.fixture
def status(monkeypatch):
    """Replace the CUDA probe by a fixed answer (usable, simulator, description)."""
    import eventsnn.device as dev

    def set_status(*answer):
        monkeypatch.setattr(dev, "cuda_status", lambda: answer)

    return set_status


def test_cpu_and_bad_requests():
    assert resolve_device("cpu") == "cpu"
    assert select_device("cpu").notice == "device: cpu (requested)"
    for bad in ("gpu", "CUDA", "", None):
        with pytest.raises(ValueError, match="device must be one of"):
            resolve_device(bad)


def test_no_gpu(status):
    """cuda without a usable GPU: a clear error (a ValueError); auto falls back to CPU."""
    status(False, False, "CUDA driver library cannot be found")
    with pytest.raises(DeviceUnavailableError, match="'cuda' is not usable: CUDA driver library"):
        resolve_device("cuda")
    assert issubclass(DeviceUnavailableError, ValueError)
    choice = select_device("auto")
    assert choice.device == "cpu"
    assert choice.notice == "device: cpu (no usable GPU: CUDA driver library cannot be found)"


def test_gpu_and_simulator(status):
    status(True, False, "NVIDIA H100")
    assert select_device("auto").notice == "device: cuda (NVIDIA H100)"
    assert resolve_device("cuda") == "cuda"
    status(True, True, "CUDA simulator")
    assert resolve_device("cuda") == "cuda"  # explicit request (tests)
    assert select_device("auto").notice == "device: cpu (no usable GPU: the CUDA simulator is not a GPU)"


def test_numba_cuda_missing(monkeypatch):
    """Without the numba-cuda package: cuda is refused with the install hint."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba_cuda" else real(name, *a))
    cuda_status.cache_clear()
    try:
        assert cuda_status()[0] is False
        with pytest.raises(DeviceUnavailableError, match=r"numba-cuda is not installed \(pip install"):
            resolve_device("cuda")
        assert resolve_device("auto") == "cpu"
    finally:
        cuda_status.cache_clear()


def test_this_process_uses_the_simulator_only_on_request():
    """The test session runs numba.cuda as the simulator (conftest): auto never picks it."""
    if not HAS_NUMBA_CUDA:
        pytest.skip("numba-cuda is not installed")
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        pytest.skip("the session runs without the simulator")
    assert cuda_status() == (True, True, "CUDA simulator")
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cuda") == "cuda"


def test_real_probe_in_a_fresh_process():
    """Without the simulator, on this machine: cuda refused with the driver's reason
    (or accepted with the GPU's name on a GPU machine), auto consistent with it.
    Importing eventsnn (and its CLI) does not import numba.cuda."""
    code = ("import sys, eventsnn.train, eventsnn.cli.main\n"
            "assert 'numba.cuda' not in sys.modules\n"
            "from eventsnn.device import select_device, DeviceUnavailableError\n"
            "print(select_device('auto').notice)\n"
            "try:\n    print(select_device('cuda').notice)\n"
            "except DeviceUnavailableError as e:\n    print('refused:', e)\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout.splitlines()
    assert len(out) == 2, out
    if out[1].startswith("refused:"):
        assert out[0].startswith("device: cpu (no usable GPU: ")
        assert "'cuda' is not usable: " in out[1]
        if not HAS_NUMBA_CUDA:
            assert "numba-cuda is not installed" in out[1]
    else:
        assert out[0] == out[1] and out[0].startswith("device: cuda (")


def test_set_device_reaches_every_layer(status):
    net = Network.from_arch("2C3-P2-4", 3, input_shape=(1, 6, 6), seed=0)
    assert all(layer.device == "cpu" for layer in net.layers)
    status(True, False, "Fake GPU")
    assert set_device(net, "auto") == "cuda"
    assert [layer.device for layer in net.layers] == ["cuda"] * len(net.layers)
    inner = SimpleNamespace(device="cpu")
    composite = SimpleNamespace(layers=[SimpleNamespace(sublayers=[inner, SimpleNamespace()])])
    set_device(composite, "cuda")
    assert inner.device == "cuda" and composite.layers[0].device == "cuda"
    assert set_device(net, "cpu") == "cpu"
    assert all(layer.device == "cpu" for layer in net.layers)
    status(False, False, "no driver")
    with pytest.raises(DeviceUnavailableError):
        set_device(net, "cuda")
    assert all(layer.device == "cpu" for layer in net.layers), "a refused request changes nothing"


def test_cli_device_option(status, tmp_path):
    """--device cuda without a GPU: one line 'Error: ...', exit 2, before any data is read;
    auto prints which device it chose."""
    status(False, False, "no CUDA driver")
    for cmd in (["train", "mnist", "--out", tmp_path / "run"], ["evaluate", tmp_path / "missing.h5"]):
        res = CliRunner().invoke(main, [str(a) for a in cmd] + ["--device", "cuda",
                                                                "--data-dir", str(tmp_path / "none")])
        assert res.exit_code == 2, res.output
        lines = res.stderr.strip().splitlines()
        assert lines == ["Error: device 'cuda' is not usable: no CUDA driver"], res.stderr
        assert not (tmp_path / "run").exists() and not (tmp_path / "none").exists()
    # auto: the notice, then the command goes on (here: to an unknown dataset)
    res = CliRunner().invoke(main, ["train", "cifar99", "--device", "auto", "--out", str(tmp_path / "o")])
    assert res.stdout.splitlines()[0] == "device: cpu (no usable GPU: no CUDA driver)"
    assert res.exit_code == 2 and "cifar99" in res.stderr
    status(True, False, "Fake GPU")
    res = CliRunner().invoke(main, ["train", "cifar99", "--out", str(tmp_path / "o")])
    assert res.stdout.splitlines()[0] == "device: cuda (Fake GPU)"


# ----------------------------------------------------------------------------------
# one source, several backends
# ----------------------------------------------------------------------------------
def test_compile_family_rebinds_calls():
    """The family compiled again (here with plain njit) calls its own members and gives
    the CPU routines' results bit for bit; the CPU dispatchers stay untouched."""
    calls = []

    def counting(fn):
        compiled = njit(fn)
        calls.append(fn.__name__)
        return compiled

    fam = crossing.compile_family(crossing.SCALAR_ROUTINES, counting)
    assert sorted(calls) == sorted(r.py_func.__name__ for r in crossing.SCALAR_ROUTINES)
    assert fam["_first_crossing"].py_func.__globals__["_solve_bracket"] is fam["_solve_bracket"]
    assert crossing._first_crossing.py_func.__globals__["_solve_bracket"] is crossing._solve_bracket
    rng = np.random.default_rng(0)
    for _ in range(50):
        V, R = rng.uniform(-1, 1), rng.uniform(0, 3)
        L = rng.uniform(0.01, 4)
        em, es, eps_l, deps_l = crossing._interval_factors(L, 5.0, 3.0)
        args = (V, R, L, em, eps_l, deps_l, 5.0, 3.0, 1.0, 2.0, 2.0 + L, True, 1e-14, 200)
        assert fam["_interval_spike"](*args) == crossing._interval_spike(*args)


def test_compile_family_refuses_outside_calls():
    """A routine calling a compiled routine that is not in the family would call the
    CPU version from device code: refused."""
    with pytest.raises(crossing.FamilyError, match=r"_dense_spike calls _\w+, which is not in the family"):
        crossing.compile_family((sweep._dense_spike,), lambda fn: fn)
    fam = crossing.compile_family((sweep._dense_spike,), lambda fn: fn, overrides={
        name: None for name in ("_spike_window", "_step_back", "_hval", "_spike_factors", "_acc2")})
    assert callable(fam["_dense_spike"])
