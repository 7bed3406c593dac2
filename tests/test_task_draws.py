"""The synthetic tasks' draws are ``random.Random``'s own: same stream, same batches."""

from __future__ import annotations

import hashlib
import itertools
import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optuna_rnn import tasks
from optuna_rnn.tasks.draws import below, word


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 10**12), count=st.integers(1, 30))
def test_below_draws_what_randrange_draws_and_leaves_the_same_state(
    seed: int, n: int, count: int
) -> None:
    ours, theirs = random.Random(seed), random.Random(seed)
    assert [below(ours, n) for _ in range(count)] == [theirs.randrange(n) for _ in range(count)]
    assert ours.getstate() == theirs.getstate()


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    symbols=st.text(string.printable, min_size=1),
    length=st.integers(0, 12),
)
def test_word_draws_what_choice_draws(seed: int, symbols: str, length: int) -> None:
    ours, theirs = random.Random(seed), random.Random(seed)
    assert word(ours, symbols, length) == "".join(theirs.choice(symbols) for _ in range(length))
    assert ours.getstate() == theirs.getstate()


def _digest(task: tasks.SyntheticTask) -> str:
    h = hashlib.sha256()
    batches = itertools.islice(task.train_batches(20, seed=3), 10)
    for b in [*batches, next(task.eval_batches("valid", 20))]:
        for x in (b.inputs, b.targets, b.mask):
            h.update(x.numpy().tobytes())
    return h.hexdigest()[:16]


# The first batches each task drew before its draws went through ``draws``.
@pytest.mark.parametrize(
    ("make", "digest"),
    [
        (lambda: tasks.Memorization(), "89ad2d01b49758bc"),
        (lambda: tasks.Arithmetic(preset="small"), "f81dd011d5a2198a"),
        (lambda: tasks.XML(preset="small"), "302c7c912825edaf"),
        (lambda: tasks.XML(preset="paper"), "b602994510962c53"),
    ],
)
def test_a_seed_gives_the_batches_it_gave_before(make, digest: str) -> None:
    assert _digest(make()) == digest
