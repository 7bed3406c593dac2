"""The flat optimizer: the same updates as torch.optim with clip_grad_norm_, on views of
one buffer that go back to separate tensors afterwards."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from optuna_rnn.cell import zoo
from optuna_rnn.tasks.memorization import Memorization
from optuna_rnn.train import Diverged, TrainConfig, _fused_optim, build_model, train
from optuna_rnn.train.flat import FlatOptimizer, TorchOptimizer, make_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(7, 5), nn.Linear(5, 9), nn.Tanh(), nn.Linear(9, 3))


def _loss(net: nn.Module, k: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(k)
    inputs = torch.randint(0, 7, (11,), generator=g)
    return nn.functional.cross_entropy(net(inputs), torch.randint(0, 3, (11,), generator=g))


def _separate(net: nn.Module) -> bool:
    storages = [p.untyped_storage().data_ptr() for p in net.parameters()]
    return len(set(storages)) == len(storages)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize(("kind", "lr", "max_norm"), [("sgd", 0.5, 0.3), ("adam", 0.05, 1e3)])
def test_steps_equal_torch_optim_with_clipping(
    kind: str, lr: float, max_norm: float, fused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fused:  # the public fallback of the private fused Adam
        monkeypatch.setattr(_fused_optim, "_FUSED", None)
    net = _net()
    reference = copy.deepcopy(net)
    optimizer = (torch.optim.Adam if kind == "adam" else torch.optim.SGD)(
        reference.parameters(), lr=lr, foreach=False
    )
    with FlatOptimizer(list(net.parameters()), kind, lr) as flat:
        for k in range(8):
            flat.zero_grad()
            _loss(net, k).backward()
            # autograd accumulated into the flat gradient's views
            home = flat.grad.untyped_storage().data_ptr()
            assert all(p.grad.untyped_storage().data_ptr() == home for p in net.parameters())
            if k == 4:
                flat.lr /= 2
                for group in optimizer.param_groups:
                    group["lr"] /= 2
            flat.step(max_norm)
            optimizer.zero_grad()
            _loss(reference, k).backward()
            nn.utils.clip_grad_norm_(reference.parameters(), max_norm, foreach=False)
            optimizer.step()
            for p, q in zip(net.parameters(), reference.parameters(), strict=True):
                torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert _separate(net)
    assert net.state_dict().keys() == reference.state_dict().keys()


def test_clipping_scales_the_gradient_to_the_norm() -> None:
    net = _net()
    with FlatOptimizer(list(net.parameters()), "sgd", 0.0) as flat:
        _loss(net, 0).backward()
        norm = float(flat.grad.norm())
        flat.step(norm / 4)
        assert float(flat.grad.norm()) == pytest.approx(norm / 4, rel=1e-5)
        flat.zero_grad()
        assert not any(p.grad.any() for p in net.parameters())


def test_mixed_dtypes_fall_back_to_torch_optim() -> None:
    net = _net()
    net[3].double()
    assert isinstance(make_optimizer(list(net.parameters()), "adam", 0.1), TorchOptimizer)
    assert isinstance(make_optimizer(list(_net().parameters()), "adam", 0.1), FlatOptimizer)


def test_training_leaves_each_parameter_its_own_storage_even_when_it_diverges() -> None:
    task = Memorization(length=3, alphabet=6, eval_size=40)
    torch.manual_seed(0)
    model = build_model(zoo.get("lstm"), task, hidden_size=8, backend="reference")
    keys = list(model.state_dict())
    train(model, task, TrainConfig(learning_rate=0.5, max_grad_norm=1.0, max_steps=5))
    assert _separate(model) and list(model.state_dict()) == keys
    with pytest.raises(Diverged):
        train(model, task, TrainConfig(learning_rate=1e9, max_grad_norm=1e9, max_steps=200))
    assert _separate(model) and list(model.state_dict()) == keys


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_the_torch_optim_fallback_takes_the_same_steps(kind: str) -> None:
    nets = _net(), _net()
    with (
        FlatOptimizer(list(nets[0].parameters()), kind, 0.1) as flat,
        TorchOptimizer(list(nets[1].parameters()), kind, 0.1) as fallback,
    ):
        for k in range(6):
            for net, optimizer in zip(nets, (flat, fallback), strict=True):
                if k == 3:
                    optimizer.lr /= 4
                optimizer.zero_grad()
                _loss(net, k).backward()
                optimizer.step(0.5)
    assert fallback.lr == pytest.approx(0.025)
    for p, q in zip(*(net.parameters() for net in nets), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
