"""FedMRI's weighted contrastive term in parameter space, and the variants and diagnostics of ours.

The contrastive term of C.-M. Feng et al., "Specificity-Preserving Federated Learning for MR Image
Reconstruction", IEEE TMI 2022 (arXiv 2112.05752), as README's "The method, as implemented" states it,
over the shared encoder parameters E of a site k:

    pos   = sum_{p in E} |theta_k[p] - theta_global[p]|_1
    neg   = sum_j sum_{p in E} |theta_k[p] - theta_prev_j[p]|_1
    L_con = pos / (neg + 1e-14)

It is computed without building an autograd graph over the parameters. The server's encoder and the
previous encoders are fixed for a whole local fit, so :class:`ContrastiveL1` stacks them once into
one (1 + K, N) tensor; every step then walks the encoder in cache-sized chunks, taking the
differences to all 1 + K references in one broadcast subtraction and reducing them while they are
still in cache: the L1 sums (accumulated in float64 across chunks), ``sign(theta - g)`` and
``sum_j sign(theta - theta_j)``. The backward pass returns the analytic gradient

    d L_con / d theta = sign(theta - g) / neg  -  pos / neg^2 * sum_j sign(theta - theta_j)

in two fused passes. Everything stays on the parameters' device (no host synchronisation). On the
CPU the chunk loop runs on one thread: splitting each cache-sized operation between threads buys
little and costs a synchronisation per operation. No library computes this ratio with its analytic
gradient in place, hence the hand-written autograd function.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

NEG_EPS = 1e-14
# Elements per chunk on the CPU: the (1 + K, chunk) work buffers stay in the core's cache. On other
# devices every tensor is one chunk (few large kernels beat many small ones there).
CPU_CHUNK = 65536


def memory_order(t: Tensor) -> tuple[int, ...]:
    """The dimension order in which ``t``'s elements lie in memory (identity for contiguous tensors).

    ``t.permute(order)`` is contiguous whenever ``t`` is dense (e.g. channels_last conv weights);
    otherwise the identity is returned and callers fall back to copies.
    """
    if t.is_contiguous():
        return tuple(range(t.dim()))
    order = tuple(sorted(range(t.dim()), key=lambda d: (-t.stride(d) if t.shape[d] > 1 else 0, d)))
    return order if t.permute(order).is_contiguous() else tuple(range(t.dim()))


def _flat(t: Tensor, order: tuple[int, ...]) -> Tensor:
    """``t``'s elements in the given dimension order, as a 1-D tensor (a view when ``t`` is dense)."""
    return t.permute(order).reshape(-1)


@dataclass
class _Chunk:
    """One chunk of one parameter: its live values, its references and its slices of the buffers."""

    values: Tensor  # (c,) view of the parameter
    refs: Tensor  # (1 + K, c) view of the stacked references
    work: Tensor  # (1 + K, c) differences, then their absolute values
    signs: Tensor  # (K, c) signs of the differences to the negatives


