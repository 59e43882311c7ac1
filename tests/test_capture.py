import pytest
import torch
from torch import nn

from edge_sdk.errors import CaptureError
from edge_sdk.graph import capture, module_path
from edge_sdk.models import create_model


class UserNet(nn.Module):
    """A user's own module: conv with bias + BN, a BN not after a conv, dropout, a linear head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(8)
        self.pool_bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = self.pool_bn(nn.functional.max_pool2d(x, 2))
        return self.head(self.drop(x.mean((2, 3))))


def _randomise_batchnorm(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def _ops(graph):
    return {getattr(n.target, "__name__", str(n.target)) for n in graph.nodes if n.op == "call_function"}


def test_user_module_is_captured_with_batchnorm_folded_and_dropout_gone():
    model = _randomise_batchnorm(UserNet())
    x = torch.randn(1, 3, 16, 16)
    graph = capture(model, x)
    ops = _ops(graph)
    assert graph.folded_batchnorms == 1  # the BN after the conv; the one after the pool stays
    assert sum("batch_norm" in op for op in ops) == 1
    assert not any("dropout" in op or op.startswith("clone") for op in ops)
    torch.testing.assert_close(graph(x)[0], model(x), rtol=1e-5, atol=1e-5)


def test_every_zoo_batchnorm_folds_and_outputs_match():
    model = create_model("mobilenet_v2_035")
    x = torch.randn(1, 3, 96, 96)
    graph = capture(model, x)
    assert graph.folded_batchnorms == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any("batch_norm" in op for op in _ops(graph))
    torch.testing.assert_close(graph(x)[0], model(x), rtol=1e-4, atol=1e-5)
    assert graph.card is model.card


def test_nodes_map_back_to_torch_module_paths():
    graph = capture(create_model("mobilenet_v2_035"), torch.randn(1, 3, 64, 64))
    convs = [n for n in graph.nodes if n.op == "call_function" and "convolution" in str(n.target)]
    assert module_path(convs[0]) == "features.0.0"
    assert module_path(convs[-1]) == "features.18.0"
    linear = [n for n in graph.nodes if "addmm" in str(n.target)]
    assert module_path(linear[0]) == "classifier.fc"


def test_dynamic_batch_graph_runs_any_batch():
    model = create_model("mobilenet_v2_035")
    graph = capture(model, torch.randn(1, 3, 64, 64), dynamic_batch=True)
    for batch in (1, 3):
        x = torch.randn(batch, 3, 64, 64)
        torch.testing.assert_close(graph(x)[0], model(x), rtol=1e-4, atol=1e-5)


class Branchy(nn.Module):
    """Data-dependent control flow: torch.export cannot capture it."""

    def forward(self, x):
        return x * 2 if x.sum() > 0 else x


def test_data_dependent_control_flow_is_a_clear_capture_error():
    with pytest.raises(CaptureError, match="torch.export could not capture Branchy"):
        capture(Branchy(), torch.randn(1, 3, 8, 8))


def test_capture_pauses_the_garbage_collector_and_restores_it_even_on_failure():
    """The collector is off during export (speed) and back in its earlier state afterwards, whatever happened."""
    import gc

    class Watcher(nn.Module):
        def forward(self, x):
            self.collector_on = gc.isenabled()
            return x * 2

    watcher = Watcher()
    assert gc.isenabled()
    capture(watcher, torch.randn(1, 3, 8, 8))
    assert watcher.collector_on is False and gc.isenabled()
    with pytest.raises(CaptureError):
        capture(Branchy(), torch.randn(1, 3, 8, 8))
    assert gc.isenabled()
    gc.disable()
    try:
        capture(watcher, torch.randn(1, 3, 8, 8))
        assert not gc.isenabled()  # a caller who turned it off keeps it off
    finally:
        gc.enable()


def test_saved_program_is_captured(tmp_path):
    model = _randomise_batchnorm(UserNet())
    x = torch.randn(1, 3, 16, 16)
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "net.pt2")
    graph = capture(torch.export.load(tmp_path / "net.pt2"), x)
    assert graph.folded_batchnorms == 1
    torch.testing.assert_close(graph(x)[0], model(x), rtol=1e-5, atol=1e-5)


def test_reshape_of_a_strided_tensor_keeps_its_contiguous_copy():
    """Decomposed reshape = clone(contiguous) + view: removing that clone breaks attention blocks."""
    from edge_sdk.models.blocks import Attention

    attn = Attention(32, 4).eval()
    x = torch.randn(1, 10, 32)
    graph = capture(attn, x)
    torch.testing.assert_close(graph(x)[0], attn(x), rtol=1e-5, atol=1e-6)
