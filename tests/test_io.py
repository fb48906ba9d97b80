"""HDF5 storage of spike trains: exact round trips and clear errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from eventsnn.io import FileFormatError, atomic_h5, load_spike_trains, save_spike_trains
from eventsnn.spikes import SpikeTrains


def random_trains(rng, n_samples=5, n_neurons=7):
    per = rng.integers(0, 9, n_samples)
    per[1] = 0  # empty samples, at the start, middle and end
    per[-1] = 0
    samples = np.repeat(np.arange(n_samples), per)
    times = rng.uniform(0, 10, samples.size)
    times[:3] = [0.0, -0.0, 5e-324]  # bit patterns that must survive
    amps = rng.normal(size=samples.size)
    return SpikeTrains.from_unsorted(times, rng.integers(0, n_neurons, samples.size), amps, samples,
                                     n_samples, n_neurons)


def bits_equal(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_identical(got, want):
    assert got.n_neurons == want.n_neurons
    for name in ("times", "neurons", "amplitudes", "offsets"):
        assert bits_equal(getattr(got, name), getattr(want, name)), name
    assert got.equals(want)


def test_round_trip_is_exact(tmp_path):
    st = random_trains(np.random.default_rng(0))
    assert np.any(np.diff(st.offsets) == 0)
    path = tmp_path / "spikes.h5"
    save_spike_trains(path, st)
    assert_identical(load_spike_trains(path), st)
    # named groups; an existing file is replaced
    st2 = random_trains(np.random.default_rng(1), n_samples=3, n_neurons=2)
    save_spike_trains(path, st2, name="layer1")
    assert_identical(load_spike_trains(path, name="layer1"), st2)
    with pytest.raises(FileFormatError):
        load_spike_trains(path)  # the old "spikes" group went with the old file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spikes.h5"]  # no temporary left


@pytest.mark.parametrize("n_samples,n_neurons", [(0, 3), (3, 0), (4, 5)])
def test_round_trip_empty(tmp_path, n_samples, n_neurons):
    st = SpikeTrains.empty(n_samples, n_neurons)
    save_spike_trains(tmp_path / "e.h5", st)
    got = load_spike_trains(tmp_path / "e.h5")
    assert_identical(got, st)
    assert got.n_samples == n_samples


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_spike_trains(tmp_path / "nope.h5")


def test_garbage_and_foreign_files(tmp_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(FileFormatError):
        load_spike_trains(garbage)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(FileFormatError):
        load_spike_trains(empty)
    # truncated real file
    st = random_trains(np.random.default_rng(1))
    good = tmp_path / "good.h5"
    save_spike_trains(good, st)
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(FileFormatError):
        load_spike_trains(trunc)
    # a foreign HDF5 file: a group of that name without the format attribute
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        g = f.create_group("spikes")
        g.create_dataset("times", data=st.times)
        g.create_dataset("neurons", data=st.neurons)
        g.create_dataset("amplitudes", data=st.amplitudes)
        g.create_dataset("offsets", data=st.offsets)
        g.attrs["n_neurons"] = st.n_neurons
    with pytest.raises(FileFormatError):
        load_spike_trains(foreign)
    # right format tag, inconsistent content
    for broken in ("offsets", "neurons", "missing"):
        path = tmp_path / f"broken-{broken}.h5"
        with h5py.File(path, "w") as f:
            g = f.create_group("spikes")
            g.attrs["format"] = "eventsnn.spiketrains/1"
            g.attrs["n_neurons"] = st.n_neurons
            g.create_dataset("times", data=st.times)
            g.create_dataset("amplitudes", data=st.amplitudes)
            if broken != "missing":
                g.create_dataset("offsets", data=st.offsets + (1 if broken == "offsets" else 0))
                g.create_dataset("neurons", data=st.neurons + (st.n_neurons if broken == "neurons" else 0))
        with pytest.raises(FileFormatError):
            load_spike_trains(path)


def test_atomic_write_failure_keeps_old_file(tmp_path):
    st = random_trains(np.random.default_rng(2))
    path = tmp_path / "s.h5"
    save_spike_trains(path, st)
    before = path.read_bytes()
    with pytest.raises(RuntimeError), atomic_h5(path) as f:
        f.create_group("spikes").attrs["format"] = "half written"
        raise RuntimeError("crash in the middle of a write")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]
    assert_identical(load_spike_trains(path), st)


def test_written_file_gets_the_usual_mode(tmp_path):
    """An atomically written file should end up with the mode a plain write gives
    (0o666 less the umask), as the dataset cache's atomic writes do, not mkstemp's 0o600."""
    import os

    mask = os.umask(0o022)
    try:
        save_spike_trains(tmp_path / "s.h5", SpikeTrains.empty(1, 1))
        plain = tmp_path / "plain"
        plain.write_bytes(b"")
    finally:
        os.umask(mask)
    assert (tmp_path / "s.h5").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o644
