"""Memorization, Arithmetic and XML: determinism, disjoint splits, which positions count."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from optuna_rnn.tasks import XML, Arithmetic, Memorization
from optuna_rnn.tasks.synthetic import pad_batch
from optuna_rnn.tasks.xml import scored_positions

TASKS = [
    lambda: Memorization(length=3, alphabet=6, eval_size=50),
    lambda: Arithmetic("tiny"),
    lambda: Arithmetic("paper", eval_size=50),
    lambda: XML("tiny"),
    lambda: XML("paper", eval_size=50),
]


def _take(batches, n):
    return [next(batches) for _ in range(n)]


def _same(a, b) -> bool:
    return all(
        torch.equal(x.inputs, y.inputs)
        and torch.equal(x.targets, y.targets)
        and torch.equal(x.mask, y.mask)
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("make", TASKS)
def test_same_seed_same_data(make) -> None:
    first, second = make(), make()
    assert _same(
        _take(first.train_batches(8, seed=3), 3), _take(second.train_batches(8, seed=3), 3)
    )
    assert not _same(
        _take(first.train_batches(8, seed=3), 3), _take(first.train_batches(8, seed=4), 3)
    )
    for split in ("valid", "test"):
        assert _same(list(first.eval_batches(split, 16)), list(second.eval_batches(split, 16)))


@pytest.mark.parametrize("make", TASKS)
def test_eval_batches_repeat_at_each_batch_size(make) -> None:
    task = make()
    sixteen = list(task.eval_batches("valid", 16))
    seven = list(task.eval_batches("valid", 7))
    assert _same(list(task.eval_batches("valid", 16)), sixteen)
    assert [b.inputs.shape[1] for b in seven[:-1]] == [7] * (len(seven) - 1)
    assert (
        sum(b.inputs.shape[1] for b in seven)
        == sum(b.inputs.shape[1] for b in sixteen)
        == task.eval_size
    )
    assert _same(list(make().eval_batches("valid", 7)), seven)


@pytest.mark.parametrize("make", TASKS)
def test_no_evaluation_problem_in_training(make) -> None:
    task = make()

    def problems(batches):
        """Each sequence's text; for arithmetic its question without distractors."""
        texts = {
            "".join(task.vocab[i] for i in torch.cat([b.inputs[:1, j], b.targets[:, j]]).tolist())
            for b in batches
            for j in range(b.inputs.shape[1])
        }
        if isinstance(task, Arithmetic):
            return {re.sub("[a-z]", "", text.split("=")[0]) for text in texts}
        return texts

    train = problems(_take(task.train_batches(32, seed=0), 20))
    valid = problems(task.eval_batches("valid", 32))
    test = problems(task.eval_batches("test", 32))
    assert train and valid and test
    assert not train & valid and not train & test and not valid & test


def test_split_shares_follow_the_fractions() -> None:
    task = Memorization(valid_fraction=0.1, test_fraction=0.05)
    rng = random.Random(0)
    owners = Counter(task.split_of(task.sample_problem(rng)) for _ in range(20_000))
    assert 0.09 < owners["valid"] / 20_000 < 0.11
    assert 0.04 < owners["test"] / 20_000 < 0.06


def test_eval_problems_belong_to_their_split() -> None:
    task = Arithmetic("tiny", distractor_prob=0.0)
    for split in ("valid", "test"):
        for batch in task.eval_batches(split, 100):
            for j in range(batch.inputs.shape[1]):
                text = "".join(task.vocab[i] for i in batch.inputs[:, j].tolist())
                a, op, b = re.match(r"(\d+)([+-])(\d+)=", text).groups()
                assert task.split_of((int(a), op, int(b))) == split


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(1, 30), st.booleans()), min_size=2, max_size=12),
        min_size=1,
        max_size=6,
    )
)
def test_pad_batch_teacher_forces_every_sequence_and_pads_with_uncounted_zeros(sequences) -> None:
    batch = pad_batch([([i for i, _ in seq], [f for _, f in seq]) for seq in sequences])
    steps = max(len(seq) for seq in sequences) - 1
    assert batch.inputs.shape == batch.targets.shape == batch.mask.shape == (steps, len(sequences))
    assert (
        batch.inputs.dtype == batch.targets.dtype == torch.long and batch.mask.dtype == torch.bool
    )
    for b, seq in enumerate(sequences):
        for t in range(steps):
            inside = t + 1 < len(seq)
            assert batch.inputs[t, b] == (seq[t][0] if inside else 0)
            assert batch.targets[t, b] == (seq[t + 1][0] if inside else 0)
            assert batch.mask[t, b] == (seq[t + 1][1] if inside else False)


