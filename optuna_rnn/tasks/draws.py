"""The synthetic tasks' random draws: ``random.Random``'s own stream, at a third of its cost.

Drawing a batch is a tenth of a small task's training step, and most of it was the call
chain behind ``rng.choice`` and ``rng.randint`` (``randrange``, ``_randbelow``,
``getrandbits``). :func:`below` draws exactly what they draw (``n.bit_length()`` random
bits at a time until a value below ``n`` comes up), so a seed gives the batches it gave
before; ``tests/test_task_draws.py`` holds it to the standard library's stream.
"""

from __future__ import annotations

import functools
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
    the same way from the same stream."""
    n = len(symbols)
    if n == 0:
        raise ValueError("word needs at least one symbol to draw from")
    table = _top_byte_symbols(symbols) if length >= _LONG_WORD else None
    if table is not None:
        # A round draws a 32-bit word for each symbol missing (each takes one at least):
        # getrandbits(32 * m) holds m of them, the first in the lowest bits, and the top
        # byte of each holds the k <= 8 bits that getrandbits(k) would return.
        drawn = b""
        while len(drawn) < length:
            missing = length - len(drawn)
            top = rng.getrandbits(32 * missing).to_bytes(4 * missing, "little")[3::4]
            drawn += top.translate(table).replace(b"\0", b"")
        return drawn.decode("latin-1")
    # below's loop, inline: half the cost of a call per symbol
    k = n.bit_length()
    getrandbits = rng.getrandbits
    chars: list[str] = []
    while len(chars) < length:
        r = getrandbits(k)
        if r < n:
            chars.append(symbols[r])
    return "".join(chars)


# From this length on, word draws a round's symbols as bytes, each in a few C calls.
_LONG_WORD = 16


@functools.lru_cache(maxsize=64)
def _top_byte_symbols(symbols: str) -> bytes | None:
    """For each top byte of a 32-bit draw, the symbol (a Latin-1 byte) that its top
    ``len(symbols).bit_length()`` bits pick, or NUL where they pick none; ``None`` where
    that cannot be: more than 255 symbols, or any not Latin-1 or NUL."""
    n = len(symbols)
    shift = 8 - n.bit_length()
    if shift < 0 or not all(0 < ord(c) < 256 for c in symbols):
        return None
    return bytes(ord(symbols[b >> shift]) if b >> shift < n else 0 for b in range(256))
