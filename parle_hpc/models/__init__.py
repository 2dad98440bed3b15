"""Model registry: ``build(name, num_classes, dropout=None)``.

Names: ``lenet``, ``allcnn`` and wide ResNets ``wrn-<depth>-<width>`` for any valid depth
and width (``wrn-28-10``, ``wrn-16-4``, ``wrn-40-2``, ...). Every model class is built as
``cls(num_classes=..., dropout=...)`` and carries the paper's defaults as
``default_dropout`` and ``default_weight_decay``, and its ``input_shape`` (C, H, W).
"""

from __future__ import annotations

import functools

from torch import nn

from .allcnn import AllCNN
from .lenet import LeNet
from .wrn import WideResNet, parse_wrn_name

MODELS: dict[str, type[nn.Module]] = {"lenet": LeNet, "allcnn": AllCNN}
"""Models with a fixed name. Wide ResNets are looked up by pattern (:func:`model_class`);
the paper's two are listed here too."""


@functools.lru_cache(maxsize=None)
def _wide_resnet(depth: int, width: int) -> type[WideResNet]:
    # One subclass per (depth, width), so a WRN is built like any other model and its
    # class attributes (input_shape, defaults) are looked up the same way.
    return type(f"WideResNet_{depth}_{width}", (WideResNet,),
                {"depth": depth, "width": width, "__module__": WideResNet.__module__,
                 "__doc__": f"WRN-{depth}-{width}. " + (WideResNet.__doc__ or "")})


MODELS["wrn-28-10"] = _wide_resnet(28, 10)
MODELS["wrn-16-4"] = _wide_resnet(16, 4)


def model_class(name: str) -> type[nn.Module]:
    """The class registered as ``name``; ``ValueError`` naming the valid names otherwise."""
    if name in MODELS:
        return MODELS[name]
    wrn = parse_wrn_name(name)  # raises for a malformed wrn-* name or an invalid depth
    if wrn is not None:
        return _wide_resnet(*wrn)
    raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}, or any "
                     "wrn-<depth>-<width> with (depth - 4) a positive multiple of 6")


def build(name: str, num_classes: int = 10, dropout: float | None = None) -> nn.Module:
    """Instantiate model ``name`` (dropout ``None`` = the paper's default for it)."""
    cls = model_class(name)
    return cls(num_classes=num_classes, dropout=cls.default_dropout if dropout is None else dropout)


def default_weight_decay(name: str) -> float:
    """The paper's weight decay for model ``name``."""
    return model_class(name).default_weight_decay


__all__ = ["MODELS", "AllCNN", "LeNet", "WideResNet", "build", "default_weight_decay",
           "model_class"]
