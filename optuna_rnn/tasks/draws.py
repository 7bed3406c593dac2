"""The synthetic tasks' random draws: ``random.Random``'s own stream, at a third of its cost.

Drawing a batch is a tenth of a small task's training step, and most of it was the call
chain behind ``rng.choice`` and ``rng.randint`` (``randrange``, ``_randbelow``,
``getrandbits``). :func:`below` draws exactly what they draw (``n.bit_length()`` random
bits at a time until a value below ``n`` comes up), so a seed gives the batches it gave
before; ``tests/test_task_draws.py`` holds it to the standard library's stream.
"""

from __future__ import annotations

import random

__all__ = ["below", "word"]


def below(rng: random.Random, n: int) -> int:
    """A uniform integer in ``[0, n)`` (``n >= 1``): ``rng.randrange(n)``, and the index
    ``rng.choice`` picks from ``n`` items, drawn the same way from the same stream."""
    k = n.bit_length()
    r = rng.getrandbits(k)
    while r >= n:
        r = rng.getrandbits(k)
    return r


def word(rng: random.Random, symbols: str, length: int) -> str:
    """``length`` symbols of ``symbols``: ``"".join(rng.choice(symbols) for ...)``, drawn
    the same way from the same stream (:func:`below`'s loop, inline: half the cost)."""
    n = len(symbols)
    if n == 0:
        raise ValueError("word needs at least one symbol to draw from")
    k = n.bit_length()
    getrandbits = rng.getrandbits
    chars: list[str] = []
    while len(chars) < length:
        r = getrandbits(k)
        if r < n:
            chars.append(symbols[r])
    return "".join(chars)
