"""Bach chorales from music21's corpus as piano rolls, parsed once and cached."""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import optuna

from optuna_rnn.tasks.files import cache_dir, require
from optuna_rnn.tasks.music import MusicTask

__all__ = ["JSBChorales", "chorale_ids", "split_chorales"]

_logger = optuna.logging.get_logger(__name__)
_CACHE_VERSION = 1
SPLITS = ("train", "valid", "test")


def chorale_ids() -> list[str]:
    """The distinct chorale files of music21's corpus in Riemenschneider order.

    The 371 numbers name 350 files: 21 harmonisations appear twice (or three times) in
    the Riemenschneider collection, and are kept once so that no chorale is in two
    splits. Cheap: nothing is parsed.
    """
    music21 = require("music21", extra="music")
    chorales = music21.corpus.chorales.Iterator(
        numberingSystem="riemenschneider", returnType="filename"
    )
    return list(dict.fromkeys(chorales))


def split_chorales(
    ids: Sequence[str], *, seed: int, fractions: Sequence[float]
) -> dict[str, list[str]]:
    """Shuffle ``ids`` with ``seed`` and cut them into train, valid and test.

    Valid and test get ``round(n * fraction)`` chorales each, train the rest; each split
    keeps Riemenschneider order.
    """
    order = list(ids)
    random.Random(seed).shuffle(order)
    n_valid, n_test = (round(len(order) * f) for f in fractions[1:])
    parts = {
        "valid": order[:n_valid],
        "test": order[n_valid : n_valid + n_test],
        "train": order[n_valid + n_test :],
    }
    rank = {chorale: i for i, chorale in enumerate(ids)}
    return {split: sorted(parts[split], key=rank.__getitem__) for split in SPLITS}


def _parse(chorale: str, steps_per_quarter: int) -> list[list[int]]:
    """The MIDI pitches sounding at each grid instant ``t / steps_per_quarter``."""
    music21 = require("music21", extra="music")
    score = music21.corpus.parse(chorale)
    steps = math.ceil(Fraction(score.highestTime) * steps_per_quarter)
    sounding: list[set[int]] = [set() for _ in range(steps)]
    for note in score.flatten().notes:
        start = Fraction(note.offset) * steps_per_quarter
        stop = start + Fraction(note.quarterLength) * steps_per_quarter
        for t in range(math.ceil(start), min(math.ceil(stop), steps)):
            sounding[t].update(pitch.midi for pitch in note.pitches)
    return [sorted(pitches) for pitches in sounding]


class JSBChorales(MusicTask):
    """The Bach chorales of music21's corpus (``pip install 'optuna-rnn[music]'``).

    Project conventions, all parameters:

    * resolution: ``steps_per_quarter=1`` samples the pitches sounding at each quarter
      beat, the grid of the standard pickled JSB set (Boulanger-Lewandowski et al., 2012)
      that the music results in the literature use; the chorales are then 24 to 193
      steps long (median 48) with about 4 notes sounding per step;
    * split: the 350 distinct chorales of the 371 Riemenschneider numbers (see
      :func:`chorale_ids`) shuffled with ``seed=0`` and cut 60/20/20 into 210 train, 70
      valid and 70 test chorales, the proportions of the standard set's 229/76/77;
    * each chorale is parsed once (all of them: about 70 s of CPU, less once music21
      has cached its own parses) and cached as JSON in
      ``cache_dir`` (default ``$OPTUNA_RNN_CACHE`` or ``~/.cache/optuna_rnn``);
    * ``limit`` keeps only the first chorales of each split (same split), for quick runs.

    The score is the negative log-likelihood per time step (nats).
    """

    name = "jsb_chorales"

    def __init__(
        self,
        *,
        steps_per_quarter: int = 1,
        seed: int = 0,
        fractions: Sequence[float] = (0.6, 0.2, 0.2),
        cache_dir: str | os.PathLike[str] | None = None,
        limit: int | None = None,
    ) -> None:
        if steps_per_quarter < 1:
            raise ValueError(f"steps_per_quarter must be positive, got {steps_per_quarter}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        self.steps_per_quarter = steps_per_quarter
        self.splits = {
            split: ids[:limit]
            for split, ids in split_chorales(chorale_ids(), seed=seed, fractions=fractions).items()
        }
        self.cache_path = _cache_file(cache_dir, steps_per_quarter)
        pieces = self._load([c for ids in self.splits.values() for c in ids])
        super().__init__(
            {split: [pieces[c] for c in ids] for split, ids in self.splits.items()},
            source="music21 Bach chorales",
        )

    def _load(self, chorales: list[str]) -> dict[str, list[list[int]]]:
        cached = _read_cache(self.cache_path)
        missing = [c for c in chorales if c not in cached]
        if missing:
            _logger.info(f"Parsing {len(missing)} chorales with music21 (cached after).")
            cached.update({c: _parse(c, self.steps_per_quarter) for c in missing})
            _write_cache(self.cache_path, cached)
        return cached


def _cache_file(directory: str | os.PathLike[str] | None, steps_per_quarter: int) -> Path:
    return cache_dir(directory) / f"jsb_chorales_q{steps_per_quarter}.json"


def _read_cache(path: Path) -> dict[str, Any]:
    """The cached chorales; an unreadable cache is reported and rebuilt."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["version"] != _CACHE_VERSION:
            return {}
        return dict(data["chorales"])
    except (ValueError, KeyError, TypeError) as e:
        _logger.warning(f"Ignoring the corrupt chorale cache {path} ({e}); it will be rebuilt.")
        return {}


def _write_cache(path: Path, chorales: dict[str, Any]) -> None:
    """Write atomically, so concurrent workers never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": _CACHE_VERSION, "chorales": chorales}), encoding="utf-8")
    os.replace(tmp, path)
