"""The MLflow registry seam: versions, aliases, and isolation between two stores in one process."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from core.registry import InMemoryRegistry, MlflowRegistry, ModelBundle


def tiny_bundle(tag: str, coef: float) -> ModelBundle:
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LogisticRegression().fit(X * coef, [0, 0, 1, 1])
    return ModelBundle(pipeline=model, baseline=model, metadata={"tag": tag}, profile={"rows": 4, "tag": tag})


def test_two_registries_in_one_process_never_cross(tmp_path):
    """MLflow keeps a process-global registry URI; each registry must still load its own models."""
    a = MlflowRegistry(f"sqlite:///{tmp_path / 'a.db'}", (tmp_path / "a-art").as_uri())
    b = MlflowRegistry(f"sqlite:///{tmp_path / 'b.db'}", (tmp_path / "b-art").as_uri())
    va = a.register("m", tiny_bundle("A", 1.0), params={}, metrics={}, artifacts={})
    vb = b.register("m", tiny_bundle("B", 2.0), params={}, metrics={}, artifacts={})
    assert va.version == vb.version == "1"
    loaded = a.load("m", "1")  # b registered last: the global URI now points at b
    assert loaded.metadata == {"tag": "A"} and loaded.profile == {"rows": 4, "tag": "A"}
    assert b.load("m", "1").metadata == {"tag": "B"}


def test_aliases(tmp_path):
    reg = MlflowRegistry(f"sqlite:///{tmp_path / 'r.db'}", (tmp_path / "art").as_uri())
    assert reg.alias_version("m", "champion") is None
    reg.register("m", tiny_bundle("1", 1.0), params={}, metrics={}, artifacts={})
    reg.register("m", tiny_bundle("2", 1.0), params={}, metrics={}, artifacts={})
    reg.set_alias("m", "champion", "2")
    assert reg.alias_version("m", "champion") == "2"
    assert [v.version for v in reg.versions("m")] == ["1", "2"]
    assert reg.versions("m")[1].aliases == ("champion",)
    reg.delete_alias("m", "champion")
    assert reg.alias_version("m", "champion") is None


def test_in_memory_registry_mirrors_the_seam():
    reg = InMemoryRegistry()
    v = reg.register("m", tiny_bundle("x", 1.0), params={"a": 1}, metrics={"auc": 0.7}, artifacts={})
    reg.set_alias("m", "champion", v.version)
    assert reg.load("m", reg.alias_version("m", "champion")).metadata == {"tag": "x"}
