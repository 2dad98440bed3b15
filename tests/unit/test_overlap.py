"""Permutation-invariant overlap: the specs preserve the function, weight matching recovers
permutations, the overlap is symmetric and blind to unit numbering, and the CLI reads
checkpoints written with the documented layout."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from parle_hpc.analysis.interpolate import interpolate_states, interpolation_path
from parle_hpc.analysis.overlap import (align, layer_cosines, model_for_state, null_baseline,
                                        permutation_spec, permute_state, random_permutations)
from parle_hpc.analysis.overlap_cli import main as overlap_main
from parle_hpc.analysis.permspec import (Axis, PermGroup, PermSpec, SpecError, check_spec,
                                         inverse_permutations)
from parle_hpc.data import Split
from parle_hpc.models import AllCNN, build

# wrn-16-2: projection shortcuts and a stream shared by two blocks; wrn-10-1: the stem's
# stream continues into the first group (no projection at width 1).
FUNCTION_MODELS = ["lenet", "allcnn", "wrn-16-2", "wrn-10-1"]


def _model(name: str, seed: int = 0) -> nn.Module:
    """A registry model with random BN affine parameters and running statistics, so that
    forgetting to permute any of them changes the outputs."""
    torch.manual_seed(seed)
    model = build(name).double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.normal_(1.0, 0.5)
                module.bias.normal_(0.0, 0.5)
                module.running_mean.normal_(0.0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


def _small_allcnn(seed: int) -> nn.Module:
    # The registry's All-CNN at a quarter of the width keeps the many alignments below fast.
    torch.manual_seed(seed)
    return AllCNN(c1=24, c2=48).double()


def _permuted_copy(model: nn.Module, spec: PermSpec, seed: int) -> nn.Module:
    other = copy.deepcopy(model)
    other.load_state_dict(permute_state(model.state_dict(), spec, random_permutations(spec, seed)))
    return other


def _max_output_difference(a: nn.Module, b: nn.Module, x: torch.Tensor, train: bool) -> float:
    for model in (a, b):
        model.train(train)
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                # Dropout masks fall on different units once units are permuted; the check
                # is about the weights, so dropout is off (BN still uses batch statistics).
                module.p = 0.0
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


def _inputs(model: nn.Module, n: int = 6) -> torch.Tensor:
    return torch.randn(n, *model.input_shape, generator=torch.Generator().manual_seed(5),
                       dtype=torch.float64)


# ---------------------------------------------------------------------- specifications
@pytest.mark.parametrize("name", FUNCTION_MODELS)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_permuted_copy_computes_the_same_function(name: str, train: bool):
    model = _model(name)
    spec = permutation_spec(name, model)
    permuted = _permuted_copy(model, spec, seed=1)
    x = _inputs(model)
    assert _max_output_difference(model, permuted, x, train) < 1e-5
    if train:  # BN's running statistics moved in step: still each other's permutation
        moved = permute_state(model.state_dict(), spec, random_permutations(spec, 1))
        for key, value in permuted.state_dict().items():
            torch.testing.assert_close(value, moved[key], rtol=0, atol=1e-10)


def test_permutation_really_moves_weights():
    model = _model("lenet")
    spec = permutation_spec("lenet", model)
    permuted = _permuted_copy(model, spec, seed=1)
    assert not torch.equal(model.features[0][0].weight, permuted.features[0][0].weight)


def test_lenet_flatten_permutes_blocks_of_four():
    spec = permutation_spec("lenet", build("lenet"))
    conv2 = next(g for g in spec.groups if g.name == "features.1.0")
    assert conv2.size == 50
    assert Axis("classifier.1.weight", 1, 4) in conv2.axes
    bn_tensors = {a.tensor for a in conv2.axes if a.tensor.startswith("features.1.1.")}
    assert bn_tensors == {f"features.1.1.{s}" for s in ("weight", "bias", "running_mean",
                                                        "running_var")}
    assert [layer.name for layer in spec.layers] == ["features.0.0", "features.1.0",
                                                     "classifier.1", "classifier.5"]


def test_wrn_residual_stream_is_one_group():
    spec = permutation_spec("wrn-16-2", build("wrn-16-2"))
    names = [g.name for g in spec.groups]
    assert names.count("stream0") == 1 and len([n for n in names if n.startswith("stream")]) == 4
    stream1 = next(g for g in spec.groups if g.name == "stream1")
    tensors = {(a.tensor, a.axis) for a in stream1.axes}
    # Both blocks of the first group write into the same stream (the second one through
    # its identity shortcut), and the next group's first block reads from it.
    assert {("groups.0.0.shortcut.weight", 0), ("groups.0.0.conv2.weight", 0),
            ("groups.0.1.conv2.weight", 0), ("groups.0.1.conv1.weight", 1),
            ("groups.1.0.conv1.weight", 1), ("groups.1.0.shortcut.weight", 1)} <= tensors


# The layers producing the class scores: their outputs keep their order.
LOGITS = {"lenet": "classifier.5.", "allcnn": "features.11.", "wrn-16-2": "fc.", "wrn-10-1": "fc."}


@pytest.mark.parametrize("name", FUNCTION_MODELS)
def test_every_hidden_axis_is_covered(name: str):
    model = build(name)
    spec = permutation_spec(name, model)
    check_spec(spec, model.state_dict())
    covered = {(a.tensor, a.axis) for g in spec.groups for a in g.axes}
    for key, value in model.state_dict().items():
        if value.ndim == 0:
            continue  # num_batches_tracked
        if not key.startswith(LOGITS[name]):
            assert (key, 0) in covered, key  # every output axis, BN tensor and bias
        if value.ndim > 1 and key != "stem.weight" and key != "features.1.0.weight" \
                and key != "features.0.0.weight":
            assert (key, 1) in covered, key  # every input axis but the image's


def test_unknown_model_and_misfitting_state_are_rejected():
    with pytest.raises(SpecError, match="no permutation specification"):
        permutation_spec("resnet", build("lenet"))
    state = build("lenet").state_dict()
    state["classifier.1.weight"] = torch.zeros(500, 199)
    with pytest.raises(SpecError):
        model_for_state("lenet", state)


def _without(spec: PermSpec, drop) -> PermSpec:
    groups = tuple(dataclasses.replace(g, axes=tuple(a for a in g.axes if not drop(g, a)))
                   for g in spec.groups)
    return dataclasses.replace(spec, groups=groups)


def _is_axis(tensor: str, axis: int):
    return lambda group, ax: (ax.tensor, ax.axis) == (tensor, axis)


def _untie(spec: PermSpec, group_name: str, tensor: str) -> PermSpec:
    """``tensor``'s axes in ``group_name`` moved into a group of their own."""
    groups = []
    for g in spec.groups:
        if g.name == group_name:
            mine = tuple(a for a in g.axes if a.tensor == tensor)
            rest = tuple(a for a in g.axes if a.tensor != tensor)
            groups.append(dataclasses.replace(g, axes=rest))
            groups.append(PermGroup(f"{g.name}-untied", g.size, mine))
        else:
            groups.append(g)
    return dataclasses.replace(spec, groups=tuple(groups))


