"""Named cells from the literature, written in the cell language.

``get("gru")`` parses the equations below (once; cells are immutable, so they are
cached). Each entry names its source. Conventions shared by the entries:

- The LSTM family follows Jozefowicz et al. (2015): ``i`` is the input node (tanh),
  ``j`` the input gate, ``f`` the forget gate, ``o`` the output gate.
- A learned vector (a name starting with ``b``) multiplied elementwise by a value is a
  diagonal weight: the peepholes of Greff et al. and IndRNN's recurrence use it.
- PyTorch's ``nn.LSTM`` *is* ``lstm``: its ``g`` (tanh) is our ``i``, its ``i`` our
  ``j``, and its two bias vectors per gate add up to our one (copy ``b_ih + b_hh``).
  PyTorch's ``nn.GRU`` is not ``gru``: it applies the reset gate after the recurrent
  matrix, which is ``gru_torch``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from optuna_rnn.cell.ir import Cell, CellError

__all__ = ["Entry", "equations", "get", "name_of", "names", "source"]

_JOZEFOWICZ = "Jozefowicz, Zaremba, Sutskever, ICML 2015"
_GREFF = "Greff et al., LSTM: A Search Space Odyssey, IEEE TNNLS 2017"

_LSTM = """
i = tanh(Wxi x + Whi h + bi)
j = sigm(Wxj x + Whj h + bj)
f = sigm(Wxf x + Whf h + bf)
o = sigm(Wxo x + Who h + bo)
c' = f * c + i * j
h' = o * tanh(c')
"""

# Greff et al.'s vanilla LSTM: the LSTM plus peepholes (diagonal weights from c to the
# input and forget gates, from c' to the output gate). Their variants each change one part.
_PEEPHOLE = """
i = tanh(Wxi x + Whi h + bi)
j = sigm(Wxj x + Whj h + bpj * c + bj)
f = sigm(Wxf x + Whf h + bpf * c + bf)
o = sigm(Wxo x + Who h + bpo * c' + bo)
c' = f * c + i * j
h' = o * tanh(c')
"""

_GATED = """
r = sigm(Wxr x + Whr h + br)
z = sigm(Wxz x + Whz h + bz)
"""


@dataclass(frozen=True)
class Entry:
    """A zoo cell: its equations and where they come from."""

    equations: str
    source: str


def _variant(base: str, old: str, new: str) -> str:
    if old not in base:
        raise AssertionError(f"{old!r} is not in the base equations")
    return base.replace(old, new)


_ENTRIES: dict[str, Entry] = {
    "tanh": Entry("h' = tanh(Wx x + Wh h + b)", f"Elman 1990; the Tanh RNN of {_JOZEFOWICZ}"),
    "lstm": Entry(
        _LSTM,
        f"Hochreiter & Schmidhuber 1997 with the forget gate of Gers et al. 2000, as written "
        f"in {_JOZEFOWICZ}; {_GREFF}: 'no peepholes' (NP); PyTorch's nn.LSTM",
    ),
    "lstm_f": Entry(
        _variant(_LSTM, "f = sigm(Wxf x + Whf h + bf)", "f = 1"),
        f"LSTM-f (no forget gate, f = 1), {_JOZEFOWICZ}",
    ),
    "lstm_i": Entry(
        _variant(_LSTM, "j = sigm(Wxj x + Whj h + bj)", "j = 1"),
        f"LSTM-i (no input gate, j = 1), {_JOZEFOWICZ}",
    ),
    "lstm_o": Entry(
        _variant(_LSTM, "o = sigm(Wxo x + Who h + bo)", "o = 1"),
        f"LSTM-o (no output gate, o = 1), {_JOZEFOWICZ}",
    ),
    "lstm_b": Entry(
        _variant(_LSTM, "bf)", "bf[1])"),
        f"LSTM-b (forget-gate bias initialised to 1), {_JOZEFOWICZ}",
    ),
    "gru": Entry(
        _GATED + "n = tanh(Wxh x + Whh (r * h) + bh)\nh' = z * h + (1 - z) * n",
        f"Cho et al. 2014, in the form of Chung et al. 2014 and {_JOZEFOWICZ}",
    ),
    "gru_torch": Entry(
        _GATED + "n = tanh(Wxn x + bxn + r * (Whn h + bhn))\nh' = z * h + (1 - z) * n",
        "PyTorch's nn.GRU and cuDNN: the reset gate applied after the recurrent matrix, as in "
        "the first arXiv version of Cho et al. 2014 (1406.1078v1); nn.GRU's bias pairs "
        "b_ir + b_hr and b_iz + b_hz are one bias each here (br, bz)",
    ),
    "mut1": Entry(
        """
        z = sigm(Wxz x + bz)
        r = sigm(Wxr x + Whr h + br)
        h' = tanh(Whh (r * h) + tanh(x) + bh) * z + h * (1 - z)
        """,
        f"MUT1, {_JOZEFOWICZ}",
    ),
    "mut2": Entry(
        """
        z = sigm(Wxz x + Whz h + bz)
        r = sigm(x + Whr h + br)
        h' = tanh(Whh (r * h) + Wxh x + bh) * z + h * (1 - z)
        """,
        f"MUT2, {_JOZEFOWICZ}",
    ),
    "mut3": Entry(
        """
        z = sigm(Wxz x + Whz tanh(h) + bz)
        r = sigm(Wxr x + Whr h + br)
        h' = tanh(Whh (r * h) + Wxh x + bh) * z + h * (1 - z)
        """,
        f"MUT3, {_JOZEFOWICZ}",
    ),
    "peephole": Entry(_PEEPHOLE, f"vanilla LSTM with peepholes, {_GREFF}; Gers & Schmidhuber 2000"),
    "nig": Entry(
        _variant(_PEEPHOLE, "j = sigm(Wxj x + Whj h + bpj * c + bj)", "j = 1"),
        f"no input gate (NIG), {_GREFF}",
    ),
    "nfg": Entry(
        _variant(_PEEPHOLE, "f = sigm(Wxf x + Whf h + bpf * c + bf)", "f = 1"),
        f"no forget gate (NFG), {_GREFF}",
    ),
    "nog": Entry(
        _variant(_PEEPHOLE, "o = sigm(Wxo x + Who h + bpo * c' + bo)", "o = 1"),
        f"no output gate (NOG), {_GREFF}",
    ),
    "niaf": Entry(
        _variant(_PEEPHOLE, "i = tanh(Wxi x + Whi h + bi)", "i = Wxi x + Whi h + bi"),
        f"no input activation function (NIAF), {_GREFF}",
    ),
    "noaf": Entry(
        _variant(_PEEPHOLE, "h' = o * tanh(c')", "h' = o * c'"),
        f"no output activation function (NOAF), {_GREFF}",
    ),
    "cifg": Entry(
        _variant(_PEEPHOLE, "f = sigm(Wxf x + Whf h + bpf * c + bf)", "f = 1 - j"),
        f"coupled input and forget gate (CIFG, f = 1 - j), {_GREFF}",
    ),
    "fgr": Entry(
        """
        i = tanh(Wxi x + Whi h + bi)
        j = sigm(Wxj x + Whj h + bpj * c + Wgj g + bj)
        f = sigm(Wxf x + Whf h + bpf * c + Wgf g + bf)
        o = sigm(Wxo x + Who h + bpo * c' + Wgo g + bo)
        g' = f
        c' = f * c + i * j
        h' = o * tanh(c')
        """,
        f"full gate recurrence (FGR), {_GREFF}, within the language's three states: Greff "
        "feeds all three previous gates back into every gate; here the previous forget gate "
        "(state g) feeds all three gates",
    ),
    "mgu": Entry(
        """
        f = sigm(Wxf x + Whf h + bf)
        n = tanh(Wxh x + Whh (f * h) + bh)
        h' = (1 - f) * h + f * n
        """,
        "minimal gated unit, Zhou, Wu, Zhang, Zhou, IJAC 2016",
    ),
    "indrnn": Entry(
        "h' = relu(Wx x + bu * h + b)",
        "IndRNN (elementwise recurrence u * h), Li, Li, Cook, Zhu, Gao, CVPR 2018",
    ),
    "janet": Entry(
        """
        s = Wxf x + Whf h + bf
        n = tanh(Wxc x + Whc h + bc)
        h' = sigm(s) * h + (1 - sigm(s - 1)) * n
        """,
        "JANET (forget gate only, beta = 1, h = c), van der Westhuizen & Lasenby 2018",
    ),
    "ugrnn": Entry(
        """
        n = tanh(Wxc x + Whc h + bc)
        g = sigm(Wxg x + Whg h + bg)
        h' = g * h + (1 - g) * n
        """,
        "update-gate RNN (UGRNN), Collins, Sohl-Dickstein, Sussillo, ICLR 2017",
    ),
}


def names() -> list[str]:
    """Every zoo name, in a fixed order (the paper's cells first)."""
    return list(_ENTRIES)


def _entry(name: str) -> Entry:
    try:
        return _ENTRIES[name]
    except (KeyError, TypeError):
        raise CellError(f"unknown zoo cell {name!r}; valid names: {', '.join(_ENTRIES)}") from None


def get(name: str) -> Cell:
    """The zoo cell ``name`` (see :func:`names`); an unknown name raises CellError."""
    _entry(name)
    return _parsed(name)


@functools.cache
def _parsed(name: str) -> Cell:
    return Cell.parse(_ENTRIES[name].equations)


def source(name: str) -> str:
    """Where the zoo cell ``name`` comes from."""
    return _entry(name).source


def equations(name: str) -> str:
    """The zoo cell's equations as written here (``str(get(name))`` is the canonical form)."""
    return _entry(name).equations


@functools.cache
def _by_fingerprint() -> dict[str, str]:
    return {get(name).fingerprint: name for name in _ENTRIES}


def name_of(cell: Cell) -> str | None:
    """The zoo name of a cell with this computation (same fingerprint), else ``None``."""
    return _by_fingerprint().get(cell.fingerprint)
