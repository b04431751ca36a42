"""A copied home is its own: `scripts.copy_home` rewrites MLflow's absolute artifact locations.

With `cp -a` alone, the copy's store still names the original's artifact folder, and a run logged
in the copy (a retrain's challenger) writes its files into the original home. The test shows both:
the plain copy leaks into the original, the rewritten copy does not, and what was registered before
the copy is found under the copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.settings import Settings
from scripts.copy_home import copy_home


def populate(home: Path) -> None:
    """An experiment, a run with an artifact, a registered version and a logged model, as training leaves them."""
    from mlflow import MlflowClient

    from core.registry import registry_from_settings

    s = Settings(home=home)
    reg = registry_from_settings(s)
    exp = reg._experiment_id()
    client = MlflowClient(tracking_uri=s.resolved_tracking_uri, registry_uri=s.resolved_tracking_uri)
    run = client.create_run(exp)
    (home / "note.txt").write_text("v1", encoding="utf-8")
    client.log_artifact(run.info.run_id, str(home / "note.txt"), "driftlight")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("flights-late")
    client.create_model_version("flights-late", f"{run.info.artifact_uri}/driftlight", run_id=run.info.run_id)
    client.create_logged_model(experiment_id=exp, name="m")


def locations(home: Path) -> list[str]:
    import sqlite3

    con = sqlite3.connect(home / "mlflow.db")
    try:
        return [
            row[0]
            for sql in (
                "SELECT artifact_location FROM experiments WHERE name = 'driftlight'",
                "SELECT artifact_uri FROM runs",
                "SELECT storage_location FROM model_versions",
                "SELECT artifact_location FROM logged_models",
            )
            for row in con.execute(sql)
        ]
    finally:
        con.close()


def log_in(home: Path) -> str:
    """Log one artifact through a registry opened on `home`; return where the run put it."""
    from mlflow import MlflowClient

    from core.registry import registry_from_settings

    s = Settings(home=home)
    client = MlflowClient(tracking_uri=s.resolved_tracking_uri, registry_uri=s.resolved_tracking_uri)
    run = client.create_run(registry_from_settings(s)._experiment_id())
    (home / "new.txt").write_text("v2", encoding="utf-8")
    client.log_artifact(run.info.run_id, str(home / "new.txt"))
    return str(run.info.artifact_uri)


@pytest.fixture
def original(tmp_path):
    home = tmp_path / "a"
    home.mkdir()
    populate(home)
    return home


def test_a_plain_copy_writes_into_the_original(original, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(original, plain)
    uri = log_in(plain)
    assert uri.startswith(original.resolve().as_uri() + "/")  # the problem this script exists for
    assert list((original / "mlartifacts").rglob("new.txt"))


def test_copy_home_points_the_copy_at_its_own_artifacts(original, tmp_path):
    from mlflow import MlflowClient

    copy = tmp_path / "b"
    changed = copy_home(original, copy)
    assert changed == {
        "experiments.artifact_location": 1,
        "runs.artifact_uri": 1,
        "model_versions.storage_location": 1,
        "logged_models.artifact_location": 1,
    }
    src, dst = original.resolve().as_uri(), copy.resolve().as_uri()
    assert all(loc.startswith(dst + "/") for loc in locations(copy)), locations(copy)
    assert all(loc.startswith(src + "/") for loc in locations(original))  # the original is untouched
    uri = log_in(copy)
    assert uri.startswith(dst + "/") and not list((original / "mlartifacts").rglob("new.txt"))
    # What was registered before the copy is read from the copy.
    uri = Settings(home=copy).resolved_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # not the process-wide registry another test set
    version = client.get_model_version("flights-late", "1")
    shutil.rmtree(original)
    local = Path(client.download_artifacts(version.run_id, "driftlight", str(tmp_path)))
    assert (local / "note.txt").read_text(encoding="utf-8") == "v1"


def test_copy_home_refuses_what_it_cannot_do(original, tmp_path):
    with pytest.raises(SystemExit, match="not a driftlight home"):
        copy_home(tmp_path / "nowhere", tmp_path / "c")
    (tmp_path / "taken").mkdir()
    with pytest.raises(SystemExit, match="exists"):
        copy_home(original, tmp_path / "taken")
