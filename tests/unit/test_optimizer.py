"""The Parle optimizer on one replica: SGD parity, Entropy-SGD vs the spec, state, API."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from parle_hpc.optim import Parle, lr_at_epoch, scoped, scoping_rate
from spec_reference import SETTING, TinyNet, make_batch, serial_parle


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()


@pytest.mark.parametrize("wd", [0.0, 5e-4])
def test_n1_L0_rho0_is_torch_sgd_nesterov_for_100_steps(wd):
    net, ref_net = _net(), _net()
    ref_net.load_state_dict(net.state_dict())
    opt = Parle(net.parameters(), lr=0.05, L=0, rho0=0.0, batches_per_epoch=7, weight_decay=wd)
    ref = torch.optim.SGD(ref_net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=wd)
    gen = torch.Generator().manual_seed(1)
    worst = 0.0
    for step in range(100):
        x = torch.randn(10, 6, generator=gen, dtype=torch.float64)
        y = torch.randint(0, 3, (10,), generator=gen)
        for model, o in ((net, opt), (ref_net, ref)):
            o.zero_grad()
            F.cross_entropy(model(x), y).backward()
            o.step()
        worst = max(worst, max((a - b).abs().max().item()
                               for a, b in zip(net.parameters(), ref_net.parameters())))
        if step == 49:  # a schedule changes lr through param_groups
            for o in (opt, ref):
                o.param_groups[0]["lr"] = 0.01
    assert worst < 1e-6
    moved = max((p - q).abs().max().item() for p, q in zip(net.parameters(), _net().parameters()))
    assert moved > 1e-2  # the run did something


@pytest.mark.parametrize("L", [1, 5])
def test_single_replica_entropy_sgd_matches_spec(L):
    s = SETTING
    model = TinyNet(0)
    opt = Parle(model.parameters(), lr=s["lr"], inner_lr=s["inner_lr"], L=L, gamma0=s["gamma0"],
                gamma_max=s["gamma_max"], rho0=0.0, rho_max=s["rho_max"], scoping=s["scoping"],
                batches_per_epoch=s["B"], alpha=s["alpha"], momentum=s["mu"],
                weight_decay=s["wd"])
    outer = 4
    for k in range(outer * L):
        x, y = make_batch(0, k)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    xs, ys, xbar = serial_parle(1, L=L, outer_steps=outer, lr=s["lr"], inner_lr=s["inner_lr"],
                                gamma0=s["gamma0"], gamma_max=s["gamma_max"], rho0=0.0,
                                rho_max=s["rho_max"], scoping=s["scoping"], B=s["B"],
                                alpha=s["alpha"], mu=s["mu"], wd=s["wd"])
    for p, q in zip(model.parameters(), ys[0]):
        torch.testing.assert_close(p.detach(), q, rtol=0, atol=1e-10)
    for p, q in zip(opt.reference(), xbar):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-10)


def test_scoping_values_and_caps():
    B = 10
    s = scoping_rate(0.5, B)
    assert s == pytest.approx(0.05)
    assert scoped(0.01, 1.0, s, 1) == pytest.approx(0.0105)
    assert scoped(1.0, 10.0, s, 20) == pytest.approx(1.05 ** 20)
    # caps: gamma reaches 1 after ln(100)/ln(1.05) ~ 94.4 steps, rho reaches 10 after ~47.2
    assert scoped(0.01, 1.0, s, 94) < 1.0 and scoped(0.01, 1.0, s, 95) == 1.0
    assert scoped(1.0, 10.0, s, 47) < 10.0 and scoped(1.0, 10.0, s, 48) == 10.0
    net = _net()
    opt = Parle(net.parameters(), lr=0.1, L=2, batches_per_epoch=B)
    assert opt.couplings(0) == (0.01, 1.0)
    assert opt.couplings(95) == (1.0, 10.0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):  # t advances once per outer step, at its first inner step
        x = torch.randn(4, 6, generator=gen, dtype=torch.float64)
        opt.zero_grad()
        net(x).sum().backward()
        opt.step()
    assert opt.outer_step == 2 and opt.steps == 4
    assert opt.couplings() == pytest.approx((0.01 * 1.05 ** 2, 1.05 ** 2))


def test_lr_schedule_by_epoch():
    sched = [[1, 0.1], [2, 0.02], [3, 0.004], [5, 0.001]]
    assert [lr_at_epoch(sched, e) for e in range(7)] == [0.1, 0.02, 0.004, 0.001, 0.001, 0.001, 0.001]


def _train(model, opt, ks):
    for k in ks:
        x, y = make_batch(0, k)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("L,stop_at", [(5, 12), (5, 10), (0, 7)])
def test_state_dict_restore_continues_exactly(L, stop_at):
    kwargs = dict(lr=0.2, inner_lr=0.1, L=L, gamma0=0.05, rho0=0.5, batches_per_epoch=3,
                  weight_decay=1e-3)
    straight = TinyNet(0)
    opt = Parle(straight.parameters(), **kwargs)
    _train(straight, opt, range(30))

    first = TinyNet(0)
    opt1 = Parle(first.parameters(), **kwargs)
    _train(first, opt1, range(stop_at))
    saved_model = copy.deepcopy(first.state_dict())
    saved_opt = copy.deepcopy(opt1.state_dict())
    del first, opt1

    resumed = TinyNet(7)  # different initial weights: everything must come from the state
    resumed.load_state_dict(saved_model)
    opt2 = Parle(resumed.parameters(), **{**kwargs, "lr": 99.0})
    opt2.load_state_dict(saved_opt)
    assert opt2.param_groups[0]["lr"] == 0.2
    _train(resumed, opt2, range(stop_at, 30))
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(opt.reference(), opt2.reference()):
        assert torch.equal(p, q)


def test_flat_buffer_views_and_set_to_none():
    net = _net()
    opt = Parle(net.parameters(), lr=0.1, L=3, batches_per_epoch=5)
    flat = opt.flat_params
    for p in net.parameters():
        assert p.data_ptr() >= flat.data_ptr()
        assert p.data_ptr() < flat.data_ptr() + flat.numel() * flat.element_size()
    x = torch.randn(4, 6, dtype=torch.float64)
    # model.zero_grad() sets grads to None: the optimizer must still see the new gradients
    net.zero_grad(set_to_none=True)
    net(x).sum().backward()
    before = flat.clone()
    opt.step()
    assert not torch.equal(before, flat)
    assert all(p.grad.data_ptr() >= opt._flat_grad.data_ptr() for p in net.parameters())


def test_invalid_arguments_are_named():
    net = _net()
    with pytest.raises(ValueError, match="alpha"):
        Parle(net.parameters(), lr=0.1, alpha=1.0, batches_per_epoch=3)
    with pytest.raises(ValueError, match="batches_per_epoch"):
        Parle(net.parameters(), lr=0.1, batches_per_epoch=0)
    with pytest.raises(ValueError, match="lr"):
        Parle(net.parameters(), lr=-1.0, batches_per_epoch=3)
    mixed = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))]
    with pytest.raises(ValueError, match="dtype"):
        Parle(mixed, lr=0.1, batches_per_epoch=3)
    with pytest.raises(TypeError):
        Parle(net.parameters(), 0.1)  # keyword-only, as documented
