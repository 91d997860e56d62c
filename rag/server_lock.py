"""The write lock of a Chroma server's data, kept on the server: writers with different RAG_HOMEs (and so
different lock files) still take turns. A collection that exists only while a writer holds the lock is the lock,
since creating a collection that exists fails on the server."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

STALE_S = 600.0  # a holder that has not renewed the lock for this long is gone (killed on another machine)
RENEW_S = 30.0


def _lock_name(store: Any) -> str:
    return f"{store.name}__writer"


def _stale(meta: dict[str, Any]) -> bool:
    """The holder died: it ran on this machine and its process is gone, or it stopped renewing long ago."""
    host, _, pid = str(meta.get("owner", "")).partition(":")
    if host == socket.gethostname() and pid.split(":")[0].isdigit():
        try:
            os.kill(int(pid.split(":")[0]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    return time.time() - float(meta.get("renewed", 0)) > STALE_S


def _holder(store: Any) -> dict[str, Any] | None:
    try:
        return dict(store.client.get_collection(_lock_name(store), embedding_function=None).metadata or {})
    except Exception:  # noqa: BLE001  NotFoundError differs between client kinds: released meanwhile
        return None


@contextmanager
def server_write_lock(store: Any) -> Iterator[None]:
    from rag.store import StoreBusy

    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    meta = {"owner": owner, "home": str(store.home.resolve()), "renewed": time.time()}
    for _ in range(3):
        try:
            store.client.create_collection(_lock_name(store), embedding_function=None, metadata=meta)
            break
        except Exception:  # noqa: BLE001  "already exists" is InternalError or UniqueConstraintError by client
            held = _holder(store)
            if held is None:
                continue
            if _stale(held):
                store.client.delete_collection(_lock_name(store))
                continue
            raise StoreBusy(f"store is busy: another process ({held.get('owner', '?').rsplit(':', 1)[0]}, store "
                            f"folder {held.get('home', '?')}) is writing to {store.url}; try again when it "
                            "finishes") from None
    else:
        raise StoreBusy(f"store is busy: could not take the write lock on {store.url}; try again in a moment")
    store._lock_renewed = time.monotonic()
    try:
        yield
    finally:
        held = _holder(store)
        if held is not None and held.get("owner") == owner:
            store.client.delete_collection(_lock_name(store))


def renew_server_lock(store: Any) -> None:
    """Tell other writers this one is alive (at most every RENEW_S seconds)."""
    if time.monotonic() - getattr(store, "_lock_renewed", 0.0) < RENEW_S:
        return
    held = store.client.get_collection(_lock_name(store), embedding_function=None)
    held.modify(metadata={**(held.metadata or {}), "renewed": time.time()})
    store._lock_renewed = time.monotonic()


def server_lock_held(store: Any) -> bool:
    held = _holder(store)
    return held is not None and not _stale(held)
