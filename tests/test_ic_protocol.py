"""The generalization zoo's design (claims/_ic.py): the paper's pairing
rules, every axis varied within groups, and the hierarchical task per scale."""

import pandas as pd
import pytest

from netclaims.metrics import group_taus


@pytest.fixture
def ic(claims_helpers):
    return claims_helpers("_ic")


@pytest.mark.parametrize(("scale", "models"), [("smoke", 26), ("paper", 108)])
def test_zoo_design_keeps_the_pairing_rules(ic, scale, models):
    design = pd.DataFrame(ic.zoo_design(scale))
    assert len(design) == models and not design.duplicated().any()
    assert set(design.columns) == set(ic.AXES)
    raised = {a: design[a] != ic.PLAIN[a] for a in ic.PLAIN}
    assert not (raised["dropout"] & raised["augmentation"]).any()
    assert not (raised["width"] & raised["depth"]).any()
    assert (design.loc[raised["weight_decay"], "lr_scale"] == max(ic.CORE["lr_scale"])).all()


@pytest.mark.parametrize("scale", ["smoke", "paper"])
def test_every_axis_varies_within_at_least_two_groups(ic, scale):
    design = pd.DataFrame(ic.zoo_design(scale))
    design["measure"] = range(len(design))
    design["accuracy"] = range(len(design))
    groups = group_taus(design, "measure", "accuracy", list(ic.AXES))
    assert all(len(taus) >= 2 for taus in groups.values()), {a: len(t) for a, t in
                                                               groups.items()}


def test_hierarchy_is_cifar100_coarse_only_at_paper_scale_with_data(ic):
    assert ic.hierarchy("paper", "/data") == {"dataset": "cifar100",
                                              "dataset_options": {"coarse": True}}
    assert ic.hierarchy("paper", None) == {"superclasses": ic.SUPERCLASSES}
    assert ic.hierarchy("smoke", "/data") == {"superclasses": ic.SUPERCLASSES}
