"""Incremental sync of one source into a project's dataset (plain function ``sync_source``).

The source prefix is listed and compared with the catalog's ledger for that source
(key, ETag, size); only new or changed objects are downloaded, by ``concurrency``
threads fed from the listing as it goes (hashed while the bytes stream in, size and,
where the ETag is one, MD5 verified; see ``S3Source.download``), moved into the blob
store and recorded in batched transactions by
one writer thread while the downloads go on. A crash leaves at most orphan blobs; a
re-run finishes the rest.

Concurrency: the database holds each distinct content once per project (a unique
index over the live items' ``(dataset_id, sha256)``) and each source key once; rows
are inserted with ``ON CONFLICT DO NOTHING`` and an insert that loses a race is
counted as a duplicate (other content) or as unchanged (the same key, inserted by a
concurrent run of the same source). So any number of runs may import into one project
at once: they finish with the catalog one run alone would give.
"""

from __future__ import annotations

import errno
import gc
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import PurePosixPath

import sqlalchemy as sa

from edgeloop.catalog.store import Catalog
from edgeloop.catalog.tables import files, items, now, source_objects
from edgeloop.errors import SourceError
from edgeloop.ingest.source import Fetched, Listed, S3Source, SourceSpec, describe
from edgeloop.storage.blobs import BlobStore

log = logging.getLogger(__name__)

BATCH = 500
LOOKAHEAD = 2000  # listed objects queued ahead of the downloads (the next page's request
# then overlaps them)
SYNC_KEYS = (
    "listed",
    "new",
    "updated",
    "unchanged",
    "duplicates",
    "skipped",
    "failed",
    "deleted",
    "gone",
)
SHOWN_FAILURES = 5


class _Ledger:
    """What the catalog held for one source when the sync started.

    A snapshot: concurrent runs may change the catalog meanwhile, which the database's
    unique indexes catch at insert time.
    """

    def __init__(self, conn: sa.Connection, dataset_id: int, source: str) -> None:
        so = source_objects.c
        self.objects = {
            r.key: r
            for r in conn.execute(
                sa.select(so.key, so.etag, so.size, so.item_id).where(
                    (so.dataset_id == dataset_id) & (so.source == source)
                )
            )
        }
        ic = items.c
        self.items = {
            r.source_key: r
            for r in conn.execute(
                sa.select(ic.id, ic.source_key, ic.sha256, ic.deleted_at).where(
                    (ic.dataset_id == dataset_id) & (ic.source == source)
                )
            )
        }


def _insert(conn: sa.Connection, table: sa.Table):  # -> a dialect insert with on_conflict_*
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def _live_item(conn: sa.Connection, dataset_id: int, sha256: str) -> int | None:
    return conn.execute(
        sa.select(items.c.id).where(
            (items.c.dataset_id == dataset_id)
            & (items.c.sha256 == sha256)
            & items.c.deleted_at.is_(None)
        )
    ).scalar()


