"""A token vocabulary: symbols to ids and back, in a deterministic order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = ["Vocabulary"]


class Vocabulary:
    """An ordered, duplicate-free list of symbols with an id for each.

    Args:
        symbols: the symbols, in id order.
        unk: a symbol (added at the end if absent) that unknown symbols encode to; with
            ``None``, encoding an unknown symbol raises ``KeyError``.
    """

    def __init__(self, symbols: Iterable[str], *, unk: str | None = None) -> None:
        symbols = list(symbols)
        if unk is not None and unk not in symbols:
            symbols.append(unk)
        if len(set(symbols)) != len(symbols):
            raise ValueError("vocabulary symbols must be distinct")
        self.symbols: tuple[str, ...] = tuple(symbols)
        self.unk = unk
        self._ids = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def by_frequency(cls, tokens: Iterable[str], *, unk: str | None = None) -> Vocabulary:
        """The distinct ``tokens``, most frequent first, ties in string order."""
        counts = Counter(tokens)
        return cls(sorted(counts, key=lambda s: (-counts[s], s)), unk=unk)

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens`` (unknown ones to ``unk``)."""
        if self.unk is None:
            return [self._ids[t] for t in tokens]
        unk_id = self._ids[self.unk]
        return [self._ids.get(t, unk_id) for t in tokens]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Symbols of ``ids``."""
        return [self.symbols[i] for i in ids]
