"""The synthetic tasks' draws are ``random.Random``'s own: same stream, same batches."""

from __future__ import annotations

import copy
import hashlib
import itertools
import pickle
import random
import string

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from optuna_rnn import tasks
from optuna_rnn.tasks.draws import below, word
from optuna_rnn.tasks.synthetic import _fraction_bound, pad_batch


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 10**12), count=st.integers(1, 30))
def test_below_draws_what_randrange_draws_and_leaves_the_same_state(
    seed: int, n: int, count: int
) -> None:
    ours, theirs = random.Random(seed), random.Random(seed)
    assert [below(ours, n) for _ in range(count)] == [theirs.randrange(n) for _ in range(count)]
    assert ours.getstate() == theirs.getstate()


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    symbols=st.one_of(
        st.text(string.printable, min_size=1),
        st.text(st.characters(max_codepoint=300), min_size=1),  # NUL, Latin-1 and beyond
        st.just("".join(map(chr, range(1, 256)))),  # 255 symbols: 8 bits a draw
        st.just("".join(map(chr, range(256)))),  # 256: 9 bits, one draw at a time
    ),
    length=st.integers(0, 80),  # long words are drawn a round of 32-bit draws at a time
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


def _pinned(task: tasks.SyntheticTask) -> str:
    """The bytes, shapes, dtypes and strides of training, validation and test batches."""
    h = hashlib.sha256()
    batches = [
        *itertools.islice(task.train_batches(7, seed=11), 12),
        *task.eval_batches("valid", 9),
        *task.eval_batches("test", 32),
    ]
    for b in batches:
        for x in (b.inputs, b.targets, b.mask):
            h.update(str((tuple(x.shape), x.dtype, x.stride())).encode())
            h.update(x.numpy().tobytes())
    return h.hexdigest()[:16]


# Digests of main at 242ef3f, before the draws were batched (presets, padding, splits).
@pytest.mark.parametrize(
    ("make", "digest"),
    [
        (
            lambda: tasks.Memorization(length=3, alphabet=6, eval_size=50, seed=2),
            "f9f6dde5019f589c",
        ),
        (
            lambda: tasks.Memorization(
                length=7, eval_size=30, valid_fraction=0.3, test_fraction=0.2
            ),
            "b8ddbe2836c62a51",
        ),
        (lambda: tasks.Arithmetic("tiny", seed=5), "607a75440ca6aac2"),
        (lambda: tasks.Arithmetic("paper", eval_size=40), "3c60f4f21c4195eb"),
        (
            lambda: tasks.Arithmetic("small", eval_size=40, score_end=False, negatives=False),
            "6168dfd4dd13d73a",
        ),
        (lambda: tasks.XML("tiny", score_span="name"), "f018b01379df85da"),
        (lambda: tasks.XML("paper", eval_size=40, seed=3), "6e52f6031316f861"),
    ],
)
def test_every_split_and_layout_is_what_it_was(make, digest: str) -> None:
    assert _pinned(make()) == digest


MAKERS = [
    lambda: tasks.Memorization(),
    lambda: tasks.Memorization(length=2, alphabet=3, valid_fraction=0.3, test_fraction=0.3),
    lambda: tasks.Arithmetic("small"),
    lambda: tasks.Arithmetic("paper"),
    lambda: tasks.XML("small"),
    lambda: tasks.XML("tiny"),
]


def _one_by_one(task: tasks.SyntheticTask, split: str, rng: random.Random, count: int):
    """The plain loop: a problem at a time, its split by the keyed hash, rendered."""
    found = []
    while len(found) < count:
        problem = task.sample_problem(rng)
        if task.split_of(problem) == split:
            found.append(task.render(problem, rng))
    return found


@settings(max_examples=40, deadline=None)
@given(
    which=st.integers(0, len(MAKERS) - 1),
    seed=st.integers(0, 2**32),
    split=st.sampled_from(["train", "valid", "test"]),
    count=st.integers(1, 40),
)
def test_examples_draw_what_one_problem_at_a_time_draws(which, seed, split, count) -> None:
    task = MAKERS[which]()
    ours, theirs = random.Random(seed), random.Random(seed)
    assert task.examples(split, ours, count) == _one_by_one(task, split, theirs, count)
    assert ours.getstate() == theirs.getstate()
    assert task.example(split, ours) == _one_by_one(task, split, theirs, 1)[0]
    assert ours.getstate() == theirs.getstate()


