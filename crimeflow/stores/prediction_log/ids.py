"""Prediction ids: 32 lowercase hex digits, time-ordered (the UUIDv7 layout of RFC 9562).

An id is the unix time in ms (48 bits), the version nibble 7, 12 bits of sub-millisecond time,
the RFC 4122 variant bits and 62 random bits. Ids made later sort higher, within a batch too,
so the log's primary-key index grows at its right edge: a random uuid4 touched about one index
page per inserted row, and SQLite's insert cost grew with the size of the log.

The 62 random bits keep an id unguessable without knowing it (ids key /feedback); the clock
part is not secret (`served_at` is in the response anyway).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

_VERSION_7 = 0x7 << 12  # the version nibble, in the high 64 bits' lowest 16
_VARIANT = np.uint64(1 << 63)  # RFC 4122 variant 0b10; bit 62 stays 0 (random bits are 62)
_SUB_MS_STEPS = 4096  # 12 bits of sub-millisecond time


class PredictionIds:
    """A thread-safe source of strictly increasing time-ordered ids, one at a time or a block."""

    def __init__(self, ids_per_refill: int = 256) -> None:
        self._lock = threading.Lock()
        self._last = -1  # the last 60-bit clock value (ms << 12 | sub-ms) handed out
        # One getrandom() per 256 single ids: a system call on the event loop thread gives up
        # the GIL, and under load the scoring thread then holds it for milliseconds.
        self._refill = 8 * ids_per_refill
        self._pool = b""
        self._at = 0

    def _tick(self) -> int:
        """A 60-bit clock value above every one handed out before (the caller holds the lock)."""
        ns = time.time_ns()
        now = (ns // 1_000_000) << 12 | (ns % 1_000_000) * _SUB_MS_STEPS // 1_000_000
        # The clock stepping back or two calls in one 244 ns step: go on from the last value.
        self._last = now if now > self._last else self._last + 1
        return self._last

    def __call__(self) -> str:
        """One new id as 32 hex digits."""
        with self._lock:
            clock = self._tick()
            if self._at >= len(self._pool):
                self._pool, self._at = os.urandom(self._refill), 0
            rand = int.from_bytes(self._pool[self._at : self._at + 8], "big") >> 2
            self._at += 8
        high = (clock >> 12) << 16 | _VERSION_7 | (clock & 0xFFF)
        return f"{high:016x}{(1 << 63) | rand:016x}"

    def many(self, count: int) -> list[str]:
        """`count` new ids in increasing order: one clock value, sorted random parts."""
        if count <= 0:
            return []
        with self._lock:
            clock = self._tick()
        while True:
            rand = np.frombuffer(os.urandom(8 * count), dtype=np.uint64) >> np.uint64(2)
            rand.sort()
            if count == 1 or bool((rand[1:] != rand[:-1]).all()):  # a repeat: ~1e-11 at 10k
                break
        block = np.empty((count, 2), dtype=">u8")
        block[:, 0] = (clock >> 12) << 16 | _VERSION_7 | (clock & 0xFFF)
        block[:, 1] = rand | _VARIANT
        text = block.tobytes().hex()
        return [text[at : at + 32] for at in range(0, 32 * count, 32)]


prediction_ids = PredictionIds()


def new_prediction_id() -> str:
    """A fresh time-ordered prediction id (32 lowercase hex digits)."""
    return prediction_ids()
