"""ReconModule: a LightningModule around the U-Net for one site.

It computes the reconstruction loss plus whatever penalty the federated algorithm installs for the
current round (with hooks after every backward pass and optimiser step), keeps one optimiser for its
whole life (so RMSprop's running averages survive across rounds), and scores validation/test data per
volume after undoing the instance normalisation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from data.fourier import center_crop, fft2c
from data.transforms import denormalize
from models.dual_domain import DualDomainNet
from models.losses import reconstruction_loss
from models.unet import Unet
from utils.metrics import volume_metrics


class NonFiniteError(RuntimeError):
    """A training step produced a non-finite loss, or a local fit left non-finite weights."""


def all_finite(module: torch.nn.Module) -> bool:
    """Whether every parameter and floating buffer of ``module`` is finite (one reduction, one sync)."""
    tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
    return bool(torch.stack(torch._foreach_norm(tensors)).isfinite().all()) if tensors else True


class VolumeCollector:
    """Gathers predicted and target slices per volume, then scores whole volumes."""

    def __init__(self) -> None:
        self.slices: dict[str, dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]] = defaultdict(dict)

    def add(
        self, volumes: list[str], indices: Tensor, pred: Tensor, target: Tensor, zero_filled: Tensor
    ) -> None:
        """Store a batch of denormalised (N, H, W) slices under their volume names."""
        arrays = [t.detach().float().cpu().numpy() for t in (pred, target, zero_filled)]
        for i, (volume, index) in enumerate(zip(volumes, indices.tolist())):
            self.slices[volume][index] = (arrays[0][i], arrays[1][i], arrays[2][i])

    def volume(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pred, target, zero-filled) stacks of one volume, slices in order."""
        ordered = [self.slices[name][k] for k in sorted(self.slices[name])]
        return tuple(np.stack(parts) for parts in zip(*ordered))

    def scores(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per volume: metrics of the reconstruction (``model``) and of the zero-filled input."""
        result = {}
        for name in sorted(self.slices):
            pred, target, zero_filled = self.volume(name)
            result[name] = {
                "model": volume_metrics(target, pred),
                "zero_filled": volume_metrics(target, zero_filled),
            }
        return result


def build_network(kind: str = "unet", cascades: int = 1, **unet: Any) -> torch.nn.Module:
    """The reconstruction network of ``model.kind``: the image U-Net, or the dual-domain cascade."""
    if kind == "unet":
        return Unet(in_chans=1, out_chans=1, **unet)
    if kind == "dual_domain":
        return DualDomainNet(cascades=cascades, **unet)
    raise ValueError(f"unknown model kind {kind!r}; expected unet or dual_domain")


class ReconModule(L.LightningModule):
    """Reconstruction for one site: loss, optimiser, volume metrics.

    Args:
        model: the ``model`` config section (kind, chans, num_pool_layers, drop_prob, norm, cascades,
            kspace_loss_weight, and the fast paths ``channels_last``: weights and inputs in channels_last
            memory order, and ``compile``: ``torch.compile`` in place, so parameter names do not change).
        optim: optimiser name (``rmsprop`` | ``adam`` | ``sgd``), ``lr`` and ``weight_decay``.
        loss: ``mse`` | ``l1``, on the normalised output image.
    """

    def __init__(self, model: dict[str, Any], optim: dict[str, Any], loss: str = "mse"):
        super().__init__()
        model = dict(model)
        self.kind = model.get("kind", "unet")
        self.kspace_loss_weight = float(model.pop("kspace_loss_weight", 0.0))
        self.channels_last = bool(model.pop("channels_last", False))
        compile_model = bool(model.pop("compile", False))
        self.model = build_network(**model)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if compile_model:
            if self.kind == "unet":  # the training step calls the two halves
                self.model.encoder.compile()
                self.model.decoder.compile()
            else:
                self.model.compile()
        self.optim = dict(optim)
        self.loss_fn = reconstruction_loss(loss)
        # The step hooks of one local fit, installed before it and removed after it (:meth:`install`).
        self.penalty: Callable[[torch.nn.Module, dict[str, Any]], Tensor] | None = None
        self.after_backward: Callable[[torch.nn.Module], None] | None = None
        self.after_step: Callable[[torch.nn.Module, float], None] | None = None
        self.reconstruction_weight = 1.0
        self._optimizer: torch.optim.Optimizer | None = None
        self._loss_sum: Tensor | None = None
        self._loss_count = 0
        self._parts: dict[str, Tensor] = {}  # the epoch's sums of loss_rec and penalty, kept apart
        self._first_bad_step: Tensor | None = None  # on the device: no host sync per step
        self.collector = VolumeCollector()

    def install(
        self,
        *,
        penalty: Callable[[torch.nn.Module, dict[str, Any]], Tensor] | None = None,
        after_backward: Callable[[torch.nn.Module], None] | None = None,
        after_step: Callable[[torch.nn.Module, float], None] | None = None,
        reconstruction_weight: float = 1.0,
    ) -> None:
        """Install the step hooks of a local fit (no arguments: remove them). ``penalty(model, outputs)``
        is added to the weighted reconstruction loss at every step (``outputs``: the batch's ``input``,
        ``batch_idx`` and, for the U-Net, its bottleneck ``features``); ``after_backward(model)`` runs
        with the step's gradients before the optimiser steps; ``after_step(model, lr)`` after it."""
        self.penalty, self.after_backward, self.after_step = penalty, after_backward, after_step
        self.reconstruction_weight = reconstruction_weight

    def forward(self, x: Tensor) -> Tensor:
        """Normalised zero-filled image (N, 1, H, W) -> normalised reconstruction (N, 1, H, W) (U-Net)."""
        return self.model(self._layout(x))

    def _layout(self, x: Tensor) -> Tensor:
        """The input in the model's memory order."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def predict(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        """A batch -> (normalised reconstruction (N, 1, H, W) at the target's size, bottleneck features).

        The U-Net reads the zero-filled image; the dual-domain cascade reads the masked k-space and
        mask (its output is centre-cropped to the target when the k-space is larger, as in fastMRI).
        Features are the U-Net's bottleneck (None for the cascade).
        """
        if self.kind == "unet":
            features, skips = self.model.encoder(self._layout(batch["input"]))
            return self.model.decoder(features, skips), features
        pred = self.model(batch["masked_kspace"], batch["mask"], batch["mean"], batch["std"])
        target_shape = tuple(batch["target"].shape[-2:])
        if tuple(pred.shape[-2:]) != target_shape:
            pred = center_crop(pred, target_shape)
        return pred, None

    def _kspace_loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean |k-space difference| of the normalised output and target images (orthonormal FFT)."""
        difference = fft2c(pred[:, 0].to(torch.complex64)) - fft2c(target[:, 0].to(torch.complex64))
        return difference.abs().mean()

    # -- training ------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_count, self._first_bad_step = None, 0, None
        self._parts = {}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        pred, features = self.predict(batch)
        loss = self.reconstruction_weight * self.loss_fn(pred, batch["target"])
        if self.kspace_loss_weight:
            loss = loss + self.kspace_loss_weight * self._kspace_loss(pred, batch["target"])
        parts = {"loss_rec": loss}
        if self.penalty is not None:
            # batch_idx: the step's index within its local epoch (FedMRI skips its term on batch 0).
            outputs = {"input": batch["input"], "batch_idx": batch_idx}
            if features is not None:
                outputs["features"] = features
            parts["penalty"] = self.penalty(self.model, outputs)
            loss = loss + parts["penalty"]
        for name, part in parts.items():
            part = part.detach()
            self._parts[name] = self._parts[name] + part if name in self._parts else part
        detached = loss.detach()
        step = torch.where(torch.isfinite(detached), 0, self.global_step + 1)
        if self._first_bad_step is None:
            self._loss_sum, self._first_bad_step = detached, step
        else:
            self._loss_sum = self._loss_sum + detached
            self._first_bad_step = torch.where(self._first_bad_step > 0, self._first_bad_step, step)
        self._loss_count += 1
        return loss

    def on_train_epoch_end(self) -> None:
        """Stop the fit if any step of the epoch had a non-finite loss (checked once per epoch)."""
        if self._first_bad_step is not None and int(self._first_bad_step) > 0:
            raise NonFiniteError(f"non-finite loss at step {int(self._first_bad_step)}")

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.after_backward is not None:
            self.after_backward(self.model)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.after_step is not None:
            self.after_step(self.model, self.optimizer.param_groups[0]["lr"])

    @property
    def mean_losses(self) -> dict[str, float]:
        """The last epoch's mean training loss split into ``loss_rec`` (everything but the penalty:
        the weighted reconstruction loss and any k-space term) and ``penalty`` (absent without one)."""
        return {name: float(total) / self._loss_count for name, total in self._parts.items()}

    @property
    def mean_train_loss(self) -> float:
        """Mean training loss over the last epoch (nan before any step)."""
        if not self._loss_count:
            return float("nan")
        return float(self._loss_sum) / self._loss_count

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The site's optimiser, created once and returned again on every later fit."""
        if self._optimizer is None:
            name, lr, wd = self.optim["name"], self.optim["lr"], self.optim.get("weight_decay", 0.0)
            if name == "rmsprop":
                self._optimizer = torch.optim.RMSprop(self.parameters(), lr=lr, weight_decay=wd)
            elif name == "adam":
                self._optimizer = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=wd)
            elif name == "sgd":
                self._optimizer = torch.optim.SGD(self.parameters(), lr=lr, weight_decay=wd)
            else:
                raise ValueError(f"unknown optimiser {name!r}")
        return self._optimizer

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The persistent optimiser (created on first access)."""
        return self.configure_optimizers()

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of every parameter group (the per-round step schedule)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # -- evaluation ----------------------------------------------------------------------------
    def _evaluate_batch(self, batch: dict[str, Any]) -> None:
        pred, _ = self.predict(batch)
        mean, std = batch["mean"], batch["std"]
        self.collector.add(
            list(batch["volume"]),
            batch["slice"],
            denormalize(pred, mean, std)[:, 0],
            denormalize(batch["target"], mean, std)[:, 0],
            denormalize(batch["input"], mean, std)[:, 0],
        )

    def on_validation_epoch_start(self) -> None:
        self.collector = VolumeCollector()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate_batch(batch)

    def on_test_epoch_start(self) -> None:
        self.collector = VolumeCollector()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate_batch(batch)