class _Plan:
    """The stacked references, work buffers and chunk views of one set of live parameters."""

    def __init__(self, params: Sequence[Tensor], groups: Sequence[Sequence[Tensor]], chunk: int | None):
        first = params[0]
        self.device, self.dtype = first.device, first.dtype
        self.pointers = [p.data_ptr() for p in params]
        self.orders = [memory_order(p) for p in params]
        self.shapes = [tuple(p.permute(o).shape) for p, o in zip(params, self.orders)]
        self.sizes = [p.numel() for p in params]
        self.numel = sum(self.sizes)
        rows = len(groups)
        self.refs = torch.empty(rows, self.numel, device=self.device, dtype=self.dtype)
        with torch.no_grad():
            for row, group in enumerate(groups):
                torch.cat(
                    [_flat(t.detach().to(self.device, self.dtype), o) for t, o in zip(group, self.orders)],
                    out=self.refs[row],
                )
        if chunk is None:
            chunk = CPU_CHUNK if self.device.type == "cpu" else max(self.sizes)
        self.chunk = max(1, min(chunk, max(self.sizes)))
        self.work = torch.empty(rows, self.chunk, device=self.device, dtype=self.dtype)
        self.signs = torch.empty(max(rows - 1, 1), self.chunk, device=self.device, dtype=self.dtype)
        self.ones = torch.ones(rows - 1, device=self.device, dtype=self.dtype)
        self.param_chunks: list[list[tuple[int, int]]] = []
        offset = 0
        for size in self.sizes:
            self.param_chunks.append(
                [(offset + s, min(size, s + self.chunk) - s) for s in range(0, size, self.chunk)]
            )
            offset += size
        self.chunk_sizes = [c for spans in self.param_chunks for _, c in spans]
        self._views: list[_Chunk] | None = None

    def matches(self, params: Sequence[Tensor]) -> bool:
        """Whether ``params`` are the tensors this plan was built for (same storage, device, dtype)."""
        return (
            len(params) == len(self.pointers)
            and all(p.device == self.device and p.dtype == self.dtype for p in params)
            and [p.data_ptr() for p in params] == self.pointers
        )

    def chunks(self, params: Sequence[Tensor]) -> list[_Chunk]:
        """The chunk views of the live ``params``: built once when every parameter is dense (views of
        the parameters stay valid while their storage does), else rebuilt from copies on every call."""
        if self._views is not None:
            return self._views
        out, live = [], True
        for p, order, spans in zip(params, self.orders, self.param_chunks):
            flat = _flat(p.detach(), order)
            live = live and flat.data_ptr() == p.data_ptr()
            base = spans[0][0]
            for start, count in spans:
                out.append(
                    _Chunk(
                        values=flat[start - base : start - base + count],
                        refs=self.refs[:, start : start + count],
                        work=self.work[:, :count],
                        signs=self.signs[:, :count],
                    )
                )
        if live:
            self._views = out
        return out

    def unflatten(self, flat: Tensor) -> list[Tensor]:
        """Split a flat encoder-sized tensor into tensors shaped (and laid out) like the parameters."""
        out = []
        for piece, shape, order in zip(flat.split(self.sizes), self.shapes, self.orders):
            inverse = [0] * len(order)
            for i, d in enumerate(order):
                inverse[d] = i
            out.append(piece.view(shape).permute(inverse))
        return out


def _without_autocast(device: torch.device):
    """A context that turns autocast off on ``device`` (the term is computed in the parameters' dtype)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device):
    """Run the chunk loop on one thread: its cache-sized operations are too small to be worth a thread
    synchronisation each (hundreds per step), which on a busy machine can stall for milliseconds."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _ContrastiveL1(torch.autograd.Function):
    """pos / (neg + eps) with the analytic gradient; inputs after the plan are the live parameters."""

    @staticmethod
    def forward(ctx, plan: _Plan, *params: Tensor) -> Tensor:
        with torch.no_grad(), _without_autocast(plan.device), _one_cpu_thread(plan.device):
            chunks = plan.chunks(params)
            rows = plan.refs.shape[0]
            toward = torch.empty(plan.numel, device=plan.device, dtype=plan.dtype)
            away = torch.empty_like(toward) if rows > 1 else None
            towards = toward.split(plan.chunk_sizes)
            aways = away.split(plan.chunk_sizes) if away is not None else [None] * len(chunks)
            # per-chunk sums at least in float32 (half-precision parameters under bf16-true)
            sum_dtype = torch.promote_types(plan.dtype, torch.float32)
            sums = torch.empty(len(chunks), rows, device=plan.device, dtype=sum_dtype)
            for c, t, a, s in zip(chunks, towards, aways, sums):
                torch.sub(c.values, c.refs, out=c.work)
                torch.sign(c.work[0], out=t)
                if a is not None:
                    torch.sign(c.work[1:], out=c.signs)
                    torch.mv(c.signs.t(), plan.ones, out=a)  # exact: sums of +-1
                torch.sum(c.work.abs_(), dim=1, dtype=sum_dtype, out=s)
            totals = sums.sum(dim=0, dtype=torch.float64)
            pos, neg = totals[0], totals[1:].sum() + NEG_EPS
            value = (pos / neg).to(plan.dtype)
        ctx.plan, ctx.toward, ctx.away = plan, toward, away
        ctx.save_for_backward(pos.to(plan.dtype), neg.to(plan.dtype))
        return value

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        pos, neg = ctx.saved_tensors
        with torch.no_grad(), _without_autocast(ctx.plan.device):
            grad = ctx.toward * (grad_output / neg)
            if ctx.away is not None:
                grad.addcmul_(ctx.away, -grad_output * pos / neg**2)
        return (None, *ctx.plan.unflatten(grad))


