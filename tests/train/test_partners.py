import numpy as np
import pytest

from spqindex.train import SPQConfig, SPQModel, fit
from spqindex.train.partners import GroupPartners, ListPartners, consensus_groups, spherical_kmeans


def test_spherical_kmeans_finds_separated_directions():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 300)
    directions = np.eye(8)[:3] * 5.0
    x = directions[truth] + rng.normal(0, 0.3, (300, 8))
    x *= rng.uniform(0.5, 3.0, (300, 1))  # lengths must not matter
    labels = spherical_kmeans(x, 3, seed=1)
    assert labels.dtype == np.int64 and labels.shape == (300,)
    pairs = set(zip(truth.tolist(), labels.tolist()))
    assert len(pairs) == 3 and len({b for _, b in pairs}) == 3  # a bijection between clusters and truth


def test_spherical_kmeans_validates():
    with pytest.raises(ValueError, match="k="):
        spherical_kmeans(np.ones((3, 2)), 4)


def test_consensus_groups_is_the_intersection():
    a = np.array([0, 0, 0, 1, 1, 1])
    b = np.array([7, 7, 8, 8, 9, 9])
    g = consensus_groups([a, b])
    assert g.tolist() == [0, 0, 1, 2, 3, 3]
    with pytest.raises(ValueError, match="labelings"):
        consensus_groups([])


def test_group_partners_draw_other_members_uniformly():
    groups = np.array([0, 1, 0, 2, 1, 0, 0])
    partners = GroupPartners(groups, p=1.0, seed=3)
    idx = np.arange(7)
    counts = np.zeros((7, 7), int)
    for epoch in range(3000):
        counts[idx, partners(epoch, idx)] += 1
    for i in idx:
        mates = [j for j in idx if groups[j] == groups[i] and j != i]
        if not mates:  # a singleton keeps itself
            assert counts[i, i] == 3000
            continue
        assert counts[i, i] == 0 and counts[i, mates].sum() == 3000
        share = counts[i, mates] / 3000
        assert np.all(np.abs(share - 1 / len(mates)) < 0.04), (i, share)


def test_group_partners_p_and_determinism():
    groups = np.zeros(10, np.int64)
    idx = np.arange(10)
    assert np.array_equal(GroupPartners(groups, p=0.0)(0, idx), idx)
    half = GroupPartners(groups, p=0.5, seed=1)
    draws = np.stack([half(e, idx) for e in range(400)])
    assert 0.4 < (draws != idx).mean() < 0.6
    assert np.array_equal(half(5, idx), half(5, idx)) and not np.array_equal(half(5, idx), half(6, idx))
    with pytest.raises(ValueError, match="p must"):
        GroupPartners(groups, p=1.5)
    with pytest.raises(ValueError, match="groups must"):
        GroupPartners(np.zeros(4, np.float32))


def _tiny(n=32):
    x = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return x, (lambda: SPQModel(SPQConfig(bits=16, batch_size=16), "cnn28"))


def test_fit_with_self_partners_is_plain_spq_and_other_partners_change_the_loss():
    x, model = _tiny()
    plain = fit(model(), x, epochs=1, progress=False, record_steps=True)
    selves = fit(model(), x, epochs=1, progress=False, record_steps=True, partners=lambda epoch, idx: idx)
    assert plain[0]["step_losses"] == selves[0]["step_losses"]
    shifted = fit(model(), x, epochs=1, progress=False, record_steps=True, partners=lambda e, idx: (idx + 1) % 32)
    assert shifted[0]["step_losses"] != plain[0]["step_losses"]


@pytest.mark.parametrize("bad", [lambda e, idx: idx[:-1], lambda e, idx: idx + 100, lambda e, idx: idx * 0.5])
def test_fit_rejects_bad_partner_ids(bad):
    x, model = _tiny()
    with pytest.raises(ValueError, match="partners"):
        fit(model(), x, epochs=1, progress=False, partners=bad)


def test_list_partners_draw_from_each_images_candidates():
    indptr = np.array([0, 2, 2, 5])  # image 0: {1, 2}; image 1: none; image 2: {0, 1, 0}
    indices = np.array([1, 2, 0, 1, 0])
    partners = ListPartners(indptr, indices, p=1.0, seed=2)
    idx = np.arange(3)
    draws = np.stack([partners(e, idx) for e in range(3000)])
    assert set(draws[:, 0]) == {1, 2} and abs((draws[:, 0] == 1).mean() - 0.5) < 0.04
    assert np.all(draws[:, 1] == 1)  # no candidates: itself
    assert abs((draws[:, 2] == 0).mean() - 2 / 3) < 0.04 and set(draws[:, 2]) == {0, 1}
    assert np.array_equal(ListPartners(indptr, indices, p=0.0)(0, idx), idx)
    with pytest.raises(ValueError, match="indptr"):
        ListPartners(np.array([1, 2]), np.array([0]))
    with pytest.raises(ValueError, match="indices"):
        ListPartners(indptr, np.array([1, 2, 0, 1, 7]))


def test_fit_rejects_a_partners_argument_that_is_not_callable(tmp_path):
    x, model = _tiny()
    with pytest.raises(TypeError, match="partners must be callable"):
        fit(model(), x, epochs=1, progress=False, checkpoint_dir=tmp_path, partners=np.arange(32))
    assert not (tmp_path / "log.jsonl").exists()  # rejected before any file is written
