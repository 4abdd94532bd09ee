"""Thumbnails of exported rows: the source image of each row, or its decoded z-point."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError

__all__ = ["Thumbnailer"]


class Thumbnailer:
    """PNG bytes of ``size`` x ``size`` per row, from the store's image source or a decoder.

    Data rows use the image source named by the store's provenance (``source``) when it
    opens and its item ids cover the store's ids; otherwise, and for sample rows, the
    z-points are decoded by ``backend``/``model``. A row without either is an error.
    """

    def __init__(self, size: int, *, backend: str | None, model: Any, dim: int) -> None:
        self.size = int(size)
        self._backend_name, self._model = backend, model
        if (backend is None) != (model is None):
            raise InvalidParameterError("export: --backend and --model go together: give both to decode thumbnails, or neither.")
        self._dim = dim
        self._bk = None
        self._sources: dict[str, Any] = {}

    def __enter__(self) -> "Thumbnailer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._sources.clear()

    def _decoder(self) -> Any:
        if self._bk is None:
            if self._backend_name is None:
                raise InvalidParameterError(
                    "export: --thumbnails needs a readable image source in the store's provenance or "
                    "--backend and --model to decode the z-points; got neither.")
            from ..backends import get_backend

            self._bk = get_backend(self._backend_name).load(self._model)
            if int(self._bk.z_dim) != int(self._dim):
                raise InvalidParameterError(
                    f"export: the model's z_dim must be the store's ({self._dim}); got {self._bk.z_dim}.")
        return self._bk

    def _source(self, store: Any) -> Any:
        """``(image source, {id: position})`` of a store's provenance, or None when not readable."""
        spec = str(store.provenance.get("source", "") or "") if store is not None else ""
        if spec not in self._sources:
            found = None
            if spec and not spec.startswith("sampler:"):
                from ..data import open_source

                try:
                    src = open_source(spec, image_size=(self.size, self.size))
                    found = (src, {str(v): i for i, v in enumerate(src.item_ids)})
                except Exception:  # an unreadable or moved source: decode instead
                    found = None
            self._sources[spec] = found
        return self._sources[spec]

    def _resize(self, images: np.ndarray) -> np.ndarray:
        if images.shape[1:3] == (self.size, self.size):
            return images
        from PIL import Image

        return np.stack([np.asarray(Image.fromarray(im).resize((self.size, self.size), Image.Resampling.BILINEAR))
                         for im in images])

    def png(self, part: Any, is_data: bool, ids: np.ndarray, Z: np.ndarray) -> list[bytes]:
        """PNG bytes for one block of rows of ``part``."""
        from ..data._imageio import png_bytes

        found = self._source(part.store) if is_data else None
        if found is not None:
            src, where = found
            pos = [where.get(str(v)) for v in ids]
            if all(p is not None for p in pos):
                pos = np.asarray(pos, dtype=np.int64)
                lo, hi = int(pos.min()), int(pos.max()) + 1
                if hi - lo <= 4 * len(pos):  # one contiguous read (the usual, ids in source order)
                    batch = src.read(lo, hi)
                    images = dict(zip(batch.indices.tolist(), batch.images))
                else:
                    images = {}
                    for p in pos.tolist():
                        b = src.read(p, p + 1)
                        images.update(zip(b.indices.tolist(), b.images))
                if all(p in images for p in pos.tolist()):
                    return [png_bytes(images[p]) for p in pos.tolist()]
        images = self._resize(np.asarray(self._decoder().decode(np.asarray(Z, dtype=np.float32)), dtype=np.uint8))
        return [png_bytes(im) for im in images]
