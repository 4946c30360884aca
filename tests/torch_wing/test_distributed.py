"""The distributed weighted sampler: each rank's share of the one-process draw (no Ray)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the sampler needs the torch extra")

from imgbalance.torch.distributed import DistributedWeightedSampler, RankGroup  # noqa: E402
from imgbalance.torch.samplers import sample_weights  # noqa: E402

LABELS = np.array([0] * 70 + [1] * 20 + [2] * 10)


def _samplers(world: int, **kw: object) -> list[DistributedWeightedSampler]:
    n = len(LABELS)
    return [DistributedWeightedSampler(n, 16, rank=r, world_size=world, **kw) for r in range(world)]  # type: ignore[arg-type]


def _flat(batches: list[torch.Tensor]) -> list[int]:
    return [int(i) for b in batches for i in b]


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_ranks_shares_make_up_the_one_process_draw(world: int, weighted: bool) -> None:
    kw = {"seed": 7, "weights": sample_weights(LABELS, "class-balanced") if weighted else None}
    (one,) = _samplers(1, **kw)
    ranks = _samplers(world, **kw)
    for epoch in range(3):
        single = one.epoch(epoch)
        glob = ranks[0].global_epoch(epoch)
        # the one-process draw; a last batch too small for two images a rank is left out
        # (100 images, batch 16: the last batch of 4 is kept for 2 ranks, not for 3 or 4)
        assert [b.tolist() for b in glob] == [b.tolist() for b in single[: len(glob)]]
        assert len(single) - len(glob) == (0 if world == 2 else 1)
        shares = [s.epoch(epoch) for s in ranks]
        # the same steps on every rank, one per global batch
        assert {len(s) for s in shares} == {len(glob)} == {ranks[0].batches_per_epoch}
        for step, batch in enumerate(glob):
            parts = [s[step] for s in shares]
            assert sorted(_flat(parts)) == sorted(batch.tolist())
            assert max(map(len, parts)) - min(map(len, parts)) <= 1 and min(map(len, parts)) >= 2
        union = Counter(i for s in shares for i in _flat(s))
        assert union == Counter(_flat(glob))  # as a multiset: the same images and class mix
        assert Counter(LABELS[list(union.elements())].tolist()) == Counter(
            LABELS[_flat(glob)].tolist()
        )


def test_without_replacement_no_index_is_drawn_twice_across_ranks() -> None:
    for kw in ({}, {"weights": sample_weights(LABELS, "sqrt"), "replacement": False}):
        ranks = _samplers(2, seed=3, **kw)
        drawn = [i for s in ranks for i in _flat(s.epoch(0))]
        # 100 images, batch 16: six full batches and a last one of 4, two a rank (kept)
        assert len(drawn) == len(set(drawn)) == len(LABELS)


def test_a_class_balanced_draw_is_balanced_over_the_ranks() -> None:
    w = sample_weights(np.array([0] * 900 + [1] * 100), "class-balanced")
    ranks = [DistributedWeightedSampler(1000, 32, weights=w, seed=1, rank=r, world_size=2)
             for r in range(2)]  # fmt: skip
    drawn = np.array([i for s in ranks for i in _flat(s.epoch(0))])
    assert 0.45 < float((drawn >= 900).mean()) < 0.55


def test_seeded_deterministic_and_new_each_epoch() -> None:
    a, b = _samplers(2, seed=5)[1], _samplers(2, seed=5)[1]
    assert _flat(a.epoch(2)) == _flat(b.epoch(2))
    assert _flat(a.epoch(0)) != _flat(a.epoch(1))
    assert _flat(a.epoch(0)) != _flat(_samplers(2, seed=6)[1].epoch(0))
    # iterating is epoch after epoch of the same draw (what the training loop consumes)
    stream = iter(a)
    per_epoch = a.batches_per_epoch
    for epoch in range(3):
        got = [next(stream) for _ in range(per_epoch)]
        assert _flat(got) == _flat(a.epoch(epoch))


def test_one_process_is_the_training_loops_draw() -> None:
    """World size 1 draws what the loop always drew: a randperm or a multinomial from one
    generator seeded with the run's seed, pass after pass, a last batch of one dropped."""
    n, bs = 33, 8  # 33 = 4 x 8 + 1: the last batch of one is dropped
    g = torch.Generator().manual_seed(0)
    expected = []
    for _ in range(2):
        order = torch.randperm(n, generator=g)
        expected += [order[s : s + bs] for s in range(0, n, bs) if len(order[s : s + bs]) >= 2]
    sampler = DistributedWeightedSampler(n, bs, seed=0)
    assert sampler.batches_per_epoch == 4
    stream = iter(sampler)
    assert all(torch.equal(next(stream), e) for e in expected)


def test_a_short_last_batch_is_dropped_on_every_rank_alike() -> None:
    # 21 images, batch 8: the last global batch of 5 leaves a rank of 3 workers with one image
    ranks = [DistributedWeightedSampler(21, 8, seed=0, rank=r, world_size=3) for r in range(3)]
    assert {len(s.epoch(0)) for s in ranks} == {2} == {ranks[0].batches_per_epoch}
    two = [DistributedWeightedSampler(21, 8, seed=0, rank=r, world_size=2) for r in range(2)]
    assert {len(s.epoch(0)) for s in two} == {3}  # 5 = 3 + 2 images: kept


def test_impossible_shares_are_refused() -> None:
    with pytest.raises(ValueError, match="two a worker"):
        DistributedWeightedSampler(100, 6, world_size=4)
    with pytest.raises(ValueError, match="two a worker"):
        DistributedWeightedSampler(3, 8, world_size=2)
    with pytest.raises(ValueError, match="not one of"):
        DistributedWeightedSampler(10, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="weights for"):
        DistributedWeightedSampler(10, 4, weights=np.ones(9))


def test_one_process_group_is_the_identity() -> None:
    group = RankGroup()
    model = torch.nn.Linear(2, 2)
    assert group.main and group.wrap(model) is model
    assert group.sum([1.5, 2.0]) == [1.5, 2.0]
    assert group.agree(False) is False and group.from_main((True, 3)) == (True, 3)
