"""``FleetState`` (service/fleet/state.py) on SQL: the same statements for both backends.

Each call is one short transaction on its own connection, run directly (not through the
prediction writer's queue: a rollout must not wait behind predictions). ``set_desired`` runs
in the backend's *exclusive* transaction (SQLite ``BEGIN IMMEDIATE``; PostgreSQL a transaction
holding ``pg_advisory_xact_lock``), so the read of the highest generation and the insert of
the next are one step across every replica: concurrent rollouts get distinct, consecutive
generations. ``fleet_desired`` keeps every rollout (its history); the newest row is the
desired state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from service.fleet.state import DesiredModels, InstanceReport
from service.store.migrations import Executor

_DESIRED = "generation, codec, classifier, requested_at, requested_by"
# A kind a rollout leaves out (None) keeps the newest rollout's ref, merged inside the same
# exclusive transaction: two rollouts of different kinds at once both take effect.
_NEWEST = "SELECT {} FROM fleet_desired ORDER BY generation DESC LIMIT 1"
_INSTANCE = "instance, codec, classifier, generation, status, error, started_at, heartbeat_at"
# exclusive=True: the transaction serialises with every other exclusive one (all replicas).
Transaction = Callable[[bool], AbstractContextManager[Executor]]
Guard = Callable[[str], AbstractContextManager[None]]


class SqlFleetState:
    def __init__(self, transaction: Transaction, placeholder: str, guard: Guard) -> None:
        self._tx = transaction
        self._p = placeholder
        self._guard = guard  # database errors -> StoreUnavailable, counted as op "fleet"

    def _sql(self, sql: str) -> str:
        return sql.replace("%s", self._p)

    def desired(self) -> DesiredModels | None:
        with self._guard("fleet"), self._tx(False) as db:
            row = db.execute(
                f"SELECT {_DESIRED} FROM fleet_desired ORDER BY generation DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _desired(row)

    def set_desired(
        self, codec: str | None, classifier: str | None, requested_by: str
    ) -> DesiredModels:
        with self._guard("fleet"), self._tx(True) as db:
            row = db.execute(
                self._sql(
                    f"INSERT INTO fleet_desired ({_DESIRED}) "
                    "SELECT COALESCE(MAX(generation), 0) + 1, "
                    f"COALESCE(%s, ({_NEWEST.format('codec')})), "
                    f"COALESCE(%s, ({_NEWEST.format('classifier')})), %s, %s FROM fleet_desired "
                    f"RETURNING {_DESIRED}"
                ),
                (codec, classifier, time.time(), requested_by),
            ).fetchone()
        return _desired(row)

    def report(self, report: InstanceReport) -> None:
        columns = [c.strip() for c in _INSTANCE.split(",")]
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
        with self._guard("fleet"), self._tx(False) as db:
            db.execute(
                self._sql(
                    f"INSERT INTO fleet_instances ({_INSTANCE}) "
                    f"VALUES ({', '.join(['%s'] * len(columns))}) "
                    f"ON CONFLICT (instance) DO UPDATE SET {updates}"
                ),
                tuple(getattr(report, c) for c in columns),
            )

    def instances(self, max_age: float | None = None) -> list[InstanceReport]:
        sql = f"SELECT {_INSTANCE} FROM fleet_instances"
        args: tuple[float, ...] = ()
        if max_age is not None:
            sql, args = sql + self._sql(" WHERE heartbeat_at >= %s"), (time.time() - max_age,)
        with self._guard("fleet"), self._tx(False) as db:
            rows = db.execute(sql + " ORDER BY instance", args).fetchall()
        return [_instance(r) for r in rows]

    def forget(self, older_than: float) -> int:
        with self._guard("fleet"), self._tx(False) as db:
            cur = db.execute(
                self._sql("DELETE FROM fleet_instances WHERE heartbeat_at < %s"),
                (time.time() - older_than,),
            )
            return int(cur.rowcount)


def _desired(row: Any) -> DesiredModels:
    gen, codec, classifier, requested_at, requested_by = tuple(row)
    return DesiredModels(int(gen), codec, classifier, float(requested_at), requested_by)


def _instance(row: Any) -> InstanceReport:
    inst, codec, classifier, gen, status, error, started, heartbeat = tuple(row)
    return InstanceReport(
        inst, codec, classifier, int(gen), status, error, float(started), float(heartbeat)
    )
