"""``lab study --workers N`` / ``--scheduler ADDR``: a study's units on a Dask cluster.

Dask distributed does the distributing: a LocalCluster of N worker processes (one thread
each) on this machine, or an existing cluster (``dask scheduler`` + ``dask worker --resources
guest=1`` on each machine, or SSHCluster). Every unit (lab/units.py: one boot, one cell's
repeats) asks for the worker resource ``guest=1``, so a worker runs one QEMU at a time.

The host hands out units itself, longest first (lab/unit_order.py), no more at a time than the
cluster has guest slots: Dask binds a resource-restricted task to a worker when it is
submitted, so submitting all at once left one worker idle while the other had a queue.

This process stays the only writer of the run directory: results are taken with
``as_completed`` and appended as they arrive, so resume, the soft-lockup reboot, exit codes and
the one progress bar behave as in the serial driver (lab/trace.py). A worker that dies
mid-unit (its QEMU dies with it: lab/guest/qemu.py's watchdog) sent nothing back; the scheduler
runs the unit again elsewhere, up to ``ALLOWED_FAILURES`` times. Dask ``retries`` stay 0: a
lost guest or a failing workload comes back as data (the host applies the lab's own rules), so
the only exceptions are bugs, and rerunning a bug is no help. Records are deduplicated by key
on arrival, so nothing is recorded twice.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import ui
from .errors import GuestLostError, LabError, UsageError
from .results import RunDir
from .trace import (
    Matrix,
    git_commit,
    note_reboot,
    record_key,
    recorded_keys,
    run_status,
)
from .tracers import get_backend
from .unit_order import longest_first
from .units import Unit, UnitResult, fresh_records, measure_unit, plan_units

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["dask_client", "run_matrix_dask", "RESOURCE", "ALLOWED_FAILURES", "check_options"]

#: The worker resource one unit holds: one guest per worker (`dask worker --resources guest=1`).
RESOURCE = "guest"
#: How many workers may die running one unit before the study gives up on it (Dask's
#: distributed.scheduler.allowed-failures, for a LocalCluster's scheduler).
ALLOWED_FAILURES = 3
#: Seconds to reach a scheduler, and to wait for a first worker with the resource.
CONNECT_TIMEOUT = 15


def check_options(workers: int | None, scheduler: str | None) -> None:
    """Usage errors before anything starts: at least one worker; one way to get a cluster."""
    if workers is not None and scheduler is not None:
        raise UsageError("--workers starts a local cluster and --scheduler uses an existing "
                         "one: give one of them")
    if workers is not None and not 1 <= workers <= 64:
        raise UsageError(f"--workers {workers} out of range: 1 to 64")
    if scheduler is not None and "://" not in scheduler:
        raise UsageError(f"--scheduler {scheduler!r}: give an address such as "
                         "tcp://HOST:8786")


@contextmanager
def dask_client(workers: int | None, scheduler: str | None) -> Iterator[Client]:
    """A client of a new LocalCluster of ``workers`` processes, or of ``scheduler``'s cluster;
    the local cluster (workers, guests) is gone when the block ends."""
    # Dask's info lines (scheduler at ..., worker started) would bury the study's own lines.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    import dask
    from distributed import Client, LocalCluster

    check_options(workers, scheduler)
    if workers is not None:
        with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}), \
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                             resources={RESOURCE: 1}, host="127.0.0.1", dashboard_address=":0",
                             memory_limit=0, silence_logs=logging.WARNING) as cluster, \
                Client(cluster) as client:
            yield client
        return
    assert scheduler is not None
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as e:
        raise UsageError(f"cannot reach the Dask scheduler at {scheduler}: "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    with client:
        _wait_for_guest_worker(client, scheduler)
        yield client


def _wait_for_guest_worker(client: Client, scheduler: str) -> None:
    """A cluster without a worker offering ``guest`` would queue the study forever."""
    try:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
    except TimeoutError:
        raise UsageError(f"the Dask cluster at {scheduler} has no workers") from None
    workers = client.scheduler_info().get("workers", {}).values()
    if not any(w.get("resources", {}).get(RESOURCE, 0) >= 1 for w in workers):
        raise UsageError(f"no worker of {scheduler} offers the '{RESOURCE}' resource: start "
                         f"them with 'dask worker {scheduler} --nthreads 1 "
                         f"--resources {RESOURCE}=1'")


def _on_worker(unit: Unit) -> UnitResult:
    """The task a worker runs (a module-level function: workers import it by name)."""
    from distributed import get_worker

    result = measure_unit(unit)
    result.worker["address"] = get_worker().address
    return result


def _submit(client: Client, unit: Unit) -> Future:
    key = f"lab-unit-{unit.config}-{unit.workload}-{unit.index}-a{unit.attempt}-" \
          f"{uuid.uuid4().hex[:8]}"
    return client.submit(_on_worker, unit, key=key, resources={RESOURCE: 1}, retries=0,
                         pure=False)


def guest_slots(client: Client) -> int:
    """How many units the cluster can run at once now: its workers' ``guest`` resources (at
    least 1, so a study waits for a worker rather than stopping)."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {}).values()
    return max(1, int(sum(w.get("resources", {}).get(RESOURCE, 0) for w in workers)))


