"""FedMRI's contrastive term: its per-round diagnostics, the 1/K bound and its plateau, our variants."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest
import torch
import yaml

from fl.algorithms.fedmri.term import (
    ContrastiveL1,
    contrastive_l2,
    contrastive_moon,
    contrastive_stats,
    contrastive_step,
    encoder_spread,
    spread_per_weight,
)
from fl.reporter import Reporter
from tests.conftest import tiny_config_dict

SHAPES = [(3, 2, 3, 3), (3,), (5, 3)]


def encoders(count: int, seed: int, scale: float = 1.0) -> list[list[torch.Tensor]]:
    """``count`` random encoders of :data:`SHAPES` in float64."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=g, dtype=torch.float64) * scale for s in SHAPES] for _ in range(count)]


def flat(tensors) -> np.ndarray:
    return np.concatenate([t.detach().numpy().reshape(-1) for t in tensors])


def mean_of(group: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    return [torch.stack(ts).mean(dim=0) for ts in zip(*group)]


# -- the diagnostics ---------------------------------------------------------------------------


def test_stats_match_a_direct_computation():
    theta, anchor, *negatives = encoders(5, seed=1)
    stats = contrastive_stats(theta, anchor, negatives)
    x, g = flat(theta), flat(anchor)
    n = np.stack([flat(e) for e in negatives])
    pos, neg = sum(abs(a - b) for a, b in zip(x, g)), sum(abs(a - b) for row in n for a, b in zip(x, row))
    outside = np.mean([(xi > col.max()) or (xi < col.min()) for xi, col in zip(x, n.T)])
    spread = np.mean([np.mean(np.abs(col - col.mean())) for col in n.T])
    assert stats["pos"] == pytest.approx(pos, rel=1e-12)
    assert stats["neg"] == pytest.approx(neg, rel=1e-12)
    assert stats["l_con"] == pytest.approx(pos / neg, rel=1e-12)
    assert stats["outside"] == pytest.approx(outside)
    assert stats["dist"] == pytest.approx(pos / x.size, rel=1e-12)
    assert stats["spread"] == pytest.approx(spread, rel=1e-12) == encoder_spread(negatives)
    # the training term sees the same ratio
    assert float(ContrastiveL1(anchor, negatives)([t.float() for t in theta])) == pytest.approx(
        pos / neg, rel=1e-5
    )


def test_logged_parts_add_up_to_the_optimised_loss_and_diagnostics_are_logged(tmp_path, capsys):
    import train

    data = tiny_config_dict(tmp_path, sites=2, rounds=2)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    assert train.main(["--config", str(path)]) == 0
    run = tmp_path / "runs" / "tiny"
    rows = [r for r in csv.DictReader(open(run / "metrics.csv")) if r["split"] == "train"]
    assert len(rows) == 4
    for row in rows:
        loss, rec = float(row["loss"]), float(row["loss_rec"])
        if row["round"] == "1":  # no term in round 1
            assert row["penalty"] == "" and row["con_pos"] == ""
            assert rec == pytest.approx(loss, rel=1e-5)
            continue
        penalty = float(row["penalty"])
        assert penalty > 0 and rec + penalty == pytest.approx(loss, rel=1e-5)
        assert float(row["con_l_con"]) <= 1 / 2 + 1e-9  # K = 2 negatives, uniform weights
        assert float(row["con_pos"]) / float(row["con_neg"]) == pytest.approx(
            float(row["con_l_con"]), rel=1e-4
        )
        assert 0.0 <= float(row["con_outside"]) <= 1.0 and float(row["con_spread"]) > 0
    assert (run / "figures" / "fedmri_term.png").stat().st_size > 0


# -- the 1/K bound and the plateau ---------------------------------------------------------------


@pytest.mark.parametrize("seed, k", list(itertools.product(range(20), (2, 3, 4))))
def test_ratio_never_exceeds_one_over_k_with_uniform_weights(seed, k):
    negatives = encoders(k, seed, scale=1e-3)
    anchor = mean_of(negatives)
    g = torch.Generator().manual_seed(1000 + seed)
    scale = float(torch.rand(1, generator=g)) * 10 ** int(torch.randint(-6, 1, (1,), generator=g))
    theta = [a + scale * torch.randn(a.shape, generator=g, dtype=torch.float64) for a in anchor]
    value = float(ContrastiveL1(anchor, negatives)(theta))
    assert value <= 1 / k + 1e-12


def test_gradient_is_zero_where_every_weight_is_outside_the_negatives_range():
    negatives = encoders(4, seed=3)
    anchor = mean_of(negatives)
    low, high = (
        [torch.stack(ts).amin(0) for ts in zip(*negatives)],
        [torch.stack(ts).amax(0) for ts in zip(*negatives)],
    )
    g = torch.Generator().manual_seed(4)
    theta = []
    for lo, hi in zip(low, high):
        above = torch.rand(lo.shape, generator=g) < 0.5
        gap = torch.rand(lo.shape, generator=g, dtype=torch.float64) + 0.01
        theta.append(torch.where(above, hi + gap, lo - gap).requires_grad_(True))
    value = ContrastiveL1(anchor, negatives)(theta)
    assert float(value.detach()) == pytest.approx(1 / 4, rel=1e-12)  # on the cap
    grads = torch.autograd.grad(value, theta)
    assert max(float(gr.abs().max()) for gr in grads) < 1e-15
    assert contrastive_stats(theta, anchor, negatives)["outside"] == 1.0
    # one weight back inside the range: the gradient is no longer zero
    inside = [t.detach().clone() for t in theta]
    inside[1][0] = anchor[1][0]
    inside = [t.requires_grad_(True) for t in inside]
    grads = torch.autograd.grad(ContrastiveL1(anchor, negatives)(inside), inside)
    assert max(float(gr.abs().max()) for gr in grads) > 0


# -- the variants ------------------------------------------------------------------------------


def _live(seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor], list[list[torch.Tensor]]]:
    theta, anchor, *negatives = encoders(5, seed)
    return [t.clone().requires_grad_(True) for t in theta], anchor, negatives


