"""Benchmark: the z-point store next to raw h5py, writing and reading the same array.

Writes a (200,000 x 256) float32 array (about 205 MB) once in one call and once in
batches of 10,000 rows, then reads it back in full and block by block, with the
latentscope store and with plain h5py (a chunked, growable dataset of the same chunk
shape, default file settings). Each store append is crash-safe (it flushes twice), so the
batched write is also shown next to raw h5py flushing after every batch. Since format 2 the
store also computes a checksum of every row segment on write and verifies it on every
read (one numpy pass at memory speed, ~30 ms per 200 MB here); raw h5py checks nothing. On
write, the finiteness check, the checksum and the write are fused per chunk segment (whole
chunks through ``write_direct_chunk``). Runs alternate between the two so that load on the
machine hits both alike; the table shows the best and the median wall time of
``--repeat`` runs, the best CPU time (user + system of this process), and the ratios
ours / raw of the best wall and best CPU times (goal: <= 1.25 both ways).

Writes land in the page cache (nothing is fsync'd by either side) and reads come from a
warm cache, so this measures library overhead, not the disk. On a busy machine, wall
times of writes also wait for the kernel to flush dirty pages: compare CPU times there.

Usage::

    python benchmarks/bench_store.py [--rows 200000] [--dim 256] [--repeat 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from latentscope.store import create_store, open_store
from latentscope.store._format import rows_per_chunk


def raw_write(path: Path, z: np.ndarray, batch: int, chunk: int, flush: bool = False) -> None:
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("z", shape=(0, z.shape[1]), maxshape=(None, z.shape[1]), dtype=np.float32,
                              chunks=(chunk, z.shape[1]))
        for lo in range(0, z.shape[0], batch):
            hi = min(z.shape[0], lo + batch)
            ds.resize(hi, axis=0)
            ds[lo:hi] = z[lo:hi]
            if flush:
                f.flush()


def ours_write(path: Path, z: np.ndarray, batch: int, chunk: int) -> None:
    with create_store(path, z.shape[1], overwrite=True, chunk_rows=chunk) as store:
        for lo in range(0, z.shape[0], batch):
            store.append(z[lo : lo + batch])


def raw_read(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["z"][:]


def ours_read(path: Path) -> np.ndarray:
    with open_store(path) as store:
        return store.read()


def raw_blocks(path: Path, block_rows: int) -> int:
    total = 0
    with h5py.File(path, "r") as f:
        ds = f["z"]
        for lo in range(0, ds.shape[0], block_rows):
            total += ds[lo : lo + block_rows].shape[0]
    return total


def ours_blocks(path: Path, max_bytes: int) -> int:
    total = 0
    with open_store(path) as store:
        for block in store.iter_blocks(max_bytes=max_bytes):
            total += block.z.shape[0]
    return total


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--batch", type=int, default=10_000, help="rows per append in the batched write")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", default=None, help="directory for the files (default: a temporary one)")
    args = ap.parse_args()

    z = np.random.default_rng(0).standard_normal((args.rows, args.dim), dtype=np.float32)
    chunk = rows_per_chunk(args.dim)
    max_bytes = 64 << 20
    block_rows = chunk * max(1, max_bytes // (chunk * args.dim * 4))
    print(f"array {args.rows} x {args.dim} float32 ({z.nbytes / 1e6:.1f} MB), chunks of {chunk} rows, "
          f"h5py {h5py.version.version}, HDF5 {h5py.version.hdf5_version}, {args.repeat} alternating runs each")

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        raw_path, ours_path = Path(tmp) / "raw.h5", Path(tmp) / "ours.h5"
        cases = [
            ("write, one call", lambda: timed(raw_write, raw_path, z, args.rows, chunk),
             lambda: timed(ours_write, ours_path, z, args.rows, chunk)),
            (f"write, {args.batch}-row batches", lambda: timed(raw_write, raw_path, z, args.batch, chunk),
             lambda: timed(ours_write, ours_path, z, args.batch, chunk)),
            ("  same, raw flushes per batch", lambda: timed(raw_write, raw_path, z, args.batch, chunk, True),
             lambda: timed(ours_write, ours_path, z, args.batch, chunk)),
            ("full read", lambda: timed(raw_read, raw_path), lambda: timed(ours_read, ours_path)),
            (f"block read ({max_bytes >> 20} MiB blocks)", lambda: timed(raw_blocks, raw_path, block_rows),
             lambda: timed(ours_blocks, ours_path, max_bytes)),
        ]
        rows = []
        for name, raw_fn, ours_fn in cases:
            raw_t, ours_t = [], []
            for _ in range(args.repeat):
                raw_t.append(raw_fn())
                ours_t.append(ours_fn())
            rows.append((name, [w for w, _ in raw_t], [w for w, _ in ours_t], [c for _, c in raw_t],
                         [c for _, c in ours_t]))
        assert np.array_equal(ours_read(ours_path), z), "round trip failed"
        size_raw, size_ours = os.path.getsize(raw_path), os.path.getsize(ours_path)

    print(f"{'':<30} {'-------- wall seconds --------':>38} {'-- CPU seconds --':>20} {'-- ratio --':>14}")
    print(f"{'case':<30} {'raw best':>9} {'raw med':>9} {'ours best':>10} {'ours med':>9} "
          f"{'raw':>9} {'ours':>9} {'wall':>7} {'CPU':>6}")
    for name, raw_w, ours_w, raw_c, ours_c in rows:
        ratio_w = min(ours_w) / min(raw_w)
        ratio_c = min(ours_c) / max(min(raw_c), 1e-9)
        flag = "" if min(ratio_w, ratio_c) <= 1.25 else "  (over 1.25)"
        print(f"{name:<30} {min(raw_w):9.3f} {statistics.median(raw_w):9.3f} {min(ours_w):10.3f} "
              f"{statistics.median(ours_w):9.3f} {min(raw_c):9.3f} {min(ours_c):9.3f} {ratio_w:7.2f} {ratio_c:6.2f}{flag}")
    print(f"file size: raw {size_raw / 1e6:.1f} MB, ours {size_ours / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
