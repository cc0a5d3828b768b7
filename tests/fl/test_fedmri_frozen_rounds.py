"""FedMRI's ``frozen_rounds`` (ours, default ``none``): in every even round the shared encoder is held at
the server's, so only the site's decoder trains; ``none`` is the paper's."""

from __future__ import annotations

import pytest
import torch
import yaml

from assembly.build import Builder
from assembly.config import load_config, validate_config
from assembly.setup import in_process
from tests.conftest import tiny_config_dict
from utils.errors import UserError


def _quiet(_):
    pass


def _rounds(tmp_path, rounds: int, norm: str = "instance", weight_decay: float = 0.0, **fedmri) -> list[dict]:
    """Train a tiny 2-site FedMRI for ``rounds`` rounds (training halves only); per round and site:
    whether each shared tensor came back exactly as received, and whether the decoder changed."""
    data = tiny_config_dict(tmp_path, sites=2, rounds=rounds)
    data["fl"]["fedmri"] = fedmri
    data["model"]["norm"] = norm
    data["optim"]["weight_decay"] = weight_decay
    federation = in_process(Builder(validate_config(data), log=_quiet)).rounds
    sites = federation.transport.sites
    out = []
    for rnd in range(1, rounds + 1):
        received = {n: t.clone() for n, t in federation.server.global_state.items()}
        decoders = {s.name: _decoder(s.module.model) for s in sites}
        trained = federation.train(rnd)
        seen = {}
        for site in sites:
            shared = trained.results[site.name].reply.shared
            assert shared.keys() == received.keys() and received
            after = _decoder(site.module.model)
            seen[site.name] = {
                "unchanged": {n: torch.equal(shared[n], received[n]) for n in received},
                "decoder_changed": any(not torch.equal(after[n], decoders[site.name][n]) for n in after),
                "values": trained.results[site.name].values,
            }
        out.append(seen)
    for site in sites:  # every parameter learns again after the fit
        assert all(p.requires_grad for p in site.module.model.parameters())
    return out


def _decoder(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in model.state_dict().items() if n.startswith("decoder.")}


@pytest.mark.parametrize(("norm", "weight_decay"), [("instance", 0.0), ("batch", 0.01)])
def test_even_rounds_train_only_the_decoder_and_return_the_encoder_as_received(tmp_path, norm, weight_decay):
    """With batch norm the encoder's running statistics come back as received too, and weight decay
    never moves a frozen weight."""
    rounds = _rounds(tmp_path, 3, norm, weight_decay, beta=0.0, frozen_rounds="even")
    for rnd, seen in enumerate(rounds, start=1):
        for site, s in seen.items():
            assert s["decoder_changed"], (rnd, site)
            if rnd == 2:
                assert all(s["unchanged"].values()), (rnd, site)
            else:
                assert not any(s["unchanged"].values()), (rnd, site)


def test_default_trains_the_encoder_in_every_round(tmp_path):
    rounds = _rounds(tmp_path, 2, beta=0.0)
    for seen in rounds:
        for s in seen.values():
            assert s["decoder_changed"] and not any(s["unchanged"].values())


def test_a_frozen_round_skips_the_term_but_logs_its_diagnostics(tmp_path):
    """With beta > 0 the term's gradient would reach only the frozen encoder: it is left out (no
    ``penalty``), and its diagnostics show the encoder at the server's (``con_pos`` 0)."""
    seen = _rounds(tmp_path, 2, frozen_rounds="even")[1]
    for s in seen.values():
        assert all(s["unchanged"].values()) and s["decoder_changed"]
        assert "penalty" not in s["values"] and s["values"]["con_pos"] == 0.0
        assert s["values"]["con_neg"] > 0


def test_a_bad_value_is_a_one_line_config_error_naming_the_key(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tmp_path)))
    assert load_config(path, ["fl.fedmri.frozen_rounds=even"]).fl.fedmri.frozen_rounds == "even"
    assert load_config(path).fl.fedmri.frozen_rounds == "none"
    with pytest.raises(UserError) as err:
        load_config(path, ["fl.fedmri.frozen_rounds=odd"])
    message = str(err.value)
    assert "\n" not in message and "fl.fedmri.frozen_rounds" in message
    with pytest.raises(UserError) as err:
        load_config(path, ["fl.fedmri.frozen_rounds=even", "fl.fedmri.share=whole"])
    message = str(err.value)
    assert "\n" not in message and "fl.fedmri.frozen_rounds" in message and "share=whole" in message
