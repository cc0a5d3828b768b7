"""The ``fl`` section of a config: the federation's settings, and one section per algorithm that has
options (``fl.fedmri``, ``fl.fedprox``, ...), taken from the algorithms' own ``Options`` models.

The algorithm sections are looked up in the registry when a config is validated, so an algorithm
registered by a test or a user's script gets its section too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails

from fl.algorithms import ALGORITHMS
from fl.references import REFERENCES


def algorithm_names() -> list[str]:
    """Every value ``fl.algorithm`` accepts: the federated algorithms, then the references."""
    return [*ALGORITHMS, *REFERENCES]


def algorithm_label(name: str) -> str:
    """The algorithm's name in tables and figures."""
    return (ALGORITHMS.get(name) or REFERENCES[name]).label


class FLOptions(BaseModel):
    """The federation: algorithm, rounds and aggregation weights, and each algorithm's options."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    algorithm: str = Field("fedmri", description="the federated algorithm, or a non-federated reference")
    rounds: int = Field(
        50, ge=1, description="communication rounds (each: local training, aggregation, validation)"
    )
    local_epochs: int = Field(10, ge=1, description="passes over the site's training data per round")
    client_weights: Literal["uniform", "samples"] = Field(
        "uniform", description="aggregation weights: 1/K, or proportional to training slices"
    )
    on_site_failure: Literal["abort", "skip"] = Field(
        "abort",
        description="a site whose loss or weights become non-finite: stop the run, or leave the site out of "
        "this round's aggregation and retry it next round",
    )
    parallel: Literal["sites", "data"] = Field(
        "sites",
        description="train_multi_gpu.py only: divide the sites among the ranks, or train every site "
        "data-parallel on all ranks",
    )
    site_assignment: Literal["round_robin", "size"] = Field(
        "round_robin",
        description="with parallel: sites, how sites go to ranks (size: balance training slices)",
    )
    flat_aggregation: bool = Field(
        False,
        description="average the shared tensors in place in flat float64 buffers kept between rounds, "
        "instead of allocating float64 temporaries per tensor and site; the same numbers, bit for bit",
    )
    head: Literal["stage", "conv"] | None = Field(
        None,
        description="the U-Net's head for LG-FedAvg, FedPer, FedRep and fedmri.share=all_but_head: "
        "the last decoder stage, or only the 1x1 output conv; null: each algorithm's own (fedper and "
        "fedrep: conv, fedmri: conv, the authors' except_last; lgfedavg: stage)",
    )

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, value: str) -> str:
        if value not in algorithm_names():
            raise ValueError(f"unknown algorithm {value!r}; expected one of {', '.join(algorithm_names())}")
        return value

    @model_validator(mode="after")
    def _algorithm_sections(self) -> FLOptions:
        """Every extra key must be an algorithm's section; each becomes that algorithm's typed options."""
        extra = dict(self.__pydantic_extra__ or {})
        sections = {name: cls.Options for name, cls in ALGORITHMS.items() if cls.Options is not None}
        errors: list[InitErrorDetails] = []
        for key in extra:
            if key not in sections:
                errors.append(InitErrorDetails(type="extra_forbidden", loc=(key,), input=extra[key]))
        parsed: dict[str, Any] = {}
        for name, options in sections.items():
            value = extra.get(name, {})
            try:
                parsed[name] = value if isinstance(value, options) else options.model_validate(value)
            except ValidationError as err:
                errors += [
                    InitErrorDetails(
                        type=e["type"], loc=(name, *e["loc"]), input=e["input"], ctx=e.get("ctx", {})
                    )
                    for e in err.errors()
                ]
        if errors:
            raise ValidationError.from_exception_data("FLOptions", errors)
        self.__pydantic_extra__ = parsed
        return self

    def options(self, name: str | None = None) -> BaseModel | None:
        """The typed options of algorithm ``name`` (default: ``algorithm``), or None if it has none."""
        return (self.__pydantic_extra__ or {}).get(name or self.algorithm)

    def check_sites(self, sites: list[str], model_kind: str) -> None:
        """Refuse, with a ValueError naming the key, an algorithm that cannot run on these sites or model."""
        cls = ALGORITHMS.get(self.algorithm) or REFERENCES[self.algorithm]
        cls.check(self.options(), sites, model_kind)
