"""Model registry: ``build(name, num_classes, dropout=None)``.

Each model class carries the paper's defaults as ``default_dropout`` and
``default_weight_decay``.
"""

from __future__ import annotations

from torch import nn

from .lenet import LeNet

MODELS: dict[str, type[nn.Module]] = {"lenet": LeNet}


def model_class(name: str) -> type[nn.Module]:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None


def build(name: str, num_classes: int = 10, dropout: float | None = None) -> nn.Module:
    """Instantiate model ``name`` (dropout ``None`` = the paper's default for it)."""
    cls = model_class(name)
    return cls(num_classes=num_classes, dropout=cls.default_dropout if dropout is None else dropout)


def default_weight_decay(name: str) -> float:
    return model_class(name).default_weight_decay


__all__ = ["MODELS", "LeNet", "build", "default_weight_decay", "model_class"]