class ContrastiveL1:
    """FedMRI's L_con of one site during one local fit: the anchor and negatives are fixed, the
    parameters live; the references are stacked on the parameters' device at the first call.

    Args:
        anchor: the server's encoder, tensor for tensor.
        negatives: previous-round local encoders (each a list matching ``anchor``).
        chunk: elements per chunk (default: ``CPU_CHUNK`` on the CPU, whole tensors elsewhere).
    """

    def __init__(
        self, anchor: Sequence[Tensor], negatives: Sequence[Sequence[Tensor]], chunk: int | None = None
    ):
        self.groups = [[a.detach() for a in anchor], *[[n.detach() for n in neg] for neg in negatives]]
        for group in self.groups[1:]:
            if len(group) != len(anchor):
                raise ValueError(f"expected {len(anchor)} tensors per encoder, got {len(group)}")
        self.chunk = chunk
        self._plan: _Plan | None = None

    def __call__(self, params: Sequence[Tensor]) -> Tensor:
        """L_con of the live ``params`` as a 0-dim tensor; its backward gives the exact (sub)gradient."""
        params = list(params)
        if len(params) != len(self.groups[0]):
            raise ValueError(f"expected {len(self.groups[0])} parameters, got {len(params)}")
        if self._plan is None or not self._plan.matches(params):
            self._plan = None  # release the old buffers first
            self._plan = _Plan(params, self.groups, self.chunk)
        return _ContrastiveL1.apply(self._plan, *params)


def contrastive_l1(
    params: Sequence[Tensor], anchor: Sequence[Tensor], negatives: Sequence[Sequence[Tensor]]
) -> Tensor:
    """FedMRI's L_con = pos / (neg + 1e-14): pulls ``params`` to ``anchor``, pushes from ``negatives``.

    Args:
        params: the live encoder parameters of one site (gradients flow to these).
        anchor: the server's encoder, tensor for tensor.
        negatives: previous-round local encoders (each a list matching ``params``).
    Returns:
        A 0-dim tensor; its backward pass gives the exact (sub)gradient of the ratio. A training loop
        that evaluates the term every step should keep one :class:`ContrastiveL1` instead.
    """
    if len(anchor) != len(params):
        raise ValueError(f"expected {len(params)} tensors per encoder, got {len(anchor)}")
    return ContrastiveL1(anchor, negatives)(params)


# -- diagnostics and variants (not the paper's) -------------------------------------------------------


def encoder_spread(negatives: Sequence[Sequence[Tensor]]) -> float:
    """Mean absolute deviation per weight of the negatives around their mean (0 for fewer than two)."""
    if len(negatives) < 2:
        return 0.0
    total, count = 0.0, 0
    with torch.no_grad():
        for tensors in zip(*negatives):
            stacked = torch.stack([t.detach().double().reshape(-1) for t in tensors])
            total += float((stacked - stacked.mean(dim=0)).abs().mean(dim=0).sum())
            count += stacked.shape[1]
    return total / max(count, 1)


def contrastive_stats(
    params: Sequence[Tensor], anchor: Sequence[Tensor], negatives: Sequence[Sequence[Tensor]]
) -> dict[str, float]:
    """What the paper's term sees at ``params``: ``pos``, ``neg`` (as in :class:`ContrastiveL1`),
    ``l_con`` = pos / neg, ``outside`` (the fraction of weights outside [min_j, max_j] of the
    negatives, nan for fewer than two: where every sign toward them agrees, so the term's gradient is
    zero once the pull toward the anchor is balanced), ``dist`` (mean |theta - anchor| per weight) and
    ``spread`` (:func:`encoder_spread` of the negatives). One pass per call, in float64 sums."""
    pos = neg = 0.0
    outside = count = 0
    with torch.no_grad():
        for i, p in enumerate(params):
            value = p.detach().double().reshape(-1)
            g = anchor[i].detach().to(value.device).double().reshape(-1)
            pos += float((value - g).abs().sum())
            if negatives:
                stacked = torch.stack(
                    [n[i].detach().to(value.device).double().reshape(-1) for n in negatives]
                )
                neg += float((value - stacked).abs().sum())
                beyond = (value > stacked.amax(dim=0)) | (value < stacked.amin(dim=0))
                outside += int(beyond.sum())
            count += value.numel()
    neg += NEG_EPS
    return {
        "pos": pos,
        "neg": neg,
        "l_con": pos / neg,
        "outside": outside / max(count, 1) if len(negatives) > 1 else math.nan,  # a range needs two
        "dist": pos / max(count, 1),
        "spread": encoder_spread(negatives),
    }


