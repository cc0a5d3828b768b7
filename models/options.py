"""The ``model`` and ``optim`` sections of a config: the network and each site's optimiser."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelOptions(_Section):
    """The network: the fastMRI image U-Net of the FedMRI paper, or the dual-domain cascade of two U-Nets."""

    kind: Literal["unet", "dual_domain"] = Field(
        "unet", description="unet (image only, the paper's) or dual_domain (k-space U-Net + image U-Net)"
    )
    cascades: int = Field(
        1, ge=1, le=16, description="dual_domain: times the two weight-shared U-Nets are applied"
    )
    kspace_loss_weight: float = Field(
        0.0, ge=0.0, description="weight of an L1 k-space loss, output vs target (meant for dual_domain)"
    )
    chans: int = Field(32, ge=1, description="channels of the first block; the paper uses 32")
    num_pool_layers: int = Field(4, ge=1, le=8, description="down/up-sampling stages; the paper uses 4")
    drop_prob: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout2d probability")
    norm: Literal["instance", "instance_affine", "batch"] = Field(
        "instance", description="normalisation layers; the paper's InstanceNorm has no parameters"
    )
    channels_last: bool = Field(
        False,
        description="keep weights and activations in channels_last memory order (a GPU fast path; "
        "slower on the CPU, and not bitwise identical to the default order)",
    )
    compile: bool = Field(
        False,
        description="torch.compile the encoder and decoder in place (parameter names unchanged); "
        "pays only when the compile time is won back over the run",
    )


class OptimOptions(_Section):
    """Per-site optimiser (state kept across rounds unless reset_state) and the per-round step schedule."""

    name: Literal["rmsprop", "adam", "sgd"] = Field(
        "rmsprop", description="rmsprop (the paper's), adam, or plain sgd (SCAFFOLD's analysis)"
    )
    lr: float = Field(1e-4, gt=0.0, description="learning rate of round 1 (the paper's 1e-4)")
    lr_step_rounds: int = Field(
        40, ge=1, description="multiply the learning rate by lr_gamma every this many rounds"
    )
    lr_gamma: float = Field(0.1, gt=0.0, le=1.0, description="factor of each learning-rate step")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 weight decay of the optimiser")
    reset_state: bool = Field(
        False,
        description="ours, not the paper's: true clears every site's optimiser state (RMSprop's running "
        "averages, Adam's moments, SGD momentum; FL-MRCM's discriminators' too) at the start of each round's "
        "local fit, so no round's gradients shape the next round's steps; false keeps one optimiser state "
        "per site for the whole run",
    )

    def lr_at(self, rnd: int) -> float:
        """Learning rate of round ``rnd`` (1-based): StepLR applied once per round."""
        return self.lr * self.lr_gamma ** ((rnd - 1) // self.lr_step_rounds)
