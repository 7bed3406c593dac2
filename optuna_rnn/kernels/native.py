"""The native backend: PyTorch's own LSTM/GRU kernels (cuDNN on CUDA, oneDNN on CPU)
for cells that *are* ``zoo.get("lstm")`` or ``zoo.get("gru_torch")``.

A cell qualifies by fingerprint, however it is spelled; its parameters are mapped onto
PyTorch's packed layout by canonical node position, so the module's own parameters (and
``state_dict``) stay the shared layout of every backend.
"""

from __future__ import annotations

import functools

import torch

from optuna_rnn.cell import Cell
from optuna_rnn.cell.ir import BIAS, LINEAR
from optuna_rnn.nn.backends import LayerParams, LayerRunner

__all__ = ["native_backend", "native_kind"]

# PyTorch's gate order, in the zoo cells' names: (input-hidden, hidden-hidden, bias_ih,
# bias_hh) with None for a zero block.
_LAYOUT = {
    "lstm": (
        ("Wxj", "Wxf", "Wxi", "Wxo"),
        ("Whj", "Whf", "Whi", "Who"),
        ("bj", "bf", "bi", "bo"),
        None,
    ),
    "gru_torch": (
        ("Wxr", "Wxz", "Wxn"),
        ("Whr", "Whz", "Whn"),
        ("br", "bz", "bxn"),
        (None, None, "bhn"),
    ),
}


@functools.cache
def _zoo_cells() -> dict[str, Cell]:
    from optuna_rnn.cell import zoo

    return {name: zoo.get(name) for name in _LAYOUT}


def native_kind(cell: Cell) -> str | None:
    """``"lstm"`` or ``"gru_torch"`` when ``cell`` is that zoo cell, else ``None``."""
    return next((n for n, c in _zoo_cells().items() if c.fingerprint == cell.fingerprint), None)


def _rename(zoo_cell: Cell, cell: Cell) -> dict[str, str]:
    """Zoo parameter name -> ``cell``'s name for the same canonical node."""
    return {z.name: n.name for z, n in zip(zoo_cell.nodes, cell.nodes) if z.op in (LINEAR, BIAS)}


def native_backend(cell: Cell) -> LayerRunner:
    """Bind ``cell`` to ``torch.lstm`` / ``torch.gru``; refuses (``NotImplementedError``)
    any other cell."""
    kind = native_kind(cell)
    if kind is None:
        raise NotImplementedError(
            "the native backend runs only cells equal to zoo lstm or gru_torch"
        )
    names = _rename(_zoo_cells()[kind], cell)
    w_ih, w_hh, b_ih, b_hh = (
        None if group is None else tuple(None if n is None else names[n] for n in group)
        for group in _LAYOUT[kind]
    )

    def run(
        params: LayerParams, x: torch.Tensor, states: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        H = states[0].shape[-1]
        zero = x.new_zeros(H)

        def bias(group: tuple[str | None, ...] | None, n: int) -> torch.Tensor:
            if group is None:
                return x.new_zeros(n * H)
            return torch.cat([zero if g is None else params.biases[g] for g in group])

        flat = [
            torch.cat([params.weights[n] for n in w_ih]),
            torch.cat([params.weights[n] for n in w_hh]),
            bias(b_ih, len(w_ih)),
            bias(b_hh, len(w_ih)),
        ]
        hx = tuple(s.unsqueeze(0) for s in states)
        train = torch.is_grad_enabled()
        if kind == "lstm":
            out, h, c = torch.lstm(x, hx, flat, True, 1, 0.0, train, False, False)
            return out, (h[0], c[0])
        out, h = torch.gru(x, hx[0], flat, True, 1, 0.0, train, False, False)
        return out, (h[0],)

    return run
