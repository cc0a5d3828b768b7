"""The dual-domain cascade: exact data consistency, odd sizes, parameter names."""

import pytest
import torch

from data.fourier import fft2c, ifft2c
from models.dual_domain import DualDomainNet, channels_to_complex, complex_to_channels


def measured(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(*shape, generator=g) * torch.exp(1j * torch.rand(*shape, generator=g))
    mask = torch.rand(shape[-1], generator=g) < 0.4
    mask = mask.expand(*shape).clone()
    return fft2c(image.to(torch.complex64)) * mask, mask


@pytest.mark.parametrize("cascades", [1, 2])
def test_measured_samples_are_reproduced_exactly(cascades):
    torch.manual_seed(0)
    net = DualDomainNet(chans=4, num_pool_layers=2, cascades=cascades)
    kspace, mask = measured((2, 32, 30))
    with torch.no_grad():
        out = net.reconstruct(kspace, mask)
    recovered = fft2c(out)
    assert torch.allclose(recovered[mask], kspace[mask], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(recovered[~mask], torch.zeros_like(recovered[~mask]))  # it fills the gaps


@pytest.mark.parametrize("shape", [(1, 33, 47), (2, 17, 19), (1, 64, 61)])
def test_shapes_for_odd_sizes(shape):
    net = DualDomainNet(chans=2, num_pool_layers=2)
    kspace, mask = measured(shape)
    mean, std = torch.ones(shape[0]), torch.full((shape[0],), 2.0)
    out = net(kspace, mask, mean, std)
    assert out.shape == (shape[0], 1, *shape[1:]) and out.dtype == torch.float32


def test_output_is_in_the_normalised_units_of_the_target():
    net = DualDomainNet(chans=2, num_pool_layers=2)
    for p in net.parameters():
        torch.nn.init.zeros_(p)  # both U-Nets output 0: the cascade returns the zero-filled image
    kspace, mask = measured((1, 16, 16))
    zero_filled = ifft2c(kspace).abs()
    mean, std = zero_filled.mean().reshape(1), zero_filled.std().reshape(1)
    with torch.no_grad():
        out = net(kspace, mask, mean, std)
    assert torch.allclose(out[:, 0], (zero_filled - mean) / std, atol=1e-5)


def test_parameter_names_carry_both_encoders_and_decoders():
    names = [n for n, _ in DualDomainNet(chans=2, num_pool_layers=2, cascades=3).named_parameters()]
    prefixes = {".".join(n.split(".")[:2]) for n in names}
    assert prefixes == {"kspace.encoder", "kspace.decoder", "image.encoder", "image.decoder"}


def test_channel_round_trip():
    x = torch.randn(3, 5, 7, dtype=torch.complex64)
    assert torch.equal(channels_to_complex(complex_to_channels(x)), x)
    assert complex_to_channels(x).shape == (3, 2, 5, 7)


def test_fedmri_shares_both_encoders_and_keeps_both_decoders():
    from fl.algorithms import Context
    from fl.algorithms.fedmri import FedMRI, FedMRIOptions
    from fl.algorithms.fedper import FedPer

    net = DualDomainNet(chans=2, num_pool_layers=2)
    names = list(net.state_dict())
    shared = set(FedMRI(FedMRIOptions(), Context()).shared_names(net))
    assert shared == {n for n in names if n.startswith(("kspace.encoder.", "image.encoder."))}
    assert {n.split(".")[0] for n in shared} == {"kspace", "image"}
    head = set(names) - set(FedPer(None, Context()).shared_names(net))
    assert head and all(n.startswith("image.decoder.") for n in head)


def test_contrastive_term_over_two_encoders_is_the_direct_sum():
    from tests.fl.test_losses import fedmri_after_round_one

    torch.manual_seed(0)
    nets = {s: DualDomainNet(chans=2, num_pool_layers=2) for s in ("a", "b")}
    server, clients, shared = fedmri_after_round_one(nets, lam=1.0, beta=10.0, negatives="all", start_round=2)
    assert {n.split(".")[0] for n in shared["a"]} == {"kspace", "image"}
    global_state = server.global_state
    model = DualDomainNet(chans=2, num_pool_layers=2)
    live = dict(model.named_parameters())
    encoder = [n for n in live if ".encoder." in n]
    pos = sum(torch.norm(live[n] - global_state[n], p=1) for n in encoder)
    neg = sum(torch.norm(live[n] - shared[s][n], p=1) for s in ("a", "b") for n in encoder)
    expected = 10.0 * pos / (neg + 1e-14)
    expected.backward()
    grads = {n: live[n].grad.clone() for n in encoder}
    model.zero_grad()
    value = clients["a"].plan(2, server.payload("a", 2), model, 1).penalty(model)
    value.backward()
    assert torch.allclose(value, expected, rtol=1e-6)
    for n in encoder:
        assert torch.allclose(live[n].grad, grads[n], rtol=1e-5, atol=1e-12), n


@pytest.mark.parametrize("algorithm", ["fedmri", "fedavg"])
def test_one_federated_round_of_the_cascade(tiny_config, algorithm):
    from assembly.build import Builder
    from assembly.setup import in_process

    config = tiny_config(algorithm=algorithm)
    config.model.kind = "dual_domain"
    config.model.kspace_loss_weight = 0.1
    fed = in_process(Builder(config, log=lambda _: None)).rounds
    summary = fed.round(1)
    summary = fed.round(2)
    assert all(v["status"] == "ok" and v["psnr"] > 0 for v in summary.values())
    a, b = (s.module.model.state_dict() for s in fed.transport.sites)
    for name in a:
        if ".encoder." in name or algorithm == "fedavg":
            assert torch.equal(a[name], b[name]), name
    assert any(not torch.equal(a[n], b[n]) for n in a if ".decoder." in n) == (algorithm == "fedmri")


def test_flmrcm_is_refused_with_the_cascade(tiny_config):
    from assembly.config import validate_config
    from utils.errors import UserError

    data = tiny_config().to_dict()
    data["model"]["kind"] = "dual_domain"
    data["fl"]["algorithm"] = "flmrcm"
    with pytest.raises(UserError, match="dual_domain"):
        validate_config(data)
