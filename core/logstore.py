"""The prediction log's SQL store: two tables derived from the contract, written idempotently.

`LogStore` is the only code that knows the log's SQL schema. It is SQLAlchemy 2.x Core (no ORM)
and speaks SQLite (the embedded default) and PostgreSQL (`postgresql+psycopg://`).

- `predictions`: one row per served prediction: id, serving metadata, one column per contract field
  (named exactly like the field) and one `f_<feature>` column per served feature (Zinkevich #29:
  log the features the model actually saw, so training/serving skew can be measured).
- `labels`: one row per prediction id, the latest known outcome. No foreign key on purpose: a label
  can arrive before its prediction row has been flushed by the batched writer. `seq` (indexed) is
  the label write sequence: every insert and every effective correction sets a new, larger value,
  and the values any snapshot holds are a prefix of all values (SQLite computes it under its write
  lock; PostgreSQL takes nextval under an advisory lock held to commit), so "seq > watermark" is
  exactly the label writes a reader has not seen (the Parquet archive's label overlay).
  `create_schema` adds the column to a labels table created before it.

- `log_quarantine`: the dead-letter table. A row the store cannot hold (an event time that overflows
  in UTC, NUL in a text field, a missing key) is kept here whole, as escaped JSON, with the reason,
  so it is counted (`count_quarantined`, the monitor and `/metrics` show it) and can be looked at or
  replayed, while every other row is written.

Writes are idempotent so the writer can retry a batch after any failure without duplicating rows:
predictions are `INSERT ... ON CONFLICT (prediction_id) DO NOTHING`; labels are upserts in which the
label with the latest `received_at` wins (a later label is a correction; a replayed older one is a
no-op). Datetimes are stored as naive UTC and handed back as timezone-aware UTC.

Nothing happens at import: the engine is created in `LogStore.__init__` (no connection is opened
until first use) and the SQLite parent folder is made only by `create_schema`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy import Sequence as SqlSequence
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.schema import CreateIndex, CreateSequence, CreateTable

from data_contracts.contract import Contract, FieldSpec

if TYPE_CHECKING:
    from core.settings import Settings

# Columns every prediction row has, before the contract fields and the features.
FIXED_PREDICTION_COLUMNS = (
    "prediction_id",
    "served_at",
    "event_time",
    "model_name",
    "model_version",
    "probability",
    "late",
    "warnings",
)
FEATURE_PREFIX = "f_"
ID_LENGTH = 64
CATEGORY_LENGTH = 32
# PostgreSQL truncates identifiers longer than this silently; refuse them instead.
MAX_IDENTIFIER_LENGTH = 63
QUARANTINE_TABLE = "log_quarantine"
# Any constant works: it only has to be the same in every process that creates the schema.
_SCHEMA_LOCK_KEY = 0x647269667431  # "drift1"
# Held by every label write transaction on PostgreSQL (see `upsert_labels`); distinct from the above.
_LABEL_LOCK_KEY = 0x6C6162656C73  # "labels"
LABEL_SEQUENCE = "label_write_seq"


class InvalidRowError(ValueError):
    """A row cannot be stored as given (missing key, wrong type, naive datetime).

    Retrying cannot help, unlike a store outage: the writer isolates such rows instead of retrying.
    """


class SchemaMismatchError(RuntimeError):
    """The existing tables lack columns the current contract or feature list needs."""


def to_utc_naive(value: Any) -> datetime:
    """A timezone-aware `datetime` (or ISO-8601 string with an offset) as naive UTC.

    Raises `InvalidRowError` for naive datetimes (guessing their zone is how skew starts) and for
    instants that do not exist in UTC (year 1 at +14:00 overflows): retrying cannot fix either.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidRowError(f"expected an ISO-8601 timestamp, got {value!r}") from exc
    if not isinstance(value, datetime):
        raise InvalidRowError(f"expected a datetime, got {type(value).__name__} {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRowError(f"expected a timezone-aware datetime, got naive {value.isoformat()}")
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError as exc:
        raise InvalidRowError(f"timestamp {value.isoformat()} is outside the range UTC can represent") from exc


def storable_text(value: Any, max_length: int | None = None) -> str:
    """`str(value)` if every store can hold it; else `InvalidRowError`.

    PostgreSQL text cannot hold NUL, no store can hold a lone UTF-16 surrogate (not UTF-8), and a
    PostgreSQL varchar refuses what SQLite would silently keep: check here so both behave alike.
    """
    text_value = str(value)
    if "\x00" in text_value:
        raise InvalidRowError(f"text contains a NUL character: {_escaped(text_value)}")
    try:
        text_value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRowError(f"text is not valid Unicode (lone surrogate): {_escaped(text_value)}") from None
    if max_length is not None and len(text_value) > max_length:
        raise InvalidRowError(f"text longer than {max_length} characters: {_escaped(text_value)}")
    return text_value


def _escaped(value: Any, limit: int = 80) -> str:
    """A short, ASCII-only rendering of a value for error messages (never fails to encode)."""
    out = ascii(value)
    return out if len(out) <= limit else out[:limit] + "..."


def _ascii_cut(value: Any, limit: int) -> str:
    """`value` as text with non-ASCII characters escaped, at most `limit` characters."""
    return str(value).encode("ascii", "backslashreplace").decode("ascii")[:limit]


def safe_json(obj: Any) -> str:
    """`obj` as ASCII-only JSON that any store can hold (NUL and surrogates escaped); never raises."""
    return json.dumps(obj, ensure_ascii=True, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    return str(obj)


def _to_float(value: Any) -> float | None:
    out = float(value)
    # SQLite turns NaN into NULL and PostgreSQL stores 'NaN': make both mean "missing".
    return None if math.isnan(out) else out


def _to_int(value: Any) -> int:
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidRowError(f"expected an integer, got {value!r}")
        return int(value)
    return int(value)


def _to_str(value: Any, max_length: int | None = None) -> str | None:
    return None if value is None else storable_text(value, max_length)


def _identity(value: Any) -> Any:
    return value


def _id_of(row: Any) -> Any:
    return row.get("prediction_id") if isinstance(row, Mapping) else row


def _column_type(spec: FieldSpec) -> Any:
    return {
        "number": Float(),
        "integer": Integer(),
        "category": String(CATEGORY_LENGTH),
        "timestamp": DateTime(),
    }[spec.type]


class LogStore:
    """The SQL store of the prediction log (SQLite or PostgreSQL).

    `url` is a SQLAlchemy URL (`sqlite:///path.db`, `postgresql+psycopg://user@host/db`);
    `feature_names` are the served features in model order, each stored as a `f_<name>` float.
    Thread-safe: the engine pools connections, each method uses its own.
    """

    def __init__(self, url: str, contract: Contract, feature_names: Sequence[str]) -> None:
        self.url = make_url(url)
        self.dialect: str = self.url.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(
                f"log store URL {self.url.render_as_string(hide_password=True)!r}: "
                "only sqlite:/// and postgresql+psycopg:// are supported"
            )
        self.contract = contract
        self.feature_names = tuple(feature_names)
        self._field_specs = tuple(contract.fields)
        self._feature_columns = tuple(FEATURE_PREFIX + name for name in self.feature_names)
        self._check_names()

        self.metadata = MetaData()
        self.predictions = Table(
            "predictions",
            self.metadata,
            Column("prediction_id", String(ID_LENGTH), primary_key=True),
            Column("served_at", DateTime(), nullable=False),
            Column("event_time", DateTime(), nullable=False),
            Column("model_name", String(128)),
            Column("model_version", String(32)),
            Column("probability", Float()),
            Column("late", Integer()),
            Column("warnings", Text()),
            # Contract fields are nullable in the table even when the contract forbids null: the
            # request model enforces the contract; the log must never refuse a served row.
            *(Column(spec.name, _column_type(spec)) for spec in self._field_specs),
            *(Column(col, Float()) for col in self._feature_columns),
            Index("ix_predictions_event_time", "event_time"),
            Index("ix_predictions_served_at", "served_at"),
        )
        self.labels = Table(
            "labels",
            self.metadata,
            Column("prediction_id", String(ID_LENGTH), primary_key=True),
            Column("label", Integer(), nullable=False),
            Column("received_at", DateTime(), nullable=False),
            # The label write sequence: every insert and every effective correction sets a new, larger
            # value (`upsert_labels`), so "labels changed since X" is one index range. Nullable: a table
            # migrated from before it, or a row written by an older writer, may lack one.
            Column("seq", BigInteger()),
            Index("ix_labels_seq", "seq"),
        )
        # PostgreSQL's source of `seq` (SQLite computes it inside the write statement instead).
        self.label_sequence = SqlSequence(LABEL_SEQUENCE, metadata=self.metadata)
        self.quarantine_table = Table(
            QUARANTINE_TABLE,
            self.metadata,
            Column("id", Integer(), primary_key=True, autoincrement=True),
            Column("quarantined_at", DateTime(), nullable=False),
            Column("kind", String(16), nullable=False),
            # ASCII-escaped and cut to the id length: the original id may itself be the poison.
            Column("prediction_id", String(ID_LENGTH)),
            Column("reason", Text(), nullable=False),
            # The whole row as ASCII-only JSON (NUL, surrogates escaped): replayable by hand.
            Column("payload", Text(), nullable=False),
            Index("ix_log_quarantine_at", "quarantined_at"),
        )
        self.engine = self._create_engine()
        # SQLite keeps DATETIME as text: store exactly what SQLAlchemy's own DateTime would bind, so
        # reads and range filters through the Core types see the same format.
        dialect = self.engine.dialect
        self._bind_datetime: Callable[[Any], Any] = DateTime().dialect_impl(dialect).bind_processor(dialect) or _identity
        self._input_converters = tuple(self._converter(spec) for spec in self._field_specs)
        self._insert_predictions = self._build_prediction_insert()
        self._insert_predictions_sql = self._compile_positional(self._insert_predictions, self.predictions)
        self._upsert_labels = self._build_label_upsert()
        self._label_seq_column = False  # True once the labels table is known to have `seq`

    # -- construction --------------------------------------------------------------------------
    def _check_names(self) -> None:
        names = [*FIXED_PREDICTION_COLUMNS, *(s.name for s in self._field_specs), *self._feature_columns]
        dupes = sorted(n for n, k in Counter(names).items() if k > 1)
        if dupes:
            raise ValueError(f"prediction log columns collide: {dupes} (contract field vs fixed or feature column)")
        too_long = [n for n in names if len(n) > MAX_IDENTIFIER_LENGTH]
        if too_long:
            raise ValueError(f"column names longer than {MAX_IDENTIFIER_LENGTH} characters: {too_long}")

    def _create_engine(self) -> Engine:
        kwargs: dict[str, Any] = {}
        if self.dialect == "postgresql":
            # pre_ping: after a database restart the pool holds dead connections; test each checkout
            # (one round trip per batch) instead of failing the first batch after every outage.
            kwargs["pool_pre_ping"] = True
            if "connect_timeout" not in self.url.query:
                # Bound how long a writer can hang on an unreachable server (seconds).
                kwargs["connect_args"] = {"connect_timeout": 5}
            # Positional placeholders, so rows can be bound as tuples (see _compile_positional).
            kwargs["paramstyle"] = "format"
        engine = create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine

    def _converter(self, spec: FieldSpec) -> Callable[[Any], Any]:
        if spec.type == "number":
            return _to_float
        if spec.type == "integer":
            return _to_int
        if spec.type == "timestamp":
            bind = self._bind_datetime
            return lambda value: bind(to_utc_naive(value))
        return lambda value: storable_text(value, CATEGORY_LENGTH)

    def _compile_positional(self, stmt: Any, table: Table) -> str:
        """The dialect's SQL text for `stmt` with one positional placeholder per table column.

        Rows are then bound as plain tuples through `exec_driver_sql`: measured here, SQLAlchemy's
        per-row parameter processing for an executemany of 56 columns (~25 us/row) cost more than
        SQLite's insert itself. The SQL text is still generated by Core from the Table.
        """
        keys = [c.key for c in table.columns]
        compiled = stmt.compile(dialect=self.engine.dialect, column_keys=keys)
        order = [compiled.binds[name].key for name in compiled.positiontup or ()]
        if order != keys:  # would only change with a SQLAlchemy upgrade: fail loudly, not misalign
            raise RuntimeError(f"unexpected bind order for {table.name}: {order[:5]}... vs {keys[:5]}...")
        return compiled.string

    def _build_prediction_insert(self) -> Any:
        ins = (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(self.predictions)
        # Plain executemany on both dialects, bound as tuples (see _compile_positional). Measured
        # here, 200k rows of 56 columns in batches of 500: SQLite ~27k rows/s; PostgreSQL ~10k
        # rows/s, bound by the server's CPU on this 2-vCPU machine. SQLAlchemy does not use
        # "insertmanyvalues" on psycopg without RETURNING; opting in by adding RETURNING gave
        # ~3.9k rows/s, because psycopg re-parses each 28,000-placeholder statement text.
        return ins.on_conflict_do_nothing(index_elements=["prediction_id"])

    def _build_label_upsert(self) -> Any:
        lab = self.labels
        if self.dialect == "sqlite":
            # Computed per row of the executemany, inside the write statement: SQLite lets one writer
            # hold the database's write lock until it commits, so each row sees every earlier label
            # write (committed, or earlier in this transaction) and takes a larger value. A snapshot
            # (a reader's) therefore holds exactly the writes with seq <= its largest seq.
            seq: Any = select(func.coalesce(func.max(lab.c.seq), 0) + 1).scalar_subquery()
            ins: Any = sqlite.insert(lab).values(seq=seq)
        else:
            # Allocated in the order of the label lock `upsert_labels` takes (see there).
            ins = postgresql.insert(lab).values(seq=self.label_sequence.next_value())
        # The latest received_at wins: a correction replaces the label, a replayed older label (a
        # retried batch, a spool file recovered late) does not undo a correction. Only a row the
        # where-clause lets through gets the new seq: an ignored replay keeps its old one.
        return ins.on_conflict_do_update(
            index_elements=["prediction_id"],
            set_={"label": ins.excluded.label, "received_at": ins.excluded.received_at, "seq": ins.excluded.seq},
            where=ins.excluded.received_at >= lab.c.received_at,
        )

    # -- schema ---------------------------------------------------------------------------------
    def create_schema(self) -> None:
        """Create the tables and indexes if missing (idempotent, safe to race from many workers).

        Raises `SchemaMismatchError` if existing tables lack a column the contract now needs.
        """
        if self.dialect == "sqlite" and self.url.database not in (None, "", ":memory:"):
            Path(self.url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                # Concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalog;
                # serialise schema creation across processes for this transaction.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
                conn.execute(CreateSequence(self.label_sequence, if_not_exists=True))
            else:
                # Python's sqlite3 runs DDL outside any transaction; take the write lock explicitly,
                # so two workers cannot both see an old labels table and both migrate it.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            for table in self.metadata.sorted_tables:
                conn.execute(CreateTable(table, if_not_exists=True))
            self._migrate_label_seq(conn)
            for table in self.metadata.sorted_tables:
                for index in sorted(table.indexes, key=lambda i: str(i.name)):
                    conn.execute(CreateIndex(index, if_not_exists=True))
            conn.commit()
        self._check_columns()

    def _migrate_label_seq(self, conn: Any) -> None:
        """Give `labels` its `seq` column if it predates it, and a seq to every row without one.

        Runs inside `create_schema`'s transaction (PostgreSQL: under the schema lock; SQLite: holding
        the write lock), so concurrent workers migrate once. Rows without a seq (all of them after
        the ALTER, or rows an older writer inserted since) get distinct values above every seq
        already given, so none of them can hide below a watermark a reader has already taken.
        Other missing columns are left to `_check_columns` to refuse, as before.
        """
        if "seq" not in {c["name"] for c in inspect(conn).get_columns(self.labels.name)}:
            conn.exec_driver_sql("ALTER TABLE labels ADD COLUMN seq BIGINT")
        if self.dialect == "postgresql":
            # The label lock too: these seqs must commit in order with concurrent label writers'.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LABEL_LOCK_KEY})
            conn.exec_driver_sql(f"UPDATE labels SET seq = nextval('{LABEL_SEQUENCE}') WHERE seq IS NULL")
        else:
            top = conn.exec_driver_sql("SELECT COALESCE(MAX(seq), 0) FROM labels").scalar_one()
            conn.exec_driver_sql("UPDATE labels SET seq = ? + rowid WHERE seq IS NULL", (int(top),))

    def _check_columns(self) -> None:
        insp = inspect(self.engine)
        for table in self.metadata.sorted_tables:
            have = {c["name"] for c in insp.get_columns(table.name)}
            missing = [c.name for c in table.columns if c.name not in have]
            if missing:
                raise SchemaMismatchError(
                    f"table {table.name!r} exists but lacks columns {missing}: the contract or the "
                    "feature list changed since it was created. Migrate it (ALTER TABLE ADD COLUMN) "
                    "or point the log at a new database."
                )

    # -- writes ---------------------------------------------------------------------------------
    def _prediction_values(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        """One prediction row as a tuple in `predictions` column order (bound values)."""
        dt = self._bind_datetime
        try:
            pid = storable_text(row["prediction_id"], ID_LENGTH)
            values: list[Any] = [
                pid,
                dt(to_utc_naive(row["served_at"])),
                dt(to_utc_naive(row["event_time"])),
                # str(): an MLflow version is often an int, and PostgreSQL refuses an int for a
                # varchar, an error that retrying could never fix.
                _to_str(row["model_name"], 128),
                _to_str(row["model_version"], 32),
                _to_float(row["probability"]),
                int(row["late"]),
                # ASCII JSON: a warning that quotes caller text cannot carry a NUL into the store.
                safe_json(list(warnings)) if (warnings := row.get("warnings")) else "[]",
            ]
            inputs = row.get("inputs") or {}
            for spec, conv in zip(self._field_specs, self._input_converters, strict=True):
                value = inputs.get(spec.name)
                values.append(None if value is None else conv(value))
            # The widest part of the row, so inlined: `v != v` is the NaN test (NaN -> NULL).
            get = (row.get("features") or {}).get
            values += [None if v is None or v != v else float(v) for v in map(get, self.feature_names)]
        except InvalidRowError as exc:
            raise InvalidRowError(f"prediction {_escaped(_id_of(row))}: {exc}") from None
        except Exception as exc:  # flattening is pure Python: any failure is this row's, not an outage
            raise InvalidRowError(f"prediction {_escaped(_id_of(row))}: {type(exc).__name__}: {exc}") from None
        return tuple(values)

    def insert_predictions(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert prediction rows in one transaction; ids already stored are skipped.

        Each row: `prediction_id` (str), `served_at` and `event_time` (aware datetimes),
        `model_name`, `model_version`, `probability` (0-1), `late` (0/1), `warnings` (list[str]),
        `inputs` (contract field -> value or None), `features` (feature name -> float; NaN is
        stored as NULL). Returns the number of rows newly inserted. Raises `InvalidRowError`
        before touching the database if any row cannot be flattened.
        """
        if not rows:
            return 0
        params = [self._prediction_values(r) for r in rows]
        with self.engine.begin() as conn:
            # preserve_rowcount: SQLAlchemy otherwise drops an executemany's rowcount on psycopg.
            conn = conn.execution_options(preserve_rowcount=True)
            result = conn.exec_driver_sql(self._insert_predictions_sql, params)
            return max(result.rowcount, 0)

    def upsert_labels(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert or correct labels in one transaction: the label with the latest received_at wins.

        Each row: `prediction_id` (str), `label` (0/1), `received_at` (aware datetime). The same
        label sent again is a no-op in effect. Returns the number of rows inserted or updated.
        """
        if not rows:
            return 0
        latest: dict[Any, dict[str, Any]] = {}
        for r in rows:
            try:
                p = {
                    "prediction_id": storable_text(r["prediction_id"], ID_LENGTH),
                    "label": int(r["label"]),
                    "received_at": to_utc_naive(r["received_at"]),
                }
            except InvalidRowError as exc:
                raise InvalidRowError(f"label {_escaped(_id_of(r))}: {exc}") from None
            except Exception as exc:  # pure Python: any failure is this row's, not an outage
                raise InvalidRowError(f"label {_escaped(_id_of(r))}: {type(exc).__name__}: {exc}") from None
            # One statement must not touch the same id twice (PostgreSQL refuses it in a
            # multi-row upsert): keep the latest label per id within the batch.
            prev = latest.get(p["prediction_id"])
            if prev is None or p["received_at"] >= prev["received_at"]:
                latest[p["prediction_id"]] = p
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Concurrent transactions can commit sequence values out of order (101 visible while
                # 100 is not yet), and a reader taking "the largest seq it sees" as its watermark
                # would then never look for 100. Label writers hold this lock from before their
                # nextval until their commit, so they allocate and commit in one order; PostgreSQL
                # makes a commit visible before it releases the transaction's locks (xact.c,
                # CommitTransaction), so the seqs any snapshot sees are a prefix of all seqs.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LABEL_LOCK_KEY})
            result = conn.execution_options(preserve_rowcount=True).execute(self._upsert_labels, list(latest.values()))
            return max(result.rowcount, 0)

    def quarantine(self, kind: str, items: Sequence[tuple[Mapping[str, Any], str]]) -> int:
        """Keep rows the store cannot hold in the dead-letter table, each with its reason.

        `kind`: "prediction" | "label"; `items`: (row, reason). Everything is stored as ASCII-only
        text, so this write cannot fail on the row's content; it can fail on an outage (then the
        writer retries it like any batch). Returns the number of rows quarantined.
        """
        if not items:
            return 0
        now = datetime.now(UTC).replace(tzinfo=None)
        values = [
            {
                "quarantined_at": now,
                "kind": kind[:16],
                "prediction_id": _ascii_cut(pid, ID_LENGTH) if (pid := _id_of(row)) is not None else None,
                "reason": _ascii_cut(reason, 2000),
                "payload": safe_json(row),
            }
            for row, reason in items
        ]
        with self.engine.begin() as conn:
            conn.execute(self.quarantine_table.insert(), values)
        return len(values)

    # -- reads ----------------------------------------------------------------------------------
    def count_quarantined(self, since: datetime | None = None, until: datetime | None = None) -> int:
        """Rows in the dead-letter table quarantined in [`since`, `until`) (aware datetimes; None = open)."""
        q = select(func.count()).select_from(self.quarantine_table)
        if since is not None:
            q = q.where(self.quarantine_table.c.quarantined_at >= to_utc_naive(since))
        if until is not None:
            q = q.where(self.quarantine_table.c.quarantined_at < to_utc_naive(until))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def count_predictions(self) -> int:
        """Number of prediction rows stored."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(self.predictions)).scalar_one())

    def count_labels(self) -> int:
        """Number of label rows stored (one per prediction id)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(self.labels)).scalar_one())

    def event_time_range(self) -> tuple[datetime, datetime] | None:
        """(earliest, latest) event time of all predictions, UTC (from the index); None if empty."""
        p = self.predictions
        with self.engine.connect() as conn:
            lo, hi = conn.execute(select(func.min(p.c.event_time), func.max(p.c.event_time))).one()
        return None if lo is None else (_as_utc(lo), _as_utc(hi))

    def labelled_event_range(self) -> tuple[datetime, datetime] | None:
        """(earliest, latest) event time among predictions that have a label, UTC; None if none
        (also before the service first created the log: a trained home that has served nothing)."""
        p, lab = self.predictions, self.labels
        if not inspect(self.engine).has_table(p.name):
            return None
        q = select(func.min(p.c.event_time), func.max(p.c.event_time)).select_from(
            p.join(lab, lab.c.prediction_id == p.c.prediction_id)
        )
        with self.engine.connect() as conn:
            lo, hi = conn.execute(q).one()
        if lo is None:
            return None
        return _as_utc(lo), _as_utc(hi)

    def shadow_frame(
        self,
        start: datetime | None,
        end: datetime | None,
        *,
        by: Literal["event_time", "served_at"] = "event_time",
        with_model: bool = False,
    ) -> pd.DataFrame:
        """Served vs shadow probability (and the label, if known) of the window's shadow-scored rows.

        Columns: `probability`, `shadow_probability`, `shadow_version`, `label` (nullable Int64),
        and with `with_model` the `model_name` that served the row (a fleet's comparison per model).
        """
        from core.runs import shadow_predictions as sh

        p, lab = self.predictions, self.labels
        cols = [p.c.probability, sh.c.probability.label("shadow_probability"), sh.c.model_version, lab.c.label]
        names = ["probability", "shadow_probability", "shadow_version", "label"]
        if with_model:
            cols.append(p.c.model_name)
            names.append("model_name")
        stmt = select(*cols).select_from(
            p.join(sh, sh.c.prediction_id == p.c.prediction_id).outerjoin(lab, lab.c.prediction_id == p.c.prediction_id)
        )
        key = p.c[by]
        if start is not None:
            stmt = stmt.where(key >= to_utc_naive(start))
        if end is not None:
            stmt = stmt.where(key < to_utc_naive(end))
        rows: list[Any] = []
        # No shadow table means shadow scoring never ran against this store; any other error is real.
        if inspect(self.engine).has_table(sh.name):
            with self.engine.connect() as conn:
                rows = list(conn.execute(stmt).all())
        df = pd.DataFrame.from_records(rows, columns=names)
        df["label"] = df["label"].astype("Int64")
        return df

    def iter_predictions(
        self,
        start: datetime | None,
        end: datetime | None,
        *,
        by: Literal["event_time", "served_at"] = "event_time",
        chunksize: int = 50_000,
        with_labels: bool = True,
        reader: Literal["auto", "arrow", "sqlalchemy"] = "auto",
        columns: Sequence[str] | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Stream the predictions with `start <= by < end` as DataFrames of at most `chunksize` rows.

        `start`/`end` are aware datetimes (None = unbounded). Rows come ordered by `by`, then id.
        Columns: the `predictions` columns (`warnings` decoded to lists) and, with `with_labels`,
        `label` (nullable Int64) and `received_at` from a LEFT JOIN on labels. Datetime columns
        are timezone-aware UTC. Integer columns are pandas nullable `Int64`. Rows are fetched in
        chunks (a server-side cursor on PostgreSQL, SQLite's lazy cursor), so memory holds one
        chunk, not the window. An empty window yields one empty frame with the columns.

        `columns`: only these `predictions` columns, in this order (None = all); the monitor asks
        for what it reads, which leaves out e.g. the per-row JSON of `warnings`.

        `reader`: "arrow" reads columns through ADBC into Arrow record batches (no Python object
        per row or value; 2.5x (SQLite) to 3.9x (PostgreSQL) faster reads of a 1M-row window in
        `make bench`), "sqlalchemy" builds rows through SQLAlchemy (the reference path). Both give
        identical frames (tests/integration/test_columnar_read.py). "auto" = arrow on PostgreSQL
        when its ADBC driver is installed, else sqlalchemy. Not arrow on SQLite by default: the
        ADBC driver links its own copy of SQLite, and two SQLite libraries opening one database
        file in one process break each other's POSIX locks (sqlite.org/howtocorrupt.html 2.2.1;
        a test that served and monitored in one process hit "file is not a database"). Use
        reader="arrow" on SQLite only in a process that opens the file through nothing else, as
        `benchmarks/bench_monitor.py` does.
        """
        if by not in ("event_time", "served_at"):
            raise ValueError(f"by must be 'event_time' or 'served_at', got {by!r}")
        if chunksize < 1:
            raise ValueError(f"chunksize must be >= 1, got {chunksize}")
        if reader not in ("auto", "arrow", "sqlalchemy"):
            raise ValueError(f"reader must be 'auto', 'arrow' or 'sqlalchemy', got {reader!r}")
        p, lab = self.predictions, self.labels
        cols: list[Any] = list(p.columns) if columns is None else [p.c[self._column_name(c)] for c in columns]
        stmt_from: Any = p
        if with_labels:
            cols += [lab.c.label, lab.c.received_at]
            stmt_from = p.outerjoin(lab, lab.c.prediction_id == p.c.prediction_id)
        stmt = select(*cols).select_from(stmt_from)
        key = p.c[by]
        lo = to_utc_naive(start) if start is not None else None
        hi = to_utc_naive(end) if end is not None else None
        if lo is not None:
            stmt = stmt.where(key >= lo)
        if hi is not None:
            stmt = stmt.where(key < hi)
        stmt = stmt.order_by(key, p.c.prediction_id)
        if reader == "arrow" or (reader == "auto" and self.dialect == "postgresql" and self.arrow_reader_available()):
            yield from self._iter_arrow(stmt, cols, [v for v in (lo, hi) if v is not None], chunksize)
            return
        names = [c.name for c in cols]
        dtypes = self._frame_dtypes(cols)
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=chunksize).execute(stmt)
            empty = True
            for part in result.partitions(chunksize):
                empty = False
                yield _frame(part, names, dtypes)
            if empty:
                yield _frame([], names, dtypes)

    def event_day_count(self, start: datetime, end: datetime) -> int:
        """Prediction rows with `start <= event_time < end` (aware datetimes): the event-time index
        alone answers it, no row is read. The Parquet archive's freshness check (core.archive)."""
        p = self.predictions
        q = select(func.count()).select_from(p).where(p.c.event_time >= to_utc_naive(start), p.c.event_time < to_utc_naive(end))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def has_label_seq(self) -> bool:
        """True if the labels table has its write sequence column (`create_schema` adds it)."""
        if not self._label_seq_column:  # only ever added: a True is kept, a False is asked again
            self._label_seq_column = "seq" in {c["name"] for c in inspect(self.engine).get_columns(self.labels.name)}
        return self._label_seq_column

    def label_seq_complete(self) -> bool:
        """True if every label row has its write sequence number (`seq`): the table has the column
        and no row lacks a value (a writer older than the column inserts rows without one, and
        corrects rows without bumping theirs). Only then can "labels with seq > watermark" stand
        for "labels changed since"."""
        if not self.has_label_seq():
            return False
        q = select(self.labels.c.prediction_id).where(self.labels.c.seq.is_(None)).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(q).first() is None

    def event_day_labels(self, start: datetime, end: datetime) -> tuple[Any, int]:
        """The labels of the predictions with `start <= event_time < end` (aware datetimes), and the
        label watermark, both read by one statement.

        Returns (Arrow table `prediction_id`, `label` (int64, null = no label yet), `received_at`
        (timestamp[us, UTC]); one row per prediction, in no particular order), watermark: the
        largest label `seq` in the whole table as the same statement saw it (0 for no rows). One
        statement is one snapshot on both dialects, and the seqs a snapshot holds are a prefix of
        all seqs (`upsert_labels`), so the table holds every label write with seq <= watermark and
        any later write has a larger seq.
        """
        p, lab = self.predictions, self.labels
        every = lab.alias("every_label")  # the whole table, not the joined row
        top = select(func.coalesce(func.max(every.c.seq), 0)).scalar_subquery().label("watermark")
        stmt = (
            select(p.c.prediction_id, lab.c.label, lab.c.received_at, top)
            .select_from(p.outerjoin(lab, lab.c.prediction_id == p.c.prediction_id))
            .where(p.c.event_time >= to_utc_naive(start), p.c.event_time < to_utc_naive(end))
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        import pyarrow as pa

        schema = self._labels_schema()
        if not rows:  # no rows, no labels to vouch for: 0 is the watermark that claims nothing
            return schema.empty_table(), 0
        ids, labels, received, marks = (list(c) for c in zip(*rows, strict=True))
        return pa.Table.from_batches([_label_batch(ids, labels, received, schema)], schema=schema), int(marks[0])

    def _labels_schema(self) -> Any:
        """The Arrow schema of label rows (`labels_table`, `event_day_labels`), from the table's columns."""
        import pyarrow as pa

        lab = self.labels
        return pa.schema([pa.field(c.name, _arrow_type(c)) for c in (lab.c.prediction_id, lab.c.label, lab.c.received_at)])

    def label_changes(self, after_seq: int) -> list[tuple[datetime, int]]:
        """(event_time (aware UTC), seq) of each prediction whose label has `seq > after_seq`: what
        changed since a watermark, from the seq index (usually few rows)."""
        p, lab = self.predictions, self.labels
        q = select(p.c.event_time, lab.c.seq).select_from(lab.join(p, p.c.prediction_id == lab.c.prediction_id))
        with self.engine.connect() as conn:
            return [(_as_utc(t), int(s)) for t, s in conn.execute(q.where(lab.c.seq > after_seq))]

    def labels_table(
        self,
        since: datetime | None = None,
        *,
        after_seq: int | None = None,
        reader: Literal["auto", "arrow", "sqlalchemy"] = "auto",
    ) -> Any:
        """The current labels as an Arrow table: `prediction_id` (string), `label` (int64),
        `received_at` (timestamp[us, UTC]), those with `received_at >= since` (None = all) and
        `seq > after_seq` or no seq (None = all; see `event_day_labels` for why a seq watermark is
        exact).

        The Parquet archive reads through this at read time the labels written since a day's labels
        file (or, for a day without one, all labels), so a label (or a correction) that arrives after
        a day was archived is never missed. Same reader rules as `iter_predictions`: ADBC where it is
        safe, else the DB-API cursor (tuples, but of three narrow columns, and the filter runs inside
        the database).
        """
        import pyarrow as pa

        lab = self.labels
        stmt = select(lab.c.prediction_id, lab.c.label, lab.c.received_at)
        lo = to_utc_naive(since) if since is not None else None
        values: list[Any] = []
        if lo is not None:
            stmt = stmt.where(lab.c.received_at >= lo)
            values.append(self._bind_datetime(lo) if self.dialect == "sqlite" else lo)
        if after_seq is not None:
            # Rows without a seq too: an older writer's insert is news whatever the watermark.
            stmt = stmt.where((lab.c.seq > int(after_seq)) | lab.c.seq.is_(None))
            values.append(int(after_seq))
        schema = self._labels_schema()
        if reader == "arrow" or (reader == "auto" and self.dialect == "postgresql" and self.arrow_reader_available()):
            conn = self._adbc_connect()
            try:
                cur = conn.cursor()
                try:
                    cur.execute(self._adbc_sql(stmt, len(values)), values or None)
                    batches = [_conform(b, schema) for b in cur.fetch_record_batch()]
                finally:
                    cur.close()
            finally:
                conn.close()
            return pa.Table.from_batches(batches, schema=schema)
        # Raw driver values (SQLite's DATETIME text stays text): Arrow parses them, not Python per row.
        sql = str(stmt.compile(dialect=self.engine.dialect))
        bound = tuple(values)
        raw = self.engine.raw_connection()  # the DB-API cursor: plain tuples, no Row object per label
        try:
            cur = raw.cursor()
            try:
                if bound:
                    cur.execute(sql, bound)
                else:
                    cur.execute(sql)
                batches = []
                # In slices: a million label tuples at once would cost ~250 MB of Python objects, and
                # 100k-row slices still peaked at +143 MB RSS for 950k labels (10k-row ones: +84 MB).
                while rows := cur.fetchmany(10_000):
                    ids, labels, received = (list(c) for c in zip(*rows, strict=True))
                    batches.append(_label_batch(ids, labels, received, schema))
            finally:
                cur.close()
        finally:
            raw.close()
        return pa.Table.from_batches(batches, schema=schema)

    @property
    def column_names(self) -> list[str]:
        """The `predictions` columns, in table order."""
        return [c.name for c in self.predictions.columns]

    def _column_name(self, name: str) -> str:
        if name not in self.predictions.c:
            raise ValueError(f"columns: {name!r} is not a column of the predictions table")
        return name

    # -- the columnar read path (ADBC -> Arrow -> pandas) -----------------------------------------
    def arrow_reader_available(self) -> bool:
        """True if `iter_predictions(reader="arrow")` can work here: the ADBC driver for this database
        is installed and the database is not SQLite's in-memory one (another connection cannot see it)."""
        if self.dialect == "sqlite" and self.url.database in (None, "", ":memory:"):
            return False
        from importlib.util import find_spec

        return find_spec(f"adbc_driver_{self.dialect}") is not None

    def _adbc_connect(self) -> Any:
        if self.dialect == "sqlite":
            import adbc_driver_sqlite.dbapi

            return adbc_driver_sqlite.dbapi.connect(str(Path(str(self.url.database)).expanduser()))
        import adbc_driver_postgresql.dbapi

        # libpq takes the same URL without SQLAlchemy's "+driver"; keep password and query options.
        uri = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            return adbc_driver_postgresql.dbapi.connect(uri)
        except Exception as exc:  # one error type for "the store is unreachable", whichever reader
            from sqlalchemy.exc import OperationalError

            raise OperationalError("connect (ADBC reader)", None, exc) from exc

    def _adbc_sql(self, stmt: Any, n_params: int) -> str:
        """`stmt` as SQL text with the ADBC driver's positional placeholders (`?` / `$1`)."""
        sql = str(stmt.compile(dialect=self.engine.dialect))
        if self.dialect == "sqlite":
            return sql  # SQLite's compiler already writes "?"
        for i in range(n_params):  # the psycopg dialect here is compiled with paramstyle "format"
            sql = sql.replace("%s", f"${i + 1}", 1)
        if "%s" in sql or "%(" in sql:
            raise RuntimeError("unexpected placeholders in the window query")
        return sql.replace("%%", "%")

    def _iter_arrow(self, stmt: Any, cols: Sequence[Any], bounds: Sequence[datetime], chunksize: int) -> Iterator[pd.DataFrame]:
        import pyarrow as pa

        names = [c.name for c in cols]
        schema = pa.schema([pa.field(c.name, _arrow_type(c)) for c in cols])
        # SQLite stores DATETIME as text in SQLAlchemy's format, so bounds are bound as that text
        # (the same comparison SQLAlchemy makes); PostgreSQL gets naive UTC timestamps.
        params = [self._bind_datetime(b) for b in bounds] if self.dialect == "sqlite" else list(bounds)
        sql = self._adbc_sql(stmt, len(params))
        decode = _JsonListDecoder()
        conn = self._adbc_connect()
        try:
            cur = conn.cursor()
            try:
                if self.dialect == "sqlite":
                    # Batch size in rows; the driver infers each batch's types from its values.
                    cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(min(chunksize, 65_536))})
                cur.execute(sql, params or None)
                pending: list[Any] = []
                held = 0
                empty = True
                for batch in cur.fetch_record_batch():
                    pending.append(_conform(batch, schema))
                    held += batch.num_rows
                    while held >= chunksize:
                        table = pa.Table.from_batches(pending, schema=schema)
                        yield _arrow_frame(table.slice(0, chunksize), names, decode)
                        rest = table.slice(chunksize)
                        pending, held = rest.to_batches(), rest.num_rows
                        empty = False
                if held or empty:
                    yield _arrow_frame(pa.Table.from_batches(pending, schema=schema), names, decode)
            finally:
                cur.close()  # before the connection (ADBC refuses to close a connection with open cursors)
        finally:
            conn.close()

    @staticmethod
    def _frame_dtypes(cols: Sequence[Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for c in cols:
            if isinstance(c.type, DateTime):
                out[c.name] = "datetime"
            elif isinstance(c.type, Integer):
                out[c.name] = "Int64"
            elif isinstance(c.type, Float):
                out[c.name] = "float64"
            elif c.name == "warnings":
                out[c.name] = "json"
        return out

    # -- lifecycle ------------------------------------------------------------------------------
    def ping(self) -> bool:
        """True if the store answers a trivial query now (never raises)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def dispose(self) -> None:
        """Close all pooled connections (call at shutdown; the store can be used again after)."""
        self.engine.dispose()


def store_error_message(url: Any, exc: BaseException, setting: str = "DRIFTLIGHT_LOG_STORE_URL") -> str:
    """One line naming the setting, the URL without its password and the driver's own first line
    (e.g. "connection refused"), instead of a traceback."""
    safe = make_url(str(url) if not hasattr(url, "render_as_string") else url).render_as_string(hide_password=True)
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return f"cannot use the prediction log store {setting}={safe}: {type(orig).__name__}: {first}"


def log_store_from_settings(settings: Settings, contract: Contract) -> LogStore:
    """The process's prediction log: the settings' URL, one `f_` column per feature the service serves."""
    from features.pipeline import build_features

    return LogStore(settings.resolved_log_store_url, contract, [str(n) for n in build_features(contract).get_feature_names_out()])


def _as_utc(value: Any) -> datetime:
    ts = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _frame(rows: Sequence[Any], names: list[str], dtypes: Mapping[str, str]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(list(rows), columns=names)
    for name, kind in dtypes.items():
        if kind == "datetime":
            df[name] = pd.to_datetime(df[name]).dt.tz_localize("UTC")
        elif kind == "json":
            df[name] = [json.loads(v) if v is not None else [] for v in df[name]]
        else:
            df[name] = df[name].astype(kind)
    return df


def _label_batch(ids: list[Any], labels: list[Any], received: list[Any], schema: Any) -> Any:
    """Label rows as a driver returned them (received_at as naive UTC datetimes, or SQLite's DATETIME
    text from the raw cursor) as one record batch of `schema` (`LogStore._labels_schema`)."""
    import pyarrow as pa

    arrays = [pa.array(ids), pa.array(labels), pa.array(received)]  # inferred, then cast by _conform
    return _conform(pa.RecordBatch.from_arrays(arrays, names=schema.names), schema)


def _arrow_type(col: Any) -> Any:
    """The Arrow type a log column is read into (SQLite DATETIME text is parsed later)."""
    import pyarrow as pa

    if isinstance(col.type, DateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(col.type, Integer):
        return pa.int64()
    if isinstance(col.type, Float):
        return pa.float64()
    return pa.string()


def _conform(batch: Any, schema: Any) -> Any:
    """A driver's record batch cast to the log's own types, column by column.

    SQLite's driver infers types per batch from the values (an all-NULL batch column is `null`, a
    DATETIME is text): cast each to the declared type. ISO text -> timestamp is Arrow's own parser.
    """
    import pyarrow as pa

    arrays = []
    for i, field in enumerate(schema):
        arr = batch.column(i)
        if pa.types.is_timestamp(field.type) and not pa.types.is_timestamp(arr.type):
            arr = arr.cast(pa.string()).cast(pa.timestamp("us")).cast(field.type)
        elif pa.types.is_timestamp(field.type) and arr.type.tz is None:
            arr = arr.cast(pa.timestamp("us")).cast(field.type)  # naive UTC from PostgreSQL
        else:
            arr = arr.cast(field.type)
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class _JsonListDecoder:
    """Decode the `warnings` column: each distinct JSON text once, a fresh list per row."""

    def __init__(self) -> None:
        self._seen: dict[str | None, list[Any]] = {None: []}

    def __call__(self, values: Any) -> list[list[Any]]:
        seen = self._seen
        out = []
        for v in values:
            got = seen.get(v)
            if got is None:
                got = seen[v] = json.loads(v)
            out.append(list(got))
        return out


def _arrow_frame(table: Any, names: list[str], decode: _JsonListDecoder) -> pd.DataFrame:
    import pyarrow as pa

    if table.column_names != names:  # reorder in Arrow (no copy), not in pandas (a copy of every column)
        table = table.select(names)
    df = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get, coerce_temporal_nanoseconds=True, split_blocks=True)
    if "warnings" in df:
        df["warnings"] = decode(df["warnings"].tolist())
    return df


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the monitor read while the writer writes; NORMAL is durable across process crashes
    # in WAL mode (only an OS crash can lose the last commits); busy_timeout (ms) makes concurrent
    # writers (several workers) wait for the lock instead of failing at once.
    # wal_autocheckpoint (pages, ~40 MB) and cache_size (-KiB, 32 MiB per connection): random ids
    # scatter index writes, and the default 1000-page checkpoints rewrote the same pages over and
    # over; measured here on 200k rows: 20.9k -> 29.0k rows/s.
    cur = dbapi_conn.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "busy_timeout=5000",
        "wal_autocheckpoint=10000",
        "cache_size=-32768",
    ):
        cur.execute(f"PRAGMA {pragma}")
    cur.close()
