"""Model registry: output shapes, parameter counts by formula, defaults, names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from parle_hpc.config import ConfigError, load_config
from parle_hpc.models import MODELS, WideResNet, build, default_weight_decay, model_class


# Parameter counts computed independently of the model code, layer by layer.
def conv(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def bn(c: int) -> int:
    return 2 * c  # affine weight and bias (running statistics are buffers)


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def lenet_params(classes: int = 10) -> int:
    # 28 -conv5-> 24 -pool3-> 8 -conv5-> 4 -pool2-> 2: 50 * 2 * 2 = 200 features
    return (conv(1, 20, 5) + bn(20) + conv(20, 50, 5) + bn(50)
            + linear(200, 500) + bn(500) + linear(500, classes))


def allcnn_params(classes: int = 10, c1: int = 96, c2: int = 192) -> int:
    layers = [(3, c1, 3), (c1, c1, 3), (c1, c1, 3), (c1, c2, 3), (c2, c2, 3), (c2, c2, 3),
              (c2, c2, 3), (c2, c2, 3), (c2, classes, 1)]
    return sum(conv(i, o, k) + bn(o) for i, o, k in layers)


def wrn_params(depth: int, width: int, classes: int = 10) -> int:
    n = (depth - 4) // 6
    widths = [16, 16 * width, 32 * width, 64 * width]
    total = conv(3, 16, 3, bias=False)
    for g in range(3):
        for b in range(n):
            c_in, c_out = (widths[g] if b == 0 else widths[g + 1]), widths[g + 1]
            total += bn(c_in) + conv(c_in, c_out, 3, False) + bn(c_out) + conv(c_out, c_out, 3, False)
            if c_in != c_out or (b == 0 and g > 0):
                total += conv(c_in, c_out, 1, bias=False)  # 1x1 projection shortcut
    return total + bn(widths[3]) + linear(widths[3], classes)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_formulas_agree_with_published_sizes():
    # Zagoruyko & Komodakis (2016), Table 1 / the reference code: 36.5M and 2.7M on CIFAR-10.
    assert wrn_params(28, 10) == 36_479_194
    assert wrn_params(16, 4) == 2_748_890
    # LeNet as the authors ran it: max-pool 3 then 2 leaves 50 x 2 x 2 = 200 features
    # (the Caffe LeNet's 431,080 has 800: pools of 2 and 2, and no BN).
    assert lenet_params() == 132_220
    assert allcnn_params() == 1_667_166


@pytest.mark.parametrize("name,classes,expected", [
    ("lenet", 10, lenet_params(10)),
    ("allcnn", 10, allcnn_params(10)),
    ("allcnn", 100, allcnn_params(100)),
    ("wrn-28-10", 10, wrn_params(28, 10)),
    ("wrn-28-10", 100, wrn_params(28, 10, 100)),
    ("wrn-16-4", 10, wrn_params(16, 4)),
    ("wrn-40-2", 10, wrn_params(40, 2)),
    ("wrn-10-1", 10, wrn_params(10, 1)),
])
def test_parameter_count_and_output_shape(name, classes, expected):
    torch.manual_seed(0)
    model = build(name, classes)
    assert count(model) == expected
    x = torch.randn(2, *model_class(name).input_shape)
    with torch.no_grad():
        assert model.eval()(x).shape == (2, classes)


@pytest.mark.parametrize("name", ["lenet", "allcnn", "wrn-16-4"])
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = build(name, 10).train()
    x = torch.randn(4, *model_class(name).input_shape)
    nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not unused


@pytest.mark.parametrize("name,dropout,wd,shape", [
    ("lenet", 0.25, 0.0, (1, 28, 28)),
    ("allcnn", 0.5, 1e-3, (3, 32, 32)),
    ("wrn-28-10", 0.25, 5e-4, (3, 32, 32)),
    ("wrn-16-4", 0.25, 5e-4, (3, 32, 32)),
    ("wrn-22-8", 0.25, 5e-4, (3, 32, 32)),
])
def test_paper_defaults(name, dropout, wd, shape):
    cls = model_class(name)
    assert cls.default_dropout == dropout and cls.default_weight_decay == wd
    assert default_weight_decay(name) == wd
    assert tuple(cls.input_shape) == shape


def test_dropout_argument_reaches_every_dropout_layer():
    model = build("wrn-16-4", 10, dropout=0.4)  # the SVHN setting
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {0.4}
    allcnn = build("allcnn", 10, dropout=0.3)  # the input dropout stays the authors' 0.2
    assert [m.p for m in allcnn.modules() if isinstance(m, nn.Dropout)] == [0.2, 0.3, 0.3]


def test_wide_resnets_by_any_valid_name():
    cls = model_class("wrn-40-2")
    assert cls is model_class("wrn-40-2") and issubclass(cls, WideResNet)
    assert (cls.depth, cls.width) == (40, 2)
    assert MODELS["wrn-28-10"] is model_class("wrn-28-10")
    assert load_config(None, ["model.name=wrn-40-2"]).model.name == "wrn-40-2"


@pytest.mark.parametrize("name,message", [
    ("wrn-27-10", r"depth 27 is invalid.*multiple of 6"),
    ("wrn-4-2", r"depth 4 is invalid"),
    ("wrn-28", r"not of the form wrn-<depth>-<width>"),
    ("wrn-28-0", r"not of the form"),
    ("wrn-028-10", r"not of the form"),
    ("resnet50", r"unknown model 'resnet50'; known: allcnn, lenet.*wrn-<depth>-<width>"),
])
def test_invalid_names_are_explained(name, message):
    with pytest.raises(ValueError, match=message):
        model_class(name)
    with pytest.raises(ConfigError, match=r"model\.name: .*" + message):
        load_config(None, [f"model.name={name}"])