class _Batch:
    """Records one batch of fetched objects in the caller's transaction."""

    def __init__(
        self, conn: sa.Connection, ledger: _Ledger, dataset_id: int, spec: SourceSpec
    ) -> None:
        self.conn = conn
        self.ledger = ledger
        self.dataset_id = dataset_id
        self.spec = spec
        self.ts = now()
        self.stats: Counter[str] = Counter()
        self.placed: list[tuple[Fetched, int]] = []  # (object, the item holding its content)

    def record(self, batch: list[Fetched]) -> Counter[str]:
        new: list[Fetched] = []
        for f in sorted(batch, key=lambda f: (f.sha256, f.obj.key)):
            known = self.ledger.items.get(f.obj.key)
            if known is None:
                new.append(f)
            elif known.sha256 == f.sha256 and known.deleted_at is None:
                self.stats["unchanged"] += 1
                self.placed.append((f, known.id))
            else:
                self._update(f, known.id)
        if new:
            self._insert_new(new)
        self._write_ledger()
        return self.stats

    def _update(self, f: Fetched, item_id: int) -> None:
        """The key's content changed (or came back): update its item in place, unless
        that content is already another live item, which makes this one a duplicate."""
        conn = self.conn
        try:
            with conn.begin_nested():
                conn.execute(
                    items.update()
                    .where(items.c.id == item_id)
                    .values(
                        sha256=f.sha256,
                        size=f.obj.size,
                        etag=f.obj.etag,
                        updated_at=self.ts,
                        deleted_at=None,
                        label_pending=True,
                    )
                )
        except sa.exc.IntegrityError:
            other = _live_item(conn, self.dataset_id, f.sha256)
            if other is None:
                raise
            conn.execute(
                items.update()
                .where((items.c.id == item_id) & items.c.deleted_at.is_(None))
                .values(deleted_at=self.ts, updated_at=self.ts)
            )
            log.info("duplicate content: %s is item %s", self.spec.url(f.obj.key), other)
            self.stats["duplicates"] += 1
            self.placed.append((f, other))
            return
        conn.execute(  # the synced file only: files a block added to the item stay
            files.update()
            .where((files.c.item_id == item_id) & (files.c.name == PurePosixPath(f.obj.key).name))
            .values(sha256=f.sha256, size=f.obj.size, blob_path=f.blob)
        )
        self.stats["updated"] += 1
        self.placed.append((f, item_id))

    def _insert_new(self, new: list[Fetched]) -> None:
        conn, spec = self.conn, self.spec
        first: dict[str, Fetched] = {}  # one insert per content; the rest duplicate it
        for f in new:
            first.setdefault(f.sha256, f)
        rows = [
            {
                "dataset_id": self.dataset_id,
                "name": f.obj.key[len(spec.prefix) :],
                "label": None,
                "category": None,
                "source": spec.uri,
                "source_key": f.obj.key,
                "etag": f.obj.etag,
                "sha256": f.sha256,
                "size": f.obj.size,
                "metadata": "{}",
                "label_pending": True,
                "created_at": self.ts,
                "updated_at": self.ts,
            }
            for f in first.values()
        ]
        inserted = {
            r.source_key: r.id
            for r in conn.execute(
                _insert(conn, items)
                .on_conflict_do_nothing()
                .returning(items.c.id, items.c.source_key),
                rows,
            )
        }
        if inserted:
            conn.execute(
                files.insert(),
                [
                    {
                        "item_id": inserted[f.obj.key],
                        "name": PurePosixPath(f.obj.key).name,
                        "sha256": f.sha256,
                        "size": f.obj.size,
                        "blob_path": f.blob,
                    }
                    for f in first.values()
                    if f.obj.key in inserted
                ],
            )
        self.stats["new"] += len(inserted)
        for f in new:
            if f.obj.key in inserted:
                self.placed.append((f, inserted[f.obj.key]))
            else:
                self._lost_race(f)

    def _lost_race(self, f: Fetched) -> None:
        """Not inserted: its key is already an item (a concurrent run of this source) or
        its content is (a duplicate, from this batch or any other run)."""
        ic = items.c
        same_key = self.conn.execute(
            sa.select(ic.id, ic.sha256, ic.deleted_at).where(
                (ic.dataset_id == self.dataset_id)
                & (ic.source == self.spec.uri)
                & (ic.source_key == f.obj.key)
            )
        ).first()
        if same_key is not None:
            if same_key.sha256 == f.sha256 and same_key.deleted_at is None:
                self.stats["unchanged"] += 1
                self.placed.append((f, same_key.id))
            else:
                self._update(f, same_key.id)
            return
        other = _live_item(self.conn, self.dataset_id, f.sha256)
        if other is None:
            raise SourceError(
                f"{self.spec.url(f.obj.key)}: the catalog refused the item and holds no "
                "item with its key or content"
            )
        log.info("duplicate content: %s is item %s", self.spec.url(f.obj.key), other)
        self.stats["duplicates"] += 1
        self.placed.append((f, other))

    def _write_ledger(self) -> None:
        if not self.placed:
            return
        stmt = _insert(self.conn, source_objects)
        self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["dataset_id", "source", "key"],
                set_={
                    name: stmt.excluded[name]
                    for name in ("etag", "size", "sha256", "item_id", "updated_at")
                },
            ),
            [
                {
                    "dataset_id": self.dataset_id,
                    "source": self.spec.uri,
                    "key": f.obj.key,
                    "etag": f.obj.etag,
                    "size": f.obj.size,
                    "sha256": f.sha256,
                    "item_id": item_id,
                    "updated_at": self.ts,
                }
                for f, item_id in sorted(self.placed, key=lambda p: p[0].obj.key)
            ],
        )