WRONG_SPECS = {
    "lenet: next layer's input axis forgotten": (
        "lenet", lambda s: _without(s, _is_axis("features.1.0.weight", 1))),
    "lenet: flatten forgotten": (
        "lenet", lambda s: _without(s, _is_axis("classifier.1.weight", 1))),
    "lenet: BN running statistics forgotten": (
        "lenet", lambda s: _without(s, lambda g, a: a.tensor.endswith("running_mean"))),
    "allcnn: BN forgotten": (
        "allcnn", lambda s: _without(s, lambda g, a: a.tensor.startswith("features.1.1."))),
    "wrn-16-2: residual untied": (
        "wrn-16-2", lambda s: _untie(s, "stream1", "groups.0.1.conv2.weight")),
}


@pytest.mark.parametrize("case", list(WRONG_SPECS))
def test_a_wrong_specification_fails_the_function_test(case: str):
    name, corrupt = WRONG_SPECS[case]
    model = _model(name)
    wrong = corrupt(permutation_spec(name, model))
    permuted = _permuted_copy(model, wrong, seed=1)
    x = _inputs(model)
    # The function test looks at both modes; a mistake shows in at least one (forgotten
    # running statistics only in eval mode, where they are used).
    worst = max(_max_output_difference(model, permuted, x, train) for train in (False, True))
    assert worst > 1e-2


