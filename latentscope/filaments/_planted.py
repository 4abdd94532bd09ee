"""A benchmark generator: a Gaussian bulk with planted filaments, blobs and sheets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import SeedLike, check_positive, check_rng
from ..exceptions import InvalidParameterError

__all__ = ["PlantedStructure", "PlantedCloud", "make_planted_cloud", "score_planted", "CURVE_SHAPES", "BULKS"]

#: Shapes of planted filaments, used in turn.
CURVE_SHAPES = ("line", "arc", "curve")

#: Laws of the bulk of :func:`make_planted_cloud` (see there).
BULKS = ("gaussian", "t3-copula", "lognormal-copula", "t5", "mixture3")


@dataclass(frozen=True)
class PlantedStructure:
    """One planted structure of a :class:`PlantedCloud`.

    Attributes
    ----------
    kind : {"filament", "blob", "sheet"}
    shape : str
        ``"line"``, ``"arc"`` or ``"curve"`` for filaments; ``"ball"`` for blobs;
        ``"square"`` for sheets.
    n_points : int
    length : float
        Arc length of a filament; diameter scale (2 x radius) of a blob; side of a sheet.
    thickness : float
        Root-mean-square norm of the isotropic transverse noise (blob: its radius).
    """

    kind: str
    shape: str
    n_points: int
    length: float
    thickness: float


@dataclass(frozen=True, eq=False)
class PlantedCloud:
    """A point cloud with ground truth, from :func:`make_planted_cloud`.

    Attributes
    ----------
    z : ndarray of shape (n_points, z_dim), float32
        All points, shuffled.
    labels : ndarray of shape (n_points,), int64
        Index into ``structures`` of each point's structure; -1 for the bulk.
    structures : tuple of PlantedStructure
    """

    z: np.ndarray
    labels: np.ndarray
    structures: tuple

    @property
    def kinds(self) -> tuple[str, ...]:
        """Kind of each structure."""
        return tuple(s.kind for s in self.structures)

    @property
    def filament_mask(self) -> np.ndarray:
        """Boolean mask of the points that belong to a planted filament."""
        fil = np.array([s.kind == "filament" for s in self.structures] + [False])
        return fil[self.labels]

    @property
    def filament_labels(self) -> np.ndarray:
        """Per point: the planted filament's number (0, 1, ... in structure order), else -1."""
        fil_ids = np.full(len(self.structures) + 1, -1, np.int64)
        j = 0
        for i, s in enumerate(self.structures):
            if s.kind == "filament":
                fil_ids[i] = j
                j += 1
        return fil_ids[self.labels]


def _frame(rng: np.random.Generator, dim: int, m: int) -> np.ndarray:
    """m orthonormal random directions in R^dim, as rows."""
    q, _ = np.linalg.qr(rng.standard_normal((dim, m)))
    return q.T[:m]