def record_objects(
    conn: sa.Connection, dataset_id: int, spec: SourceSpec, fetched: list[Fetched]
) -> tuple[Counter[str], list[tuple[Fetched, int]]]:
    """Record objects already in the blob store exactly as the sync records a batch (same
    dedup: ON CONFLICT per project; a key whose content changed is updated in place), in
    the caller's transaction. Returns the counts and (object, the item holding its
    content). Used by the uploads (ingestion API, device intake); ``spec`` needs only
    ``uri``, ``prefix`` and ``url(key)``."""
    batch = _Batch(conn, _Ledger(conn, dataset_id, spec.uri), dataset_id, spec)
    return batch.record(fetched), batch.placed


def _is_retryable(exc: BaseException) -> bool:
    """A PostgreSQL deadlock or serialization failure between concurrent runs."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "pgcode", None) in ("40P01", "40001")


def _commit_batch(
    catalog: Catalog, ledger: _Ledger, dataset_id: int, spec: SourceSpec, batch: list[Fetched]
) -> Counter[str]:
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random

    for attempt in Retrying(
        stop=stop_after_attempt(5),
        wait=wait_random(0.05, 0.5),
        retry=retry_if_exception(_is_retryable),
        reraise=True,
    ):
        with attempt, catalog.begin() as conn:
            return _Batch(conn, ledger, dataset_id, spec).record(batch)
    raise AssertionError("unreachable")


def _record(
    catalog: Catalog,
    ledger: _Ledger,
    dataset_id: int,
    spec: SourceSpec,
    batch: list[Fetched],
    failures: list[str],
) -> Counter[str]:
    """Commit a batch; if the database refuses it, commit object by object so that one
    bad object (e.g. a key PostgreSQL cannot store) fails alone, named."""
    try:
        return _commit_batch(catalog, ledger, dataset_id, spec, batch)
    except Exception as exc:
        if len(batch) == 1:
            failures.append(f"{spec.url(batch[0].obj.key)}: cannot record it: {describe(exc)}")
            log.error("%s", failures[-1])
            return Counter()
        log.warning("the catalog refused a batch (%s); recording its objects one by one", exc)
    stats: Counter[str] = Counter()
    for f in batch:
        stats += _record(catalog, ledger, dataset_id, spec, [f], failures)
    return stats


def _mark_deleted(catalog: Catalog, dataset_id: int, spec: SourceSpec, keys: list[str]) -> int:
    ts, deleted = now(), 0
    with catalog.begin() as conn:
        for i in range(0, len(keys), BATCH):
            chunk = keys[i : i + BATCH]
            deleted += conn.execute(
                items.update()
                .where(
                    (items.c.dataset_id == dataset_id)
                    & (items.c.source == spec.uri)
                    & items.c.source_key.in_(chunk)
                    & items.c.deleted_at.is_(None)
                )
                .values(deleted_at=ts, updated_at=ts)
            ).rowcount
            conn.execute(
                source_objects.delete().where(
                    (source_objects.c.dataset_id == dataset_id)
                    & (source_objects.c.source == spec.uri)
                    & source_objects.c.key.in_(chunk)
                )
            )
    return deleted


def _no_space(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        exc = exc.__cause__
    return False


_frozen = 0  # syncs of this process under way inside _collector_spares_older_objects
_frozen_lock = threading.Lock()


@contextmanager
def _collector_spares_older_objects() -> Iterator[None]:
    """Keep the cyclic garbage collector off the objects that existed before the sync.

    A task process holds a large heap (Airflow, botocore, SQLAlchemy); the objects the
    sync keeps (listing, ledger, fetched records) trigger full collections that walk all
    of it while every download thread waits (about 0.3 s each, twice for 3,000 objects).
    ``gc.freeze`` moves the existing objects out of the collector's reach; they return
    when the last sync of the process ends. Collections of the sync's own objects go on.
    """
    global _frozen
    with _frozen_lock:
        if _frozen == 0:
            gc.freeze()
        _frozen += 1
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen -= 1
            if _frozen == 0:
                gc.unfreeze()


def format_sync(uri: str, stats: dict[str, int], seconds: float | None = None) -> list[str]:
    """The sync result as lines an operator reads."""
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    lines = [
        f"synced {uri}{took}: listed {stats['listed']} object(s)",
        f"  new {stats['new']}, updated {stats['updated']}, unchanged {stats['unchanged']}, "
        f"duplicates {stats['duplicates']} (content already in the project)",
        f"  skipped {stats['skipped']} (folders and file types not imported), "
        f"failed {stats['failed']}, deleted {stats['deleted']}",
    ]
    if stats.get("gone"):
        lines.append(
            f"  {stats['gone']} item(s) of this source are no longer in it and were kept "
            "(syncDeletions is off)"
        )
    return lines


def sync_source(
    spec: SourceSpec,
    project: str,
    *,
    run_id: str = "manual",
    sync_deletions: bool = False,
    file: str | None = None,
    catalog: Catalog | None = None,
    blobs: BlobStore | None = None,
    source: S3Source | None = None,
) -> dict[str, int]:
    """Bring the project's dataset in line with the source prefix; return the counts.

    Raises SourceError, naming each failed object, after committing every object that
    succeeded; a re-run fetches only what is still missing.
    """
    catalog = catalog or Catalog.from_settings()
    blobs = blobs or BlobStore.from_settings()
    source = source or S3Source(spec, file=file)
    blobs.remove_stale_temp()
    stats = dict.fromkeys(SYNC_KEYS, 0)
    started = time.monotonic()
    with catalog.begin() as conn:
        dataset_id = catalog.dataset_id(conn, project)
        ledger = _Ledger(conn, dataset_id, spec.uri)
    log.info("syncing %s into project %s (run %s)", spec.uri, project, run_id)

    failures: list[str] = []
    recorded: Counter[str] = Counter()  # the writer's counts (stats belongs to the lister)
    fetched = 0
    no_space = threading.Event()  # a download found the disk full: stop listing
    stop = threading.Event()  # drop what is queued (downloads under way finish)
    # The listing runs ahead of the downloads by at most `lookahead` objects. When it gets
    # there it waits until the downloads have taken half of them: one wake-up per
    # lookahead/2 objects, where a bounded queue.Queue would wake it for every object
    # taken (a futex wake-up made while holding the GIL, then two GIL hand-overs).
    todo: queue.SimpleQueue[Listed | None] = queue.SimpleQueue()
    lookahead = max(LOOKAHEAD, 2 * spec.concurrency)
    room = threading.Event()
    # Results reach the writer a batch at a time: it wakes once per BATCH objects, not
    # once per object (a futex wake-up and a GIL hand-over each, 16 threads competing).
    done: queue.SimpleQueue[list[Fetched | BaseException] | None] = queue.SimpleQueue()
    arrived: list[Fetched | BaseException] = []
    arrived_lock = threading.Lock()

    def deliver(result: Fetched | BaseException) -> None:
        if not isinstance(result, Fetched):
            log.error("%s", result)
        with arrived_lock:
            arrived.append(result)
            if len(arrived) < BATCH:
                return
            batch = arrived.copy()
            arrived.clear()
        done.put(batch)

    def fetch() -> None:  # one of spec.concurrency download threads
        while (obj := todo.get()) is not None:
            if not room.is_set() and todo.qsize() <= lookahead // 2:
                room.set()
            if stop.is_set():
                continue
            try:
                deliver(source.download(obj, blobs))
            except Exception as exc:
                if _no_space(exc):
                    no_space.set()
                    stop.set()
                deliver(exc)

    def record() -> None:  # the one catalog writer: batches commit while downloads go on
        nonlocal fetched
        while (batch := done.get()) is not None:
            pending = [r for r in batch if isinstance(r, Fetched)]
            failures.extend(str(r) for r in batch if not isinstance(r, Fetched))
            fetched += len(pending)
            if pending:
                recorded.update(_record(catalog, ledger, dataset_id, spec, pending, failures))
            if len(batch) == BATCH:  # not after the last, partial one: the summary follows
                log.info(
                    "progress: %s listed, %s fetched, %s failed",
                    stats["listed"],
                    fetched,
                    len(failures),
                )

    seen: set[str] = set()
    # Downloads start while the listing goes on (up to LOOKAHEAD objects ahead of them).
    with (
        _collector_spares_older_objects(),
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-record") as writer,
    ):
        recording = writer.submit(record)
        threads: list[threading.Thread] = []  # started with the first download (a re-sync
        # with no change starts none)
        try:
            for obj in source.list():
                stats["listed"] += 1
                if stats["listed"] % 10_000 == 0:
                    log.info("progress: %s listed, %s fetched", stats["listed"], fetched)
                if not source.wanted(obj.key):
                    stats["skipped"] += 1
                    continue
                seen.add(obj.key)
                if "\x00" in obj.key:
                    deliver(
                        SourceError(
                            f"{spec.url(obj.key)}: the key holds a NUL character, which the "
                            "catalog cannot store; rename the object"
                        )
                    )
                    continue
                known = ledger.objects.get(obj.key)
                if known is not None and known.etag == obj.etag and known.size == obj.size:
                    stats["unchanged"] += 1
                    continue
                while len(threads) < spec.concurrency:
                    thread = threading.Thread(
                        target=fetch, name=f"sync-fetch-{len(threads)}", daemon=True
                    )
                    thread.start()
                    threads.append(thread)
                todo.put(obj)
                if todo.qsize() >= lookahead:
                    room.clear()  # then look again: a download may have set it meanwhile
                    if todo.qsize() > lookahead // 2:
                        room.wait()
                if no_space.is_set():
                    break
        except BaseException:  # a listing error: commit what was fetched, drop the queue
            stop.set()
            raise
        finally:
            for _ in threads:
                todo.put(None)
            for thread in threads:
                thread.join()
            if arrived:
                done.put(arrived)
            done.put(None)
            recording.result()
    for key, n in recorded.items():
        stats[key] += n

    if not no_space.is_set():
        gone = sorted(
            key for key, row in ledger.items.items() if row.deleted_at is None and key not in seen
        )
        if sync_deletions:
            missing = sorted(set(ledger.objects) - seen)
            if missing:
                stats["deleted"] = _mark_deleted(catalog, dataset_id, spec, missing)
        else:
            stats["gone"] = len(gone)
    stats["failed"] = len(failures)
    for line in format_sync(spec.uri, stats, time.monotonic() - started):
        log.info("%s", line)
    if no_space.is_set():
        raise SourceError(
            f"stopped syncing {spec.uri}: no space left for downloads in {blobs.tmp} "
            f"({len(failures)} object(s) failed, the others are stored; free space and "
            f"re-run): {failures[0]}"
        )
    if failures:
        shown = "; ".join(failures[:SHOWN_FAILURES])
        more = (
            f" (and {len(failures) - SHOWN_FAILURES} more)"
            if len(failures) > SHOWN_FAILURES
            else ""
        )
        raise SourceError(
            f"{len(failures)} object(s) of {spec.uri} could not be fetched "
            f"(the others are stored; re-run to retry): {shown}{more}"
        )
    return stats
