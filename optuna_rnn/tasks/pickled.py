"""The standard pickled polyphonic music sets, from a file the user brings."""

from __future__ import annotations

import os
from pathlib import Path

from optuna_rnn.tasks.files import DataError
from optuna_rnn.tasks.music import MusicTask
from optuna_rnn.tasks.safe_pickle import load_plain_pickle

__all__ = ["PickledMusic"]


class PickledMusic(MusicTask):
    """Nottingham, MuseData, Piano-midi.de or JSB from their usual pickle.

    The file (Boulanger-Lewandowski et al., 2012) holds a dict with ``"train"``,
    ``"valid"`` and ``"test"``, each a list of pieces, each a list of time steps, each
    the MIDI pitches sounding. It is loaded with a restricted unpickler that admits only
    plain containers and numbers, so a file carrying code is refused without running it.

    Args:
        path: the pickle file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        data = load_plain_pickle(path)
        if not isinstance(data, dict):
            raise DataError(f"{path} holds a {type(data).__name__}, not a dict of splits")
        self.path = Path(path)
        self.name = self.path.stem
        super().__init__(data, source=str(path))
