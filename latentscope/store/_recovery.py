"""Crash recovery and writer locking for z-point stores.

A store is appended to in HDF5's single-writer/multiple-reader (SWMR) mode, whose
ordered metadata flushes keep the file consistent at every instant, even when the
writer is killed. A killed writer leaves two traces that this module repairs:

* The superblock's *status flags* still say "open for write / SWMR write", which makes
  HDF5 refuse every later open for writing (and every non-SWMR open). ``h5clear -s``
  clears them; :func:`clear_status_flags` does the same in pure Python (the superblock
  is a small fixed record protected by a Jenkins lookup3 checksum).
* The end-of-allocation address in the superblock may lie past the end of the file
  when the writer died between allocating space and writing it; the file is then
  extended with zeros up to that address (those bytes belong to uncommitted rows).

The flags must only be cleared when no writer is alive. Writers therefore hold an
exclusive advisory lock (``flock``) on the store for their whole session, and HDF5's
own locking is switched off for store files (HDF5 releases its lock once SWMR writing
starts, so it cannot tell a live writer from a dead one).
"""

from __future__ import annotations

import errno
import io
import os
import struct
from dataclasses import dataclass

from ..exceptions import StoreFormatError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, see docs/store-format.md
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "lookup3",
    "Superblock",
    "read_superblock",
    "clear_status_flags",
    "chunk_extent",
    "WriterLock",
    "writer_alive",
    "CleanSuperblockView",
    "open_swmr_reader",
    "precheck_superblock",
    "superblock_status",
]