def _direct_grad(fn, theta) -> tuple[float, np.ndarray]:
    """Value and gradient of ``fn`` of the flattened encoder, by autograd on one flat tensor."""
    x = torch.tensor(flat(theta), dtype=torch.float64, requires_grad=True)
    value = fn(x)
    (grad,) = torch.autograd.grad(value, x)
    return float(value.detach()), grad.numpy()


def test_l2_variant_matches_direct_autograd():
    theta, anchor, negatives = _live(5)
    g, n = torch.tensor(flat(anchor)), [torch.tensor(flat(e)) for e in negatives]
    value = contrastive_l2(theta, anchor, negatives)
    grad = flat(torch.autograd.grad(value, theta))
    expected, expected_grad = _direct_grad(
        lambda x: torch.dot(x - g, x - g) / sum(torch.dot(x - r, x - r) for r in n), theta
    )
    assert float(value.detach()) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-14)


def test_moon_variant_matches_direct_autograd_and_is_bounded():
    theta, anchor, negatives = _live(6)
    g, n = torch.tensor(flat(anchor)), [torch.tensor(flat(e)) for e in negatives]
    tau, scale = 0.5, 0.3
    value = contrastive_moon(theta, anchor, negatives, tau, scale)
    grad = flat(torch.autograd.grad(value, theta))

    def direct(x):
        d = lambda r: (x - r).abs().mean() / scale  # noqa: E731
        p = torch.exp(-d(g) / tau)
        return -torch.log(p / (p + sum(torch.exp(-d(r) / tau) for r in n)))

    expected, expected_grad = _direct_grad(direct, theta)
    assert float(value.detach()) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-14)
    # bounded (triangle inequality): pos - neg_j <= |g - theta_j|, whatever theta
    g0 = mean_of(negatives)
    cap = np.log(1 + sum(np.exp(float(np.abs(flat(g0) - flat(e)).mean()) / scale / tau) for e in negatives))
    for shift in (0.0, 1.0, 1e3):
        far = [a + shift * torch.randn(a.shape, dtype=torch.float64) for a in g0]
        assert 0 < float(contrastive_moon(far, g0, negatives, tau, scale)) <= cap + 1e-9


def test_decoupled_step_is_the_paper_gradient_times_the_rate():
    theta, anchor, negatives = _live(7)
    before = flat(theta)
    g, n = torch.tensor(flat(anchor)), [torch.tensor(flat(e)) for e in negatives]
    _, expected_grad = _direct_grad(
        lambda x: (x - g).abs().sum() / sum((x - r).abs().sum() for r in n), theta
    )
    value = ContrastiveL1(anchor, negatives)(theta)
    grads = torch.autograd.grad(value, theta)
    np.testing.assert_allclose(flat(grads), expected_grad, rtol=1e-10, atol=1e-15)
    contrastive_step(theta, grads, rate=0.7)
    np.testing.assert_allclose(flat(theta), before - 0.7 * expected_grad, rtol=1e-12)


