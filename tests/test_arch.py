"""Architecture strings: grammar, presets, clear refusals."""

import pytest

from eventsnn.arch import ArchError, parse_arch
from eventsnn.network import Network


def test_grammar_dense_conv_pool_padding():
    spec = parse_arch("15C5-P2-32C5p2-P2-300")
    assert spec.n_inputs is None
    assert [(ls.kind, ls.size, ls.kernel, ls.padding) for ls in spec.layers] == [
        ("conv", 15, 5, 0), ("pool", 0, 2, 0), ("conv", 32, 5, 2), ("pool", 0, 2, 0), ("dense", 300, 0, 0)]
    assert parse_arch("784-800").n_inputs == 784


@pytest.mark.parametrize("bad, token", [("784-80x", "80x"), ("15C-P2", "15C"), ("784--10", ""), ("P0-10", "P0")])
def test_bad_token_is_quoted(bad, token):
    with pytest.raises(ArchError, match=f"'{token}'"):
        parse_arch(bad)


def test_vgg11_preset_builds_the_paper_network_shapes():
    net = Network.from_arch("vgg11", 10, input_shape=(3, 32, 32), seed=0)
    convs = [layer for layer in net.layers if layer.kind == "conv"]
    assert [c.weight.shape for c in convs][:2] == [(128, 3, 3, 3), (128, 128, 3, 3)]
    assert len(convs) == 8 and [layer.kind for layer in net.layers].count("pool") == 3
    assert [layer.n_out for layer in net.layers[-3:]] == [2048, 2048, 10]
    assert net.layers[-3].n_in == 512 * 4 * 4


def test_misplaced_conv_is_refused():
    with pytest.raises(ArchError, match="cannot follow a dense layer"):
        Network.from_arch("100-50-10C3", 3, seed=0)
    with pytest.raises(ArchError, match="input_shape"):
        Network.from_arch("15C5-300", 3, seed=0)