# ---------------------------------------------------------------------- weight matching
@pytest.mark.parametrize("name", ["lenet", "allcnn", "wrn-16-2"])
def test_permuted_copy_has_aligned_overlap_one(name: str):
    model = _model(name)
    spec = permutation_spec(name, model)
    perms = random_permutations(spec, 3)
    permuted = permute_state(model.state_dict(), spec, perms)
    result = align(model.state_dict(), permuted, spec)
    assert result.overlap == pytest.approx(1.0, abs=1e-6)
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in result.per_layer.values())
    assert result.unaligned < 0.99
    # The permutations found undo the ones applied.
    inverse = inverse_permutations(perms)
    for group in spec.groups:
        np.testing.assert_array_equal(result.perms[group.name], inverse[group.name])


def _pair(kind: str) -> tuple[dict, dict, PermSpec]:
    if kind == "allcnn-small":
        a, b = _small_allcnn(0), _small_allcnn(1)
        spec = permutation_spec("allcnn", a)
    else:
        a, b = _model(kind, 0), _model(kind, 1)
        spec = permutation_spec(kind, a)
    return a.state_dict(), b.state_dict(), spec


PAIR_MODELS = ["lenet", "allcnn-small", "wrn-10-1"]


@pytest.mark.parametrize("kind", PAIR_MODELS)
def test_overlap_is_symmetric_and_one_with_itself(kind: str):
    a, b, spec = _pair(kind)
    ab, ba = align(a, b, spec), align(b, a, spec)
    assert ab.overlap == pytest.approx(ba.overlap, abs=1e-9)
    assert ab.unaligned == pytest.approx(ba.unaligned, abs=1e-12)
    assert ab.unaligned < ab.overlap < 1.0
    for group in spec.groups:  # b -> a is the inverse of a -> b
        np.testing.assert_array_equal(ba.perms[group.name], np.argsort(ab.perms[group.name]))
    same = align(a, a, spec)
    assert same.overlap == pytest.approx(1.0, abs=1e-12)
    assert same.unaligned == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("kind", PAIR_MODELS)
def test_overlap_is_unchanged_when_either_network_is_permuted_first(kind: str):
    a, b, spec = _pair(kind)
    reference = align(a, b, spec).overlap
    b_permuted = permute_state(b, spec, random_permutations(spec, 7))
    a_permuted = permute_state(a, spec, random_permutations(spec, 8))
    assert align(a, b_permuted, spec).overlap == pytest.approx(reference, abs=1e-9)
    assert align(a_permuted, b, spec).overlap == pytest.approx(reference, abs=1e-9)


def test_layer_cosines_are_the_overlap_terms():
    a, b, spec = _pair("lenet")
    result = align(a, b, spec)
    assert layer_cosines(a, b, spec) == pytest.approx(result.per_layer_unaligned)
    assert layer_cosines(a, b, spec, result.perms) == pytest.approx(result.per_layer)
    # Cosine with the bias appended, computed by hand for the first layer.
    wa = torch.cat([a["features.0.0.weight"].flatten(), a["features.0.0.bias"]])
    wb = torch.cat([b["features.0.0.weight"].flatten(), b["features.0.0.bias"]])
    assert result.per_layer_unaligned["features.0.0"] == pytest.approx(
        float(wa @ wb / (wa.norm() * wb.norm())))


def test_null_baseline_is_seeded_and_low():
    first, second = null_baseline("lenet"), null_baseline("lenet")
    assert first.overlap == second.overlap and first.unaligned == second.unaligned
    assert abs(first.unaligned) < 0.1 < first.overlap < 0.5
    assert null_baseline("lenet", seeds=(2, 3)).overlap != first.overlap


# ---------------------------------------------------------------------- checkpoints and CLI
def _write_checkpoint(path: Path, states: list[dict], reference: dict,
                      model: str = "lenet") -> Path:
    """A file with the checkpoint layout of docs/checkpoint-format.md (the parts read here)."""
    with h5py.File(path, "w") as fh:
        fh.attrs["format"] = "parle-hpc-checkpoint"
        fh.attrs["model"] = model
        fh.attrs["n_replicas"] = len(states)
        fh.attrs["config"] = json.dumps({"name": "test"})
        for group, state in [("reference", reference)] + [(f"replicas/{k}", s)
                                                          for k, s in enumerate(states)]:
            for key, value in state.items():
                kind = "params" if not key.endswith(("running_mean", "running_var",
                                                     "num_batches_tracked")) else "buffers"
                fh[f"{group}/{kind}/{key}"] = value.detach().numpy()
    return path


