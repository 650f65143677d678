"""odar.heap: glibc's malloc told to keep two arenas and a fixed mmap threshold, checked on the
allocator itself (malloc_info) in a fresh interpreter each, against the defaults."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, json, os, re, sys, tempfile, threading
import odar.heap

tuned = odar.heap.tune_malloc() if sys.argv[1] == "tuned" else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]


def malloc_info():
    with tempfile.NamedTemporaryFile("r", suffix=".xml") as out:
        handle = libc.fopen(out.name.encode(), b"w")
        libc.malloc_info(0, handle)
        libc.fclose(handle)
        return out.read()


def mmapped_blocks():
    totals = malloc_info().rsplit("</heap>", 1)[1]
    return int(re.search(r'<total type="mmap" count="(\d+)"', totals).group(1))


# A 4 MiB block comes from mmap; freeing it raises a dynamic threshold to 4 MiB.
libc.free(libc.malloc(4 << 20))
before = mmapped_blocks()
block = libc.malloc(512 << 10)
mmapped = mmapped_blocks() - before
libc.free(block)

# Six threads allocating at once: each gets an arena of its own up to the limit.
barrier = threading.Barrier(6)
def allocate():
    barrier.wait()
    for _ in range(50):
        libc.free(libc.malloc(4096))
    barrier.wait()
threads = [threading.Thread(target=allocate) for _ in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"tuned": tuned, "mmapped": mmapped, "arenas": malloc_info().count("<heap nr=")}))
"""


def probe(which: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, which], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and malloc_info are glibc's")
def test_tuned_malloc_keeps_two_arenas_and_big_blocks_in_mmap():
    default, tuned = probe("default"), probe("tuned")
    # glibc's defaults: an arena per thread; after a 4 MiB free, 512 KiB comes from the heap.
    assert default["arenas"] >= 7 and default["mmapped"] == 0
    assert tuned["tuned"] is True
    assert tuned["arenas"] <= 2 and tuned["mmapped"] == 1


def test_without_mallopt_nothing_is_changed_and_it_says_so(monkeypatch, caplog):
    import logging

    import odar.heap

    monkeypatch.setattr(odar.heap, "_mallopt", lambda: None)
    caplog.set_level(logging.INFO, logger="odar.heap")
    assert odar.heap.tune_malloc() is False
    assert "not glibc" in caplog.text


def test_a_refused_setting_is_said_and_the_other_still_made(monkeypatch, caplog):
    import logging

    import odar.heap

    asked = []

    def mallopt(parameter: int, value: int) -> int:
        asked.append(parameter)
        return 0 if parameter == odar.heap.M_ARENA_MAX else 1

    monkeypatch.setattr(odar.heap, "_mallopt", lambda: mallopt)
    caplog.set_level(logging.INFO, logger="odar.heap")
    assert odar.heap.tune_malloc() is False
    assert asked == [odar.heap.M_ARENA_MAX, odar.heap.M_MMAP_THRESHOLD]
    assert "malloc refused ['M_ARENA_MAX']" in caplog.text