def merge_result(run: RunDir, res: UnitResult, done: set[tuple]) -> list[dict[str, Any]]:
    """Write what a unit brought back into the run; return the records that were new."""
    for name, meta in res.meta.items():
        run.set_config_meta(name, meta)
    for name, data in res.written.items():
        run.write_file(name, data)
    for name, data in res.appended.items():
        run.append_file(name, data)
    manifest = run.manifest()
    workers = manifest.get("workers", {})
    addr = res.worker.get("address", res.worker.get("hostname", "?"))
    workers[addr] = {k: res.worker.get(k) for k in ("hostname", "platform", "cpus")}
    # Which worker ran what, for how long: the schedule can be read back (and the order's
    # estimates checked against it: lab/unit_order.py).
    u = res.unit
    timeline = [*manifest.get("unit_log", []),
                {"config": u.config, "workload": u.workload, "repeats": list(u.repeats),
                 "attempt": u.attempt, "worker": addr, "seconds": res.seconds,
                 "estimated_guest_s": u.estimated_guest_s}]
    run.update_manifest(workers=workers, unit_log=timeline)
    fresh = fresh_records(res.records, done)
    for rec in fresh:
        run.append_record(rec)
    return fresh


def _failure(run: RunDir, res: UnitResult) -> LabError:
    kind, message = res.error or ("LabError", "?")
    if kind == "GuestLostError":
        return GuestLostError(message, str(run.path / f"console-{res.unit.config}.log"))
    if kind in ("UsageError", "MissingPackageError"):
        return UsageError(message)
    return LabError(message)


def run_matrix_dask(
    m: Matrix,
    run: RunDir,
    client: Client,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_skip: Callable[[int], None] | None = None,
    check_commit: bool = True,
) -> RunDir:
    """Measure every (configuration, cell, repeat) not yet in ``run`` on ``client``'s cluster,
    one boot per unit, appending records here as units finish. ``check_commit``: workers
    refuse a unit unless their lab checkout is at this one's commit."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    done = recorded_keys(run)
    get_backend(m.backend)
    # Workers elsewhere must run the host's commit; a LocalCluster's share its checkout (and
    # a commit made while the study runs must not stop it).
    units = plan_units(m, done, run.run_id, git_commit() if check_commit else None)
    skipped = m.total_repeats - sum(len(u.repeats) for u in units)
    if skipped and on_skip:
        on_skip(skipped)
    queue = longest_first(units)
    with run_status(run):
        futures: list[Future] = []
        pending = as_completed()

        def hand_out() -> None:
            """Fill the cluster's free guest slots from the head of the queue."""
            busy = sum(1 for f in futures if not f.done())
            for _ in range(min(len(queue), guest_slots(client) - busy)):
                futures.append(_submit(client, queue.pop(0)))
                pending.add(futures[-1])

        hand_out()
        try:
            for fut in pending:
                try:
                    res: UnitResult = fut.result()
                except KilledWorker as e:
                    raise LabError(f"workers died {ALLOWED_FAILURES} times running one unit "
                                   f"of the study ({e}); the records made are kept") from None
                if res.log.strip():
                    ui.err_console.print(res.log.rstrip(), markup=False, highlight=False)
                for rec in merge_result(run, res, done):
                    if on_record:
                        on_record(rec)
                if res.error is None:
                    hand_out()
                    continue
                u = res.unit
                err = _failure(run, res)
                # The serial driver's safety net, per unit: a soft lockup gets one more boot.
                if (isinstance(err, GuestLostError) and u.attempt == 1
                        and err.reason.startswith("soft-lockup")):
                    left = tuple(i for i in u.repeats
                                 if record_key(u.config, u.workload, u.params, i) not in done)
                    note_reboot(run, u.config, err.reason, len(left))
                    queue.insert(0, replace(u, repeats=left, attempt=2))
                    hand_out()
                    continue
                raise err
        finally:
            client.cancel([f for f in futures if not f.done()])
    return run