def test_cli_on_permuted_replicas(tmp_path: Path, capsys):
    model = build("lenet")
    spec = permutation_spec("lenet", model)
    base = model.state_dict()
    states = [permute_state(base, spec, random_permutations(spec, k)) for k in range(3)]
    ckpt = _write_checkpoint(tmp_path / "ckpt-step000000001.h5", states, base)
    assert overlap_main([str(ckpt), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    report = json.loads((tmp_path / "out" / "overlap.json").read_text())
    assert [n["label"] for n in report["networks"]] == ["replica 0", "replica 1", "replica 2",
                                                        "reference"]
    np.testing.assert_allclose(report["aligned"], np.ones((4, 4)), atol=1e-6)
    unaligned = np.array(report["unaligned"])
    assert np.all(unaligned[~np.eye(4, dtype=bool)] < 0.99)
    np.testing.assert_allclose(unaligned, unaligned.T)
    assert report["null_baseline"]["overlap"] < 0.5
    assert len(report["pairs"]) == 6 and report["layers"][0] == "features.0.0"
    assert (tmp_path / "out" / "overlap.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "replica 2" in printed and "null baseline" in printed


def test_cli_across_runs_uses_references(tmp_path: Path):
    for k in range(3):
        torch.manual_seed(k)
        state = build("lenet").state_dict()
        run = tmp_path / f"run{k}" / "checkpoints"
        run.mkdir(parents=True)
        _write_checkpoint(run / "ckpt-step000000010.h5", [state], state)
    runs = [str(tmp_path / f"run{k}") for k in range(3)]
    assert overlap_main(runs + ["--out", str(tmp_path / "out"), "--quiet"]) == 0
    report = json.loads((tmp_path / "out" / "overlap.json").read_text())
    assert [n["label"] for n in report["networks"]] == ["run0", "run1", "run2"]
    assert {n["which"] for n in report["networks"]} == {"reference"}
    assert overlap_main(runs + ["--out", str(tmp_path / "o2"), "--use", "replicas",
                                "--quiet"]) == 0
    report = json.loads((tmp_path / "o2" / "overlap.json").read_text())
    assert [n["label"] for n in report["networks"]] == ["run0/0", "run1/0", "run2/0"]


def test_cli_refuses_what_it_cannot_compare(tmp_path: Path, capsys):
    assert overlap_main([str(tmp_path / "missing.h5"), "--out", str(tmp_path)]) == 2
    lenet = build("lenet").state_dict()
    torch.manual_seed(0)
    wrn = build("wrn-10-1").state_dict()
    a = _write_checkpoint(tmp_path / "a.h5", [lenet], lenet)
    b = _write_checkpoint(tmp_path / "b.h5", [wrn], wrn, model="wrn-10-1")
    assert overlap_main([str(a), str(b), "--out", str(tmp_path / "out")]) == 2
    assert "different models" in capsys.readouterr().err


# ---------------------------------------------------------------------- interpolation
def _synthetic_split(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))


def test_interpolate_states_ends_and_integer_buffers():
    a, b = build("lenet").state_dict(), build("lenet").state_dict()
    for alpha, want in ((0.0, a), (1.0, b)):
        mixed = interpolate_states(a, b, alpha)
        for key in a:
            if a[key].is_floating_point():
                torch.testing.assert_close(mixed[key], want[key])
    b["features.0.1.num_batches_tracked"].fill_(7)
    assert int(interpolate_states(a, b, 0.5)["features.0.1.num_batches_tracked"]) == 0


def test_path_to_an_aligned_permuted_copy_is_flat():
    torch.manual_seed(0)
    model = build("lenet")
    spec = permutation_spec("lenet", model)
    a = model.state_dict()
    b = permute_state(a, spec, random_permutations(spec, 4))
    train, val = _synthetic_split(96, 1), _synthetic_split(48, 2)
    aligned_b = permute_state(b, spec, align(a, b, spec).perms)
    flat = interpolation_path(build("lenet"), a, aligned_b, train, val, points=5, batch_size=32)
    assert max(flat.loss) - min(flat.loss) < 1e-5 and abs(flat.barrier_loss) < 1e-5
    as_is = interpolation_path(build("lenet"), a, b, train, val, points=5, batch_size=32)
    # The ends are the same function (BN re-estimated on the same images); between them
    # the unaligned mixture is a different network.
    assert as_is.loss[0] == pytest.approx(as_is.loss[-1], abs=1e-5)
    assert abs(as_is.loss[2] - as_is.loss[0]) > 1e-3