def test_clipped_step_stays_within_the_spread_and_never_crosses_the_anchor():
    theta, anchor, negatives = _live(8)
    limits = spread_per_weight(negatives)
    before, g = flat(theta), flat(anchor)
    value = ContrastiveL1(anchor, negatives)(theta)
    grads = torch.autograd.grad(value, theta)
    rate = 1e3  # large enough that every unclipped step would cross or exceed
    raw = -rate * flat(grads)
    contrastive_step(theta, grads, rate, anchor, limits)
    after, bound = flat(theta), flat(limits)
    step = after - before
    # direct: clip to the spread, then a step toward the anchor stops at the anchor
    expected = np.clip(raw, -bound, bound)
    toward = np.sign(expected) == np.sign(g - before)
    expected = np.where(toward & (np.abs(expected) > np.abs(g - before)), g - before, expected)
    np.testing.assert_allclose(step, expected, rtol=1e-12, atol=1e-15)
    assert np.all(np.abs(step) <= bound + 1e-15)
    # never past the anchor (a step that stops at it lands within rounding of it)
    assert np.all((after - g) * np.sign(before - g) >= -1e-15 * np.abs(g).max())
    assert np.any(np.abs(after - g) <= 1e-15 * np.abs(g).max())  # some steps did stop at the anchor


# -- the guard rail ----------------------------------------------------------------------------


def test_round_line_notes_the_plateau_once(tmp_path):
    lines = []
    reporter = Reporter(tmp_path, name="t", algorithm="fedmri", rounds=3, config={}, sites=["a", "b"],
                        writer=False, log=lines.append)  # fmt: skip
    reporter.open(0)

    def summary(outside):
        return {
            s: {"loss": 1.0, "psnr": 20.0, "status": "ok", "train": {"penalty": 25.0, "con_outside": outside}}
            for s in ("a", "b")
        }

    for rnd, outside in enumerate((0.1, 0.99, 0.99), start=1):
        reporter.progress(rnd, summary(outside))
    assert "note" not in lines[0]
    assert "plateau" in lines[1] and "fl.fedmri.variant" in lines[1]
    assert "note" not in lines[2]


def test_outside_fraction_needs_two_negatives():
    theta, anchor, own = encoders(3, seed=9)
    assert np.isnan(contrastive_stats(theta, anchor, [own])["outside"])


# -- the authors' batch-0 skip ---------------------------------------------------------------------


def _term_gradients(tmp_path, monkeypatch, skip: bool) -> list[tuple[int, int, float]]:
    """(round, batch_idx, norm of the term's gradient) of every step of a tiny 2-round FedMRI run
    with two local epochs."""
    import train
    from fl.algorithms.fedmri import FedMRIClient

    seen: list[tuple[int, int, float]] = []
    plan_of = FedMRIClient.plan

    def plan(self, rnd, payload, model, epochs):
        out = plan_of(self, rnd, payload, model, epochs)
        inner = out.penalty
        if inner is None:
            return out

        def recorded(model, outputs=None):
            value = inner(model, outputs)
            params = [p for n, p in model.named_parameters() if n.startswith("encoder.")]
            if value.requires_grad:
                grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
                norm = float(sum(g.abs().sum() for g in grads if g is not None))
            else:
                norm = 0.0
            seen.append((rnd, outputs["batch_idx"], norm))
            return value

        out.penalty = recorded
        return out

    monkeypatch.setattr(FedMRIClient, "plan", plan)
    data = tiny_config_dict(tmp_path, sites=2, rounds=2)
    data["fl"]["local_epochs"] = 2
    data["fl"]["fedmri"] = {"skip_first_batch": skip}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    assert train.main(["--config", str(path)]) == 0
    return seen


@pytest.mark.parametrize("skip", [True, False])
def test_term_is_left_out_of_the_first_batch_of_every_local_epoch(tmp_path, monkeypatch, skip):
    seen = _term_gradients(tmp_path, monkeypatch, skip)
    assert seen and {rnd for rnd, _, _ in seen} == {2}  # the term starts in round 2
    steps = [(b, g) for _, b, g in seen]
    batches = max(b for b, _ in steps) + 1
    assert len(steps) == 2 * 2 * batches  # 2 sites x 2 local epochs
    for site in range(2):
        first, second = steps[site * 2 * batches : (site + 1) * 2 * batches], None
        first, second = first[:batches], first[batches:]
        assert first[0] == (0, 0.0)  # the round's first step: theta = g, the gradient is zero anyway
        assert all(g > 0 for _, g in first[1:])
        assert second[0][0] == 0
        if skip:
            assert second[0][1] == 0.0  # the second epoch's batch 0: left out, as the authors do
        else:
            assert second[0][1] > 0  # with the skip off, theta has moved away from g by then
        assert all(g > 0 for _, g in second[1:])