def _arclength_sample(curve: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n points uniform in arc length along a finely sampled polyline."""
    seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    u = rng.uniform(0.0, s[-1], n)
    j = np.clip(np.searchsorted(s, u, side="right") - 1, 0, len(seg) - 1)
    w = ((u - s[j]) / np.maximum(seg[j], 1e-300))[:, None]
    return curve[j] * (1 - w) + curve[j + 1] * w


def _filament(shape: str, anchor: np.ndarray, length: float, n: int, rng: np.random.Generator) -> np.ndarray:
    dim = anchor.size
    t = np.linspace(0.0, 1.0, 2001)[:, None]
    if shape == "line" or dim < 2:
        u = _frame(rng, dim, 1)[0]
        curve = anchor + (t - 0.5) * length * u
    elif shape == "arc":
        u, v = _frame(rng, dim, 2)
        theta = rng.uniform(np.pi / 3, np.pi)
        radius = length / theta
        ang = (t - 0.5) * theta
        curve = anchor + radius * (np.sin(ang) * u + (1 - np.cos(ang)) * v)
    else:  # a smooth random curve: a line plus three random sine modes
        m = min(dim, 4)
        frame = _frame(rng, dim, m)
        curve = anchor + (t - 0.5) * frame[0]
        for j in range(1, m):
            amp = rng.uniform(0.05, 0.15) / j
            curve = curve + amp * np.sin(np.pi * j * t + rng.uniform(0, 2 * np.pi)) * frame[j]
        arc = np.linalg.norm(np.diff(curve, axis=0), axis=1).sum()
        curve = anchor + (curve - anchor) * (length / arc)
    return _arclength_sample(curve, n, rng)


def _check_count(value, name: str, *, minimum: int = 0) -> int:
    return int(check_positive(value, name, owner="make_planted_cloud", integer=True, minimum=minimum))


def make_planted_cloud(
    n_points: int = 200_000,
    z_dim: int = 256,
    *,
    n_filaments: int = 10,
    n_blobs: int = 3,
    n_sheets: int = 3,
    filament_points: tuple[int, int] = (200, 5000),
    blob_points: tuple[int, int] = (500, 3000),
    sheet_points: tuple[int, int] = (1000, 4000),
    filament_length: tuple[float, float] = (0.3, 0.6),
    filament_thickness: tuple[float, float] = (0.02, 0.05),
    bulk: str = "gaussian",
    rng: SeedLike = None,
) -> PlantedCloud:
    """A bulk cloud with planted filaments and non-filament structures.

    The bulk has covariance eigenvalues ``4 exp(-j / (z_dim / 6)) + 0.05`` in a random
    orthonormal basis and is centred off the origin; its law is ``bulk``:

    - ``"gaussian"``: that Gaussian;
    - ``"t3-copula"``, ``"lognormal-copula"``: a Gaussian copula with these second
      moments and Student-t (3 dof) or lognormal (log-sd 1, skewness 6.2) marginals,
      each standardised to the Gaussian's mean and variance of its coordinate;
    - ``"t5"``: the multivariate Student t with 5 dof, scaled to the same covariance;
    - ``"mixture3"``: an equal mixture of three Gaussians, each with 0.6 times the
      covariance, whose centres form an equilateral triangle in the plane of the two
      leading axes, 2.5 standard deviations (of those axes) apart.

    The RMS radius ``R = sqrt(trace)`` of the Gaussian's covariance sets the scale of
    everything planted. Each structure is anchored at a draw from the bulk, so it
    lies inside it.

    - **Filaments** (``n_filaments``), in turn straight segments, circular arcs (an
      angle between 60 and 180 degrees) and smooth random curves (a line plus three
      sine modes in random directions); arc length ``filament_length x R``; points
      uniform in arc length, their number log-spaced over ``filament_points`` (so
      there are dense and sparse ones); isotropic Gaussian noise in all ``z_dim``
      directions with RMS norm ``filament_thickness x length``.
    - **Blobs** (``n_blobs``): compact isotropic Gaussians, RMS radius 0.02 to 0.06 R.
    - **Sheets** (``n_sheets``, needs ``z_dim >= 3``): squares in a random 2-D plane,
      side 0.2 to 0.4 R, points uniform, transverse noise 2 to 4 % of the side.

    Neither blobs nor sheets are filaments: a detector must not report them.

    Parameters
    ----------
    n_points : int, default=200_000
        Total number of points (bulk plus structures).
    z_dim : int, default=256
    n_filaments, n_blobs, n_sheets : int
        Numbers of structures of each kind.
    filament_points, blob_points, sheet_points : (int, int)
        Range of the number of points per structure.
    filament_length : (float, float)
        Range of the filaments' arc length, in units of the bulk's RMS radius.
    filament_thickness : (float, float)
        Range of the filaments' RMS transverse noise norm, as a fraction of their length.
    bulk : str, default="gaussian"
        Law of the bulk, one of :data:`BULKS`.
    rng : None, int, SeedSequence or Generator

    Returns
    -------
    PlantedCloud
    """
    n_points = _check_count(n_points, "n_points", minimum=1)
    z_dim = _check_count(z_dim, "z_dim", minimum=1)
    n_filaments = _check_count(n_filaments, "n_filaments")
    n_blobs = _check_count(n_blobs, "n_blobs")
    n_sheets = _check_count(n_sheets, "n_sheets")
    if n_sheets and z_dim < 3:
        raise InvalidParameterError(
            f"make_planted_cloud: sheets need z_dim >= 3; got z_dim {z_dim} with n_sheets {n_sheets}."
        )
    ranges = {"filament_points": filament_points, "blob_points": blob_points, "sheet_points": sheet_points}
    for name, pair in ranges.items():
        if len(pair) != 2 or not (1 <= pair[0] <= pair[1]):
            raise InvalidParameterError(
                f"make_planted_cloud: {name} must be (low, high) with 1 <= low <= high; got {pair!r}."
            )
    if bulk not in BULKS:
        raise InvalidParameterError(
            f"make_planted_cloud: bulk must be one of {', '.join(map(repr, BULKS))}; got {bulk!r}."
        )
    gen = check_rng(rng)

    eig = 4.0 * np.exp(-np.arange(z_dim) / max(z_dim / 6.0, 1.0)) + 0.05
    basis = _frame(gen, z_dim, z_dim) if z_dim > 1 else np.ones((1, 1))
    radius = float(np.sqrt(eig.sum()))
    mean = gen.standard_normal(z_dim) * np.sqrt(eig.mean()) * 0.5

    law = bulk
    sd = np.sqrt(np.einsum("ij,i,ij->j", basis, eig, basis))  # per-coordinate standard deviation
    if law == "mixture3":
        lead = basis[:2] * np.sqrt(eig[:2])[:, None]
        ang = gen.uniform(0, 2 * np.pi) + np.array([0.0, 2.0, 4.0]) * np.pi / 3
        shift = (np.cos(ang)[:, None] * lead[0] + np.sin(ang)[:, None] * lead[1]) * (2.5 / np.sqrt(3))
        shift -= shift.mean(axis=0)
        comp_scale = np.sqrt(0.6)

    def bulk(n: int) -> np.ndarray:
        g = gen.standard_normal((n, z_dim))
        if law == "mixture3":
            x = (g * (comp_scale * np.sqrt(eig))) @ basis + shift[gen.integers(0, 3, n)]
            return mean + x
        x = (g * np.sqrt(eig)) @ basis
        if law == "t5":
            x *= np.sqrt(3.0 / 5.0) / np.sqrt(gen.chisquare(5, (n, 1)) / 5.0)
        elif law in ("t3-copula", "lognormal-copula"):
            from scipy import special, stats  # noqa: PLC0415

            y = x / sd  # standard normal coordinates
            if law == "t3-copula":  # upper-tail form: exact far out in both tails
                x = np.sign(y) * stats.t.isf(special.ndtr(-np.abs(y)), 3) / np.sqrt(3.0) * sd
            else:
                m1, v1 = np.exp(0.5), (np.e - 1.0) * np.e
                x = (np.exp(y) - m1) / np.sqrt(v1) * sd
        return mean + x

    def counts(lo_hi: tuple[int, int], m: int) -> np.ndarray:
        if m == 0:
            return np.zeros(0, int)
        c = np.round(np.geomspace(lo_hi[0], lo_hi[1], m)).astype(int)
        return gen.permutation(c)

    parts: list[np.ndarray] = []
    structures: list[PlantedStructure] = []
    for i, n in enumerate(counts(filament_points, n_filaments)):
        shape = CURVE_SHAPES[i % len(CURVE_SHAPES)]
        length = gen.uniform(*filament_length) * radius
        thick = gen.uniform(*filament_thickness) * length
        pts = _filament(shape, bulk(1)[0], length, int(n), gen)
        pts += gen.standard_normal(pts.shape) * thick / np.sqrt(z_dim)
        parts.append(pts)
        structures.append(PlantedStructure("filament", shape, int(n), float(length), float(thick)))
    for n in counts(blob_points, n_blobs):
        rad = gen.uniform(0.02, 0.06) * radius
        pts = bulk(1)[0] + gen.standard_normal((int(n), z_dim)) * rad / np.sqrt(z_dim)
        parts.append(pts)
        structures.append(PlantedStructure("blob", "ball", int(n), float(2 * rad), float(rad)))
    for n in counts(sheet_points, n_sheets):
        side = gen.uniform(0.2, 0.4) * radius
        thick = gen.uniform(0.02, 0.04) * side
        u, v = _frame(gen, z_dim, 2)
        ab = gen.uniform(-0.5, 0.5, (int(n), 2)) * side
        pts = bulk(1)[0] + ab[:, :1] * u + ab[:, 1:] * v
        pts += gen.standard_normal(pts.shape) * thick / np.sqrt(z_dim)
        parts.append(pts)
        structures.append(PlantedStructure("sheet", "square", int(n), float(side), float(thick)))

    n_struct = int(sum(p.shape[0] for p in parts))
    if n_struct > n_points // 2:
        raise InvalidParameterError(
            f"make_planted_cloud: the planted structures hold {n_struct} points, more than half of "
            f"n_points ({n_points}); raise n_points or plant fewer points."
        )
    z = np.concatenate([bulk(n_points - n_struct), *parts]) if parts else bulk(n_points)
    labels = np.concatenate([np.full(n_points - n_struct, -1, np.int64)]
                            + [np.full(p.shape[0], i, np.int64) for i, p in enumerate(parts)])
    order = gen.permutation(n_points)
    return PlantedCloud(z=z[order].astype(np.float32), labels=labels[order], structures=tuple(structures))


def score_planted(cloud: PlantedCloud, labels: np.ndarray) -> dict:
    """Compare detected filament labels with a planted cloud's ground truth.

    A detected filament *matches* the planted filament that holds more than half of
    its members.

    Parameters
    ----------
    cloud : PlantedCloud
    labels : ndarray of shape (n_points,)
        Detected filament id per point, -1 for none (e.g. ``FilamentDetector.labels_``).

    Returns
    -------
    dict
        ``precision`` and ``recall`` of filament membership over points (blob, sheet
        and bulk points reported in a filament are false positives; NaN when nothing
        is reported or planted), ``matches`` (detected filaments matching each planted
        filament), ``matched_once`` (every planted filament matched by exactly one
        detected filament), ``n_detected``, ``n_planted``, ``unmatched_detected``
        (detected filaments matching no planted one) and ``reported_by_kind`` (reported
        points per ground-truth kind, ``"bulk"`` included).
    """
    labels = np.asarray(labels)
    if labels.shape != cloud.labels.shape:
        raise InvalidParameterError(
            f"score_planted: labels must have shape {cloud.labels.shape} (one per point); got {labels.shape}."
        )
    truth = cloud.filament_mask
    reported = labels >= 0
    tp = int((truth & reported).sum())
    precision = tp / reported.sum() if reported.any() else float("nan")
    recall = tp / truth.sum() if truth.any() else float("nan")
    fil = cloud.filament_labels
    n_planted = int(sum(s.kind == "filament" for s in cloud.structures))
    matches = np.zeros(n_planted, np.int64)
    unmatched = 0
    det_ids = np.unique(labels[reported])
    for d in det_ids:
        lab = fil[labels == d]
        vals, counts = np.unique(lab, return_counts=True)
        j = int(np.argmax(counts))
        if vals[j] >= 0 and counts[j] > lab.size / 2:
            matches[vals[j]] += 1
        else:
            unmatched += 1
    kinds = np.array([s.kind for s in cloud.structures] + ["bulk"])
    rep_kind = kinds[cloud.labels[reported]]
    by_kind = {kind: int((rep_kind == kind).sum()) for kind in ("filament", "blob", "sheet", "bulk")}
    return {
        "precision": float(precision), "recall": float(recall), "matches": matches.tolist(),
        "matched_once": bool(n_planted > 0 and np.all(matches == 1)), "n_detected": int(det_ids.size),
        "n_planted": n_planted, "unmatched_detected": int(unmatched), "reported_by_kind": by_kind,
    }