def test_pad_batch_refuses_flags_that_do_not_match_the_ids() -> None:
    with pytest.raises(ValueError, match="3 ids has 2 scored flags"):
        pad_batch([([1, 2, 3], [False, True])])


def _counted(task, text: str, scored: list[bool]) -> str:
    """The target characters that count, through the real batch path (teacher forcing)."""
    batch = pad_batch([(task._vocabulary.encode(text), scored)])
    return "".join(task.vocab[i] for i in batch.targets[batch.mask].tolist())


def test_arithmetic_scores_answer_and_end_only() -> None:
    task = Arithmetic("tiny", distractor_prob=0.0)
    text, scored = task.render((7, "-", 9), random.Random(0))
    assert text == "7-9=-2."
    assert [c for c, s in zip(text, scored, strict=True) if s] == ["-", "2", "."]
    no_end = Arithmetic("tiny", distractor_prob=0.0, score_end=False)
    assert no_end.render((12, "+", 30), random.Random(0)) == (
        "12+30=42.",
        [False] * 6 + [True, True, False],
    )
    assert _counted(no_end, *no_end.render((12, "+", 30), random.Random(0))) == "42"
    assert _counted(task, text, scored) == "-2."


def test_arithmetic_without_negatives_orders_difference() -> None:
    task = Arithmetic("small", negatives=False)
    rng = random.Random(1)
    assert all(a >= b for a, op, b in (task.sample_problem(rng) for _ in range(500)) if op == "-")


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from(["paper", "small", "tiny"]))
def test_arithmetic_text_is_the_equation_with_distractors(seed: int, preset: str) -> None:
    task = Arithmetic(preset, eval_size=1)
    rng = random.Random(seed)
    problem = task.sample_problem(rng)
    text, scored = task.render(problem, rng)
    question, answer = text.split("=")
    a, op, b = problem
    assert re.sub("[a-z]", "", question) == f"{a}{op}{b}"
    assert answer == f"{a + b if op == '+' else a - b}."
    assert max(len(str(a)), len(str(b))) <= task.max_digits
    assert sum(scored) == len(answer) and all(scored[-len(answer) :])


def test_xml_scores_closing_tag_characters() -> None:
    text = "<ab><c></c></ab><d"
    closing = scored_positions(text, "closing")
    assert [i for i, s in enumerate(closing) if s] == [9, 10, 13, 14, 15]
    assert [i for i, s in enumerate(scored_positions(text, "name")) if s] == [9, 13, 14]
    assert _counted(XML("tiny"), text, closing) == "c>ab>"


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 4), st.integers(1, 5))
def test_xml_documents_nest_within_the_depth_limit(seed: int, depth: int, tag_len: int) -> None:
    task = XML("paper", max_depth=depth, max_tag_len=tag_len, length=80, eval_size=1)
    text = task.sample_problem(random.Random(seed))
    assert len(text) == 80
    stack: list[str] = []
    for closing, name in re.findall(r"<(/?)([a-z]+)>", text):
        assert 1 <= len(name) <= tag_len
        if closing:
            assert stack.pop() == name
        else:
            stack.append(name)
            assert len(stack) <= depth


def test_memorization_scores_the_reproduction() -> None:
    task = Memorization(length=4, alphabet=5)
    text, scored = task.render("abca", random.Random(0))
    assert text == "abca=abca"
    assert "".join(c for c, s in zip(text, scored, strict=True) if s) == "abca"
    batch = next(task.train_batches(7, seed=0))
    assert batch.inputs.shape == (8, 7) and batch.mask.sum() == 4 * 7
    assert task.input_size == task.output_size == 6


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        Arithmetic("huge")
    with pytest.raises(ValueError, match="distractor_prob"):
        Arithmetic(distractor_prob=1.0)
    with pytest.raises(ValueError, match="max_depth"):
        XML(max_depth=0)
    with pytest.raises(ValueError, match="alphabet"):
        Memorization(alphabet=27)
    with pytest.raises(ValueError, match="too small"):
        list(
            Memorization(
                length=1, alphabet=2, valid_fraction=0.01, test_fraction=0.01
            ).eval_batches("valid", 4)
        )