def _reference_split(task: tasks.SyntheticTask, problem) -> str:
    digest = hashlib.blake2b(
        repr(problem).encode(), digest_size=8, key=f"{task.name}:{task.seed}".encode()
    ).digest()
    u = int.from_bytes(digest, "big") / 2**64
    if u < task.valid_fraction:
        return "valid"
    return "test" if u < task.valid_fraction + task.test_fraction else "train"


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**40),
    fractions=st.tuples(st.floats(1e-9, 0.5), st.floats(1e-9, 0.49)),
    problems=st.lists(
        st.one_of(
            st.text(max_size=20), st.tuples(st.integers(), st.sampled_from("+-"), st.integers())
        ),
        max_size=30,
    ),
)
def test_split_of_is_the_keyed_hash_of_the_repr(seed, fractions, problems) -> None:
    task = tasks.Memorization(seed=seed, valid_fraction=fractions[0], test_fraction=fractions[1])
    for problem in problems:
        assert task.split_of(problem) == _reference_split(task, problem)


@settings(max_examples=200, deadline=None)
@given(
    fraction=st.floats(0, 1, exclude_min=True, exclude_max=True),
    x=st.integers(0, 2**64 - 1),
)
def test_a_digest_is_below_the_bound_iff_it_reads_below_the_fraction(fraction, x) -> None:
    bound = _fraction_bound(fraction)
    first = int.from_bytes(bound, "big")
    for value in {x, max(first - 1, 0), first, min(first + 1, 2**64 - 1)}:
        digest = value.to_bytes(8, "big")
        assert (digest < bound) == (value / 2**64 < fraction)


def test_remembered_splits_are_the_hashed_ones() -> None:
    task = tasks.Arithmetic("small")
    rng = random.Random(0)
    task.examples("train", rng, 500)
    assert task._splits is not None and len(task._splits) > 100
    for problem, split in task._splits.items():
        assert split == _reference_split(task, problem)
    assert tasks.Memorization()._splits is None  # 26**5 problems: nothing to gain


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.lists(
            st.tuples(st.sampled_from("0123456789+-=.ab"), st.booleans()), min_size=1, max_size=14
        ),
        min_size=1,
        max_size=8,
    )
)
def test_a_batch_is_pad_batch_of_the_encoded_examples(rows) -> None:
    task = tasks.Arithmetic("tiny")
    examples = [("".join(c for c, _ in row), [f for _, f in row]) for row in rows]
    ours = task._batch(examples)
    theirs = pad_batch([(task._vocabulary.encode(text), scored) for text, scored in examples])
    for field in ("inputs", "targets", "mask"):
        a, b = getattr(ours, field), getattr(theirs, field)
        assert (a.shape, a.dtype, a.stride()) == (b.shape, b.dtype, b.stride())
        assert torch.equal(a, b)


def test_a_batch_refuses_characters_outside_the_vocabulary_and_uneven_flags() -> None:
    task = tasks.Arithmetic("tiny")
    with pytest.raises(ValueError, match=r"outside its vocabulary: \['#', 'é'\]"):
        task._batch([("1+1=2.", [False] * 6), ("1#é", [False] * 3)])
    with pytest.raises(ValueError, match="outside its vocabulary"):
        task._batch([("1+€", [False] * 3)])
    with pytest.raises(ValueError, match="a text of 3 characters has 2 scored flags"):
        task._batch([("1+1", [False, True])])


def test_synthetic_symbols_must_be_bytes() -> None:
    class Wide(tasks.Memorization):
        def __init__(self, symbols: str) -> None:
            self.letters, self.length = symbols, 2
            tasks.SyntheticTask.__init__(
                self, symbols=symbols, eval_size=1, seed=0, valid_fraction=0.1, test_fraction=0.1
            )

    with pytest.raises(ValueError, match="at most 255 Latin-1 characters"):
        Wide("ab€")
    with pytest.raises(ValueError, match="at most 255 Latin-1 characters"):
        Wide("".join(map(chr, range(256))))


@pytest.mark.parametrize("make", [lambda: tasks.Arithmetic("small"), lambda: tasks.XML()])
def test_a_task_that_has_drawn_still_pickles_and_copies(make) -> None:
    task = make()
    next(task.train_batches(8, seed=0))
    for twin in (pickle.loads(pickle.dumps(task)), copy.deepcopy(task)):
        assert torch.equal(
            next(twin.train_batches(8, seed=1)).inputs, next(task.train_batches(8, seed=1)).inputs
        )


class _TwoSums(tasks.Arithmetic):
    """Arithmetic with only ``1+1`` and ``1-1``, both training problems: no validation."""

    def sample_problem(self, rng: random.Random) -> tuple[int, str, int]:
        return 1, "+-"[below(rng, 2)], 1


@pytest.mark.parametrize(
    "make", [lambda: tasks.Memorization(length=1, alphabet=2), lambda: _TwoSums("tiny")]
)
def test_a_split_without_problems_is_given_up_with_a_clear_error(make) -> None:
    task = make()
    task.max_rejections = 500
    assert task.examples("train", random.Random(0), 3)
    with pytest.raises(ValueError, match="no valid problem in 500 draws"):
        task.examples("valid", random.Random(0), 3)