_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_M32 = 0xFFFFFFFF
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def _pread(fd: int, n: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows
    return os.read(fd, n)  # pragma: no cover


def _pwrite(fd: int, data: bytes, offset: int) -> None:
    if hasattr(os, "pwrite"):
        os.pwrite(fd, data, offset)
        return
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows
    os.write(fd, data)  # pragma: no cover


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M32


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``: the checksum HDF5 puts on its metadata."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _M32
    i = 0
    while length > 12:
        a = (a + int.from_bytes(data[i : i + 4], "little")) & _M32
        b = (b + int.from_bytes(data[i + 4 : i + 8], "little")) & _M32
        c = (c + int.from_bytes(data[i + 8 : i + 12], "little")) & _M32
        a = (a - c) & _M32; a ^= _rot(c, 4); c = (c + b) & _M32  # noqa: E702
        b = (b - a) & _M32; b ^= _rot(a, 6); a = (a + c) & _M32  # noqa: E702
        c = (c - b) & _M32; c ^= _rot(b, 8); b = (b + a) & _M32  # noqa: E702
        a = (a - c) & _M32; a ^= _rot(c, 16); c = (c + b) & _M32  # noqa: E702
        b = (b - a) & _M32; b ^= _rot(a, 19); a = (a + c) & _M32  # noqa: E702
        c = (c - b) & _M32; c ^= _rot(b, 4); b = (b + a) & _M32  # noqa: E702
        length -= 12
        i += 12
    if length == 0:
        return c
    tail = bytes(data[i:]) + bytes(12 - length)
    a = (a + int.from_bytes(tail[0:4], "little")) & _M32
    b = (b + int.from_bytes(tail[4:8], "little")) & _M32
    c = (c + int.from_bytes(tail[8:12], "little")) & _M32
    c ^= b; c = (c - _rot(b, 14)) & _M32  # noqa: E702
    a ^= c; a = (a - _rot(c, 11)) & _M32  # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & _M32  # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & _M32  # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & _M32  # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & _M32  # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & _M32  # noqa: E702
    return c


@dataclass(frozen=True)
class Superblock:
    """The fields of an HDF5 version 2/3 superblock that recovery needs.

    Attributes
    ----------
    offset : int
        File offset of the superblock (0 unless the file has a user block).
    version : int
        Superblock version (2 or 3; SWMR needs 3).
    status_flags : int
        Bit 0: open for write; bit 2: open for SWMR write.
    base_address, eoa : int
        Base address and end-of-allocation address (relative to the base).
    size : int
        Bytes of the superblock including its checksum.
    """

    offset: int
    version: int
    status_flags: int
    base_address: int
    eoa: int
    size: int


def _find_signature(fd: int, file_size: int) -> int | None:
    offset = 0
    while offset + 8 <= file_size:
        if _pread(fd, 8, offset) == _SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


def read_superblock(fd: int) -> Superblock | None:
    """Parse a version 2/3 superblock from an open file; ``None`` for other versions.

    Raises
    ------
    ValueError
        If the file has no HDF5 signature or the superblock checksum is wrong.
    """
    file_size = os.fstat(fd).st_size
    offset = _find_signature(fd, file_size)
    if offset is None:
        raise ValueError("no HDF5 signature")
    head = _pread(fd, 12, offset)
    version = head[8]
    if version < 2:
        return None
    size_of_offsets = head[9]
    fmt = {4: "<I", 8: "<Q"}.get(size_of_offsets)
    if fmt is None:
        raise ValueError(f"unsupported size of offsets {size_of_offsets}")
    size = 12 + 4 * size_of_offsets + 4
    raw = _pread(fd, size, offset)
    if len(raw) != size:
        raise ValueError("truncated superblock")
    (stored,) = struct.unpack("<I", raw[-4:])
    if lookup3(raw[:-4]) != stored:
        raise ValueError("superblock checksum mismatch")
    (base,) = struct.unpack(fmt, raw[12 : 12 + size_of_offsets])
    (eoa,) = struct.unpack(fmt, raw[12 + 2 * size_of_offsets : 12 + 3 * size_of_offsets])
    return Superblock(offset, version, head[11], base, eoa, size)


def superblock_status(path: str | os.PathLike) -> int | None:
    """The superblock status flags of an HDF5 file (None for superblock versions 0/1)."""
    fd = os.open(path, os.O_RDONLY | _O_BINARY)
    try:
        sb = read_superblock(fd)
    finally:
        os.close(fd)
    return None if sb is None else sb.status_flags


def precheck_superblock(fd: int, path: str | os.PathLike, *, lenient: bool = False) -> int:
    """Parse the superblock; refuse a cleanly closed file shorter than its allocation.

    Returns the size of the file. A file whose writer is alive or was killed may be
    shorter than its allocation (the tail holds uncommitted rows); a closed file
    never is, so it was truncated (an incomplete copy, a full disk). ``lenient``
    (``latentscope check --salvage``) lets a truncated file through.
    """
    eof = os.fstat(fd).st_size
    try:
        sb = read_superblock(fd)
    except ValueError as exc:
        raise StoreFormatError(f"{path}: damaged HDF5 superblock ({exc}).") from exc
    if sb is not None and not sb.status_flags and eof < sb.base_address + sb.eoa and not lenient:
        raise StoreFormatError(
            f"{path}: the file is truncated: {eof:,} bytes, but HDF5 allocated "
            f"{sb.base_address + sb.eoa:,} (an incomplete copy?); 'latentscope check --salvage' keeps the rows left."
        )
    return eof


def _write_superblock(fd: int, sb: Superblock, *, status_flags: int, eoa: int) -> None:
    raw = bytearray(_pread(fd, sb.size, sb.offset))
    size_of_offsets = raw[9]
    fmt = "<I" if size_of_offsets == 4 else "<Q"
    raw[11] = status_flags
    raw[12 + 2 * size_of_offsets : 12 + 3 * size_of_offsets] = struct.pack(fmt, eoa)
    raw[-4:] = struct.pack("<I", lookup3(bytes(raw[:-4])))
    _pwrite(fd, bytes(raw), sb.offset)


def chunk_extent(path: str | os.PathLike) -> int:
    """The largest file address used by any allocated chunk of any dataset in ``path``."""
    import h5py

    end = 0

    def visit(_name: str, obj: object) -> None:
        nonlocal end
        if not isinstance(obj, h5py.Dataset) or obj.chunks is None:
            return
        dsid = obj.id

        def on_chunk(info) -> None:
            nonlocal end
            end = max(end, int(info.byte_offset) + int(info.size))

        if hasattr(dsid, "chunk_iter"):
            dsid.chunk_iter(on_chunk)
        else:  # pragma: no cover - HDF5 < 1.14
            for i in range(dsid.get_num_chunks()):
                on_chunk(dsid.get_chunk_info(i))

    with h5py.File(path, "r", locking=False) as h5:
        h5.visititems(visit)
    return end


def clear_status_flags(fd: int, path: str | os.PathLike | None = None) -> bool:
    """Repair a file left open by a dead writer; the caller must hold the writer lock.

    The equivalent of ``h5clear -s`` plus ``h5clear --increment``: clears the
    superblock status flags and raises the end-of-allocation address (EOA) to cover
    the whole file and, when ``path`` is given, every allocated chunk (a dying writer
    may have written chunk index entries for chunks past the recorded EOA); the file
    is extended with zeros up to the EOA. Rows in such chunks are uncommitted.

    Returns
    -------
    bool
        Whether anything was changed.
    """
    sb = read_superblock(fd)
    if sb is None:
        return False
    eof = os.fstat(fd).st_size
    if not sb.status_flags and eof >= sb.base_address + sb.eoa:
        return False
    eoa = max(sb.eoa, eof - sb.base_address)
    if eof < sb.base_address + eoa:
        os.ftruncate(fd, sb.base_address + eoa)
    _write_superblock(fd, sb, status_flags=0, eoa=eoa)
    if path is not None:
        end = chunk_extent(path) - sb.base_address
        if end > eoa:
            os.ftruncate(fd, sb.base_address + end)
            _write_superblock(fd, read_superblock(fd), status_flags=0, eoa=end)  # type: ignore[arg-type]
    os.fsync(fd)
    return True


def _would_block(exc: OSError) -> bool:
    return exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)


