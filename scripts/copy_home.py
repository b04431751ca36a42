"""Copy a driftlight home so that the copy is its own: `python -m scripts.copy_home SRC DST`.

`cp -a SRC DST` is not enough. MLflow's SQLite store (`mlflow.db`) records absolute artifact
locations: the experiment's, every run's, every model version's and every logged model's. In a
plain copy they still point into SRC, so the copy reads the original's artifacts and, worse, writes
new ones there: a `driftlight retrain` or `driftlight fleet retrain` in the copy registers its
challenger's files under SRC (found walking docs/fleet.md, whose replays ask for a COPY of a
trained fleet). This copies the folder, then rewrites the locations under SRC to the same places
under DST. Nothing else in a home stores a path (the prediction log and the run store hold rows).
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
from pathlib import Path

# (table, column) holding an artifact location, as MLflow 3's SQL store names them.
LOCATIONS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("model_versions", "storage_location"),
    ("logged_models", "artifact_location"),
)


def rehome(db: Path, src: Path, dst: Path) -> dict[str, int]:
    """Rewrite every artifact location in `db` that lies under `src` (as `file://src` or a bare
    path) to the same place under `dst`. Returns the rows changed per `table.column`."""
    changed: dict[str, int] = {}
    con = sqlite3.connect(db)
    try:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, column in LOCATIONS:
            if table not in tables:
                continue
            n = 0
            for old, new in ((f"file://{src}", f"file://{dst}"), (str(src), str(dst))):
                cur = con.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                    (new, len(old) + 1, old, len(old) + 1, old + "/"),
                )
                n += cur.rowcount
            changed[f"{table}.{column}"] = n
        con.commit()
    finally:
        con.close()
    return changed


def copy_home(src: Path, dst: Path) -> dict[str, int]:
    """Copy the home `src` to `dst` (which must not exist) and point the copy's MLflow store at its own artifacts."""
    src, dst = src.resolve(), dst.resolve()
    if not (src / "mlflow.db").exists():
        raise SystemExit(f"{src} holds no mlflow.db: not a driftlight home (run `driftlight train` or `driftlight fleet train`)")
    if dst.exists():
        raise SystemExit(f"{dst} exists: give a new folder (the copy never merges into another home)")
    shutil.copytree(src, dst, symlinks=True)
    return rehome(dst / "mlflow.db", src, dst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="the home to copy (e.g. the one `driftlight fleet train` wrote)")
    ap.add_argument("dst", type=Path, help="a new folder for the copy")
    args = ap.parse_args()
    changed = copy_home(args.src, args.dst)
    print(f"copied {args.src} to {args.dst}; artifact locations rewritten: " + ", ".join(f"{k} {v}" for k, v in changed.items()))


if __name__ == "__main__":
    main()