def contrastive_l2(
    params: Sequence[Tensor], anchor: Sequence[Tensor], negatives: Sequence[Sequence[Tensor]]
) -> Tensor:
    """Variant ``l2`` (ours): sum ||theta - g||^2 / sum_j ||theta - theta_j||^2, by autograd.

    Smooth everywhere; with uniform weights and every site's previous encoder as a negative the
    anchor is their mean, so the value is pos / (K pos + C) with C the negatives' scatter: bounded by
    1/K like the paper's, but its gradient only fades as the encoder moves far away."""
    pos = sum(((p - a.to(p.device, p.dtype)) ** 2).sum() for p, a in zip(params, anchor))
    neg = sum(
        ((p - n.to(p.device, p.dtype)) ** 2).sum() for group in negatives for p, n in zip(params, group)
    )
    return pos / (neg + NEG_EPS)


def contrastive_moon(
    params: Sequence[Tensor],
    anchor: Sequence[Tensor],
    negatives: Sequence[Sequence[Tensor]],
    tau: float,
    scale: float,
) -> Tensor:
    """Variant ``moon`` (ours): -log(exp(-pos/tau) / (exp(-pos/tau) + sum_j exp(-neg_j/tau))), by autograd.

    ``pos`` and ``neg_j`` are mean L1 distances per weight divided by ``scale`` (the negatives'
    spread, a constant of the round), so they are O(1) whatever the encoder's size. The value is smooth
    in the distances and bounded by log(1 + sum_j exp(d(g, theta_j) / tau)) (triangle inequality),
    but like the paper's its gradient vanishes where every weight lies outside the negatives' range."""
    count = sum(p.numel() for p in params)
    norm = 1.0 / (count * max(scale, 1e-30))

    def distance(refs: Sequence[Tensor]) -> Tensor:
        return sum((p - r.to(p.device, p.dtype)).abs().sum() for p, r in zip(params, refs)) * norm

    logits = torch.stack([-distance(anchor), *[-distance(n) for n in negatives]]) / tau
    return torch.logsumexp(logits, dim=0) - logits[0]


def contrastive_step(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    rate: float,
    anchor: Sequence[Tensor] | None = None,
    limits: Sequence[Tensor] | None = None,
) -> None:
    """Variants ``decoupled`` and ``clipped`` (ours): theta -= rate * grad, outside the optimiser.

    With ``limits`` (per-weight bounds, e.g. the negatives' spread) each weight's step is clipped to
    them, and a step toward ``anchor`` is clipped to the distance left, so it never crosses it."""
    with torch.no_grad():
        for i, (p, g) in enumerate(zip(params, grads)):
            step = -rate * g
            if limits is not None:
                bound = limits[i].to(p.device, p.dtype)
                step = torch.maximum(torch.minimum(step, bound), -bound)
                if anchor is not None:
                    gap = anchor[i].to(p.device, p.dtype) - p
                    toward = torch.sign(step) == torch.sign(gap)
                    step = torch.where(toward & (step.abs() > gap.abs()), gap, step)
            p.add_(step)


def spread_per_weight(negatives: Sequence[Sequence[Tensor]]) -> list[Tensor]:
    """Per weight, the mean absolute deviation of the negatives around their mean (zeros for one)."""
    out = []
    with torch.no_grad():
        for tensors in zip(*negatives):
            stacked = torch.stack([t.detach() for t in tensors])
            out.append((stacked - stacked.mean(dim=0)).abs().mean(dim=0))
    return out
