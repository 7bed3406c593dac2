"""Piano-roll tasks: the restricted unpickler, PickledMusic, the JSB split and cache."""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import pytest
import torch

from optuna_rnn.tasks import DataError, JSBChorales, PickledMusic
from optuna_rnn.tasks.jsb import chorale_ids, split_chorales
from optuna_rnn.tasks.music import piano_roll

PIECES = {
    "train": [[[60, 64, 67], [62], []], [[21.0], [108]]],
    "valid": [[[60], [60, 72]]],
    "test": [[(48, 55), (50,)]],
}


class _Payload:
    """Unpickling this would create ``marker``: the restricted loader must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickled_music_loads_plain_data(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "nottingham.pickle"
    path.write_bytes(pickle.dumps(PIECES, protocol=protocol))
    task = PickledMusic(path)
    assert task.name == "nottingham"
    assert [len(task.rolls[s]) for s in ("train", "valid", "test")] == [2, 1, 1]
    roll = task.rolls["train"][0]
    assert roll.shape == (3, 88)
    assert roll[0].nonzero().flatten().tolist() == [39, 43, 46]
    assert task.rolls["train"][1][:, [0, 87]].tolist() == [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_chords_as_sets_load_from_python_2_pickles_too(tmp_path: Path, protocol: int) -> None:
    # Protocols 0-2 name the set as Python 2 did, __builtin__.set (as the music sets do).
    path = tmp_path / "sets.pickle"
    pieces = {
        split: [[set(chord) for chord in piece] for piece in rolls]
        for split, rolls in PIECES.items()
    }
    path.write_bytes(pickle.dumps(pieces, protocol=protocol))
    assert (b"__builtin__" in path.read_bytes()) == (protocol < 3)
    assert PickledMusic(path).rolls["train"][0][0].nonzero().flatten().tolist() == [39, 43, 46]


def test_python_2_names_of_code_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil2.pickle"
    path.write_bytes(b"\x80\x02c__builtin__\neval\nq\x00U\x0bprint('no')\x85R.")
    with pytest.raises(DataError, match=r"refused to load __builtin__\.eval"):
        PickledMusic(path)


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps({"train": [_Payload(marker)], "valid": [], "test": []}))
    with pytest.raises(DataError, match=r"evil\.pickle.*refused to load posix\.mkdir"):
        PickledMusic(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "is empty"),
        (b"\x80\x04garbage", "not a plain-data pickle"),
        (pickle.dumps([1, 2]), "not a dict"),
        (
            pickle.dumps({"train": PIECES["train"], "valid": PIECES["valid"]}),
            "'test' split is missing",
        ),
        (pickle.dumps({**PIECES, "test": [[[20]]]}), "pitch 20 at step 0"),
    ],
)
def test_bad_music_files_are_named(tmp_path: Path, payload: bytes, message: str) -> None:
    path = tmp_path / "music.pickle"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=message) as info:
        PickledMusic(path)
    assert "music.pickle" in str(info.value)


def test_music_batches_predict_every_step_from_the_previous(tmp_path: Path) -> None:
    path = tmp_path / "m.pickle"
    path.write_bytes(pickle.dumps(PIECES))
    task = PickledMusic(path)
    batch = next(iter(task.eval_batches("valid", 4)))
    roll = piano_roll(PIECES["valid"][0], source="valid")
    assert torch.equal(batch.targets[:, 0], roll)
    assert torch.equal(batch.inputs[1:, 0], roll[:-1]) and not batch.inputs[0].any()
    first = [next(task.train_batches(1, seed=5)).targets for _ in range(2)]
    again = [next(task.train_batches(1, seed=5)).targets for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    # Zero logits: every key is a coin flip, 88 log 2 nats per step.
    result = task.evaluate(lambda b, state: (torch.zeros_like(b.targets), state), "valid", 4)
    assert result["score"] == pytest.approx(88 * math.log(2))


def test_jsb_split_sizes_are_fixed_and_disjoint() -> None:
    ids = chorale_ids()
    assert len(ids) == 350 and len(set(ids)) == 350
    splits = split_chorales(ids, seed=0, fractions=(0.6, 0.2, 0.2))
    assert {s: len(v) for s, v in splits.items()} == {"train": 210, "valid": 70, "test": 70}
    assert set().union(*splits.values()) == set(ids)
    assert splits == split_chorales(ids, seed=0, fractions=(0.6, 0.2, 0.2))
    assert splits != split_chorales(ids, seed=1, fractions=(0.6, 0.2, 0.2))


def test_jsb_limited_parse_is_cached(tmp_path: Path) -> None:
    task = JSBChorales(cache_dir=tmp_path, limit=1)
    assert [len(task.rolls[s]) for s in ("train", "valid", "test")] == [1, 1, 1]
    cache = json.loads(task.cache_path.read_text())
    assert sorted(cache["chorales"]) == sorted(c for ids in task.splits.values() for c in ids)
    roll = task.rolls["train"][0]
    assert 20 <= len(roll) <= 300 and roll.sum(dim=1).max() <= 8 and roll.sum(dim=1).mean() >= 3
    again = JSBChorales(cache_dir=tmp_path, limit=1)
    assert all(
        torch.equal(a, b)
        for s in task.rolls
        for a, b in zip(task.rolls[s], again.rolls[s], strict=True)
    )
    task.cache_path.write_text("{not json")
    rebuilt = JSBChorales(cache_dir=tmp_path, limit=1)
    assert torch.equal(rebuilt.rolls["test"][0], task.rolls["test"][0])
    assert json.loads(task.cache_path.read_text())["chorales"] == cache["chorales"]


@pytest.mark.slow
def test_jsb_full_parse(tmp_path: Path) -> None:
    task = JSBChorales(cache_dir=tmp_path)
    assert [len(task.rolls[s]) for s in ("train", "valid", "test")] == [210, 70, 70]
    lengths = [len(r) for rolls in task.rolls.values() for r in rolls]
    assert min(lengths) >= 8 and max(lengths) <= 400


def test_a_music_task_made_from_pieces_has_a_name_and_a_repr() -> None:
    """A ``MusicTask`` given its pieces directly (no subclass) names itself."""
    from optuna_rnn.tasks.music import MusicTask

    task = MusicTask(
        {split: [[[60], [64, 67]]] for split in ("train", "valid", "test")}, source="x"
    )
    assert task.name == "music" and repr(task) == "MusicTask(name='music')"