class WriterLock:
    """An exclusive advisory lock held by a store's writer for its whole session.

    ``flock`` locks belong to an open file description, so two writers in the same
    process exclude each other too. Where advisory locks are unavailable (Windows, or
    a file system that refuses them) the lock is a no-op and ``locked`` is False.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.locked = False

    def acquire(self) -> bool:
        """Take the lock without waiting; False if another writer holds it."""
        if fcntl is None:  # pragma: no cover
            return True
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if _would_block(exc):
                return False
            return True  # locks not supported here: proceed unlocked
        self.locked = True
        return True

    def release(self) -> None:
        if self.locked and fcntl is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            except OSError:  # pragma: no cover
                pass
        self.locked = False


def writer_alive(path: str | os.PathLike) -> bool:
    """Whether some process holds the writer lock (or an HDF5 write lock) on ``path``."""
    if fcntl is None:  # pragma: no cover
        return False
    fd = os.open(path, os.O_RDONLY | _O_BINARY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return _would_block(exc)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class CleanSuperblockView(io.RawIOBase):
    """A read-only view of an HDF5 file whose superblock status flags read as cleared.

    Lets a reader open, through h5py's ``fileobj`` driver, a file that a writer left
    marked "open for write" (it died before switching to SWMR mode) without changing
    the file: HDF5 refuses every other kind of open of such a file. Bytes between the
    end of the file and its end of allocation read as zeros (they can only hold
    uncommitted rows; readers check that committed chunks lie inside the file).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY | _O_BINARY)
        try:
            sb = read_superblock(self._fd)
            if sb is None:
                raise ValueError("superblock version 0/1")
            raw = bytearray(_pread(self._fd, sb.size, sb.offset))
        except BaseException:
            os.close(self._fd)
            raise
        raw[11] = 0
        raw[-4:] = struct.pack("<I", lookup3(bytes(raw[:-4])))
        self._patch, self._patch_at = bytes(raw), sb.offset
        self._eof = os.fstat(self._fd).st_size
        self.size = max(self._eof, sb.base_address + sb.eoa)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = base + pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buf) -> int:
        want = max(0, min(len(buf), self.size - self._pos))
        data = bytearray(_pread(self._fd, want, self._pos)) if self._pos < self._eof else bytearray()
        data += bytes(want - len(data))
        lo, hi = self._patch_at, self._patch_at + len(self._patch)
        a, b = max(lo, self._pos), min(hi, self._pos + want)
        if a < b:
            data[a - self._pos : b - self._pos] = self._patch[a - lo : b - lo]
        buf[:want] = data
        self._pos += want
        return want

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


#: Metadata read attempts of a SWMR reader. HDF5 retries a metadata read whose checksum
#: fails (a live writer may be rewriting it), sleeping 1, 2, 4, ... ns in between; its
#: default of 100 attempts never ends on a damaged or truncated file. 24 attempts sleep
#: at most ~17 ms in all.
SWMR_READ_ATTEMPTS = 24
_HDF5_LIB: list = []


def _set_read_attempts(fapl, attempts: int) -> bool:
    """``H5Pset_metadata_read_attempts`` (not wrapped by h5py), through ctypes."""
    if not _HDF5_LIB:
        fn = None
        try:
            import ctypes

            with open("/proc/self/maps", encoding="utf-8") as maps:
                paths = sorted({line.split()[-1] for line in maps if "/libhdf5" in line and "libhdf5_hl" not in line})
            for lib_path in paths:
                lib = ctypes.CDLL(lib_path)
                if hasattr(lib, "H5Pset_metadata_read_attempts"):
                    fn = lib.H5Pset_metadata_read_attempts
                    fn.argtypes, fn.restype = [ctypes.c_int64, ctypes.c_uint], ctypes.c_int
                    break
        except (OSError, AttributeError):  # pragma: no cover - not Linux, or a static HDF5
            fn = None
        _HDF5_LIB.append(fn)
    fn = _HDF5_LIB[0]
    return fn is not None and fn(fapl.id, int(attempts)) >= 0


def open_swmr_reader(path: str | os.PathLike, attempts: int = SWMR_READ_ATTEMPTS):
    """Open an HDF5 file in SWMR read mode (v110+ format, no locking, no chunk cache) with a
    bounded number of metadata read attempts, so that a damaged file fails in milliseconds."""
    import h5py

    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    if not _set_read_attempts(fapl, attempts):  # pragma: no cover - falls back to h5py's defaults
        return h5py.File(path, "r", libver=("v110", "latest"), swmr=True, locking=False, rdcc_nbytes=0)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_LATEST)
    mdc, nslots, _nbytes, w0 = fapl.get_cache()
    fapl.set_cache(mdc, nslots, 0, w0)
    fapl.set_file_locking(False, True)
    fid = h5py.h5f.open(os.fsencode(os.fspath(path)), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl=fapl)
    return h5py.File(fid)
