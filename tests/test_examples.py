"""The documentation's examples run, and they do what the docs say."""

import importlib.util
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tutorial_trains_and_inspects_a_spike(tmp_path):
    out = tmp_path / "spike.png"
    acc, flow = _load("tutorial").main(out=str(out))
    assert acc >= 0.8  # three easy classes; chance is 1/3
    assert out.stat().st_size > 10_000
    # Eq. 6 for the inspected spike, checked independently of SpikeFlow.share_sum
    assert abs(np.sum(flow.shares) - 1.0) < 1e-9
    assert np.all((flow.times > flow.window[0]) & (flow.times <= flow.window[1]))
