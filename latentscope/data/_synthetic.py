"""Procedural synthetic faces: the embedded default data of latentscope.

Every face is drawn from a handful of parameters (face oval, skin tone, eyes, brows,
nose, mouth, hair, glasses, background, pose and expression). The parameters of item
``i`` depend only on ``(seed, i)``: they are drawn in fixed blocks of
:data:`PARAM_BLOCK` items from a generator seeded with ``(seed, block)``, so any range
of items renders identically whatever the batch boundaries. Rendering is vectorised
NumPy over a chunk of faces (soft-edged shapes composited in float32).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._validation import SeedLike, check_positive, check_rng
from ._source import ImageSource, DecodedRange, check_image_size

__all__ = ["SyntheticFaces", "sample_face_params", "render_faces", "FACE_ATTRIBUTES", "HAIR_COLORS", "EYE_COLORS"]

#: Items per parameter block (the unit of deterministic parameter draws).
PARAM_BLOCK = 1024

#: Hair colour categories (index = the ``hair_color`` attribute) and their RGB in [0, 1].
HAIR_COLORS = {
    "black": (0.09, 0.07, 0.06),
    "dark_brown": (0.25, 0.16, 0.10),
    "brown": (0.45, 0.30, 0.17),
    "blond": (0.85, 0.70, 0.42),
    "red": (0.62, 0.25, 0.10),
    "grey": (0.68, 0.67, 0.66),
}
_HAIR_P = np.array([0.30, 0.25, 0.18, 0.14, 0.05, 0.08])
_HAIR_RGB = np.array(list(HAIR_COLORS.values()), dtype=np.float32)

#: Iris colour categories (index = the ``eye_color`` attribute).
EYE_COLORS = {"brown": (0.30, 0.18, 0.08), "blue": (0.25, 0.45, 0.70), "green": (0.30, 0.50, 0.30), "grey": (0.45, 0.50, 0.55)}
_EYE_P = np.array([0.55, 0.2, 0.12, 0.13])
_EYE_RGB = np.array(list(EYE_COLORS.values()), dtype=np.float32)

_SKIN_LIGHT = np.array([0.98, 0.84, 0.74], dtype=np.float32)
_SKIN_DARK = np.array([0.34, 0.21, 0.14], dtype=np.float32)

#: Per-face attributes, in column order, with their dtypes and meaning.
FACE_ATTRIBUTES = {
    "face_x": (np.float32, "horizontal offset of the face centre (image half-widths)"),
    "face_y": (np.float32, "vertical offset of the face centre (image half-heights)"),
    "face_width": (np.float32, "horizontal radius of the face oval (image half-widths)"),
    "face_height": (np.float32, "vertical radius of the face oval (image half-heights)"),
    "skin_tone": (np.float32, "0 = light, 1 = dark"),
    "hair_color": (np.int8, "index into HAIR_COLORS"),
    "hair_length": (np.float32, "0 = short, 1 = shoulder length"),
    "hair_volume": (np.float32, "0 = bald, 1 = full"),
    "bangs": (np.int8, "1 if a fringe covers the forehead"),
    "eye_color": (np.int8, "index into EYE_COLORS"),
    "eye_openness": (np.float32, "0 = closed, 1 = wide open"),
    "gaze": (np.float32, "-1 = looking left, 1 = looking right"),
    "brow_raise": (np.float32, "-1 = frowning, 1 = raised"),
    "smile": (np.float32, "-1 = frown, 1 = broad smile"),
    "mouth_open": (np.float32, "0 = closed, 1 = wide open"),
    "glasses": (np.int8, "1 if wearing glasses"),
    "beard": (np.float32, "0 = none, 1 = full beard"),
    "yaw": (np.float32, "head turn in degrees (positive: to the image's right)"),
    "pitch": (np.float32, "head nod in degrees (positive: down)"),
    "roll": (np.float32, "head tilt in degrees (positive: clockwise)"),
    "light": (np.float32, "light direction, -1 = from the left, 1 = from the right"),
    "bg_hue": (np.float32, "background hue in [0, 1)"),
    "bg_value": (np.float32, "background brightness in [0, 1]"),
}


def sample_face_params(n: int, rng: SeedLike) -> dict[str, np.ndarray]:
    """Draw the parameters of ``n`` faces (the :data:`FACE_ATTRIBUTES` plus colours).

    Parameters
    ----------
    n : int
    rng : None, int, SeedSequence or numpy.random.Generator
        Normalised with :func:`~latentscope._validation.check_rng` (a Generator is
        used as given).

    Returns
    -------
    dict of str to ndarray of shape (n,) or (n, 3)
        The attribute columns of :data:`FACE_ATTRIBUTES` and the private RGB colours
        (keys starting with ``_``) that :func:`render_faces` uses.
    """
    rng = check_rng(rng)
    u = lambda lo, hi: rng.uniform(lo, hi, n).astype(np.float32)  # noqa: E731
    clipn = lambda mu, sd, lo, hi: np.clip(rng.normal(mu, sd, n), lo, hi).astype(np.float32)  # noqa: E731
    p: dict[str, np.ndarray] = {}
    p["face_x"] = clipn(0.0, 0.04, -0.1, 0.1)
    p["face_y"] = clipn(0.0, 0.04, -0.1, 0.1)
    p["face_width"] = clipn(0.47, 0.035, 0.38, 0.56)
    p["face_height"] = (p["face_width"] * clipn(1.33, 0.07, 1.15, 1.5)).astype(np.float32)
    p["skin_tone"] = rng.beta(1.6, 2.6, n).astype(np.float32)
    p["hair_color"] = rng.choice(len(_HAIR_P), n, p=_HAIR_P).astype(np.int8)
    p["hair_length"] = rng.beta(1.1, 1.4, n).astype(np.float32)
    p["hair_volume"] = np.where(rng.random(n) < 0.05, u(0.0, 0.25), u(0.6, 1.0)).astype(np.float32)
    p["bangs"] = (rng.random(n) < 0.3).astype(np.int8)
    p["eye_color"] = rng.choice(len(_EYE_P), n, p=_EYE_P).astype(np.int8)
    p["eye_openness"] = np.clip(rng.beta(5.0, 2.0, n) * 1.1 - np.where(rng.random(n) < 0.05, 0.8, 0.0), 0, 1).astype(np.float32)
    p["gaze"] = clipn(0.0, 0.35, -1, 1)
    p["brow_raise"] = clipn(0.0, 0.4, -1, 1)
    p["smile"] = np.clip(rng.normal(0.35, 0.45, n), -1, 1).astype(np.float32)
    p["mouth_open"] = np.clip(rng.beta(1.0, 4.0, n) + 0.3 * np.maximum(p["smile"], 0) * rng.random(n), 0, 1).astype(np.float32)
    p["glasses"] = (rng.random(n) < 0.12).astype(np.int8)
    p["beard"] = np.where(rng.random(n) < 0.15, u(0.3, 1.0), 0.0).astype(np.float32)
    p["yaw"] = clipn(0.0, 12.0, -35, 35)
    p["pitch"] = clipn(0.0, 6.0, -20, 20)
    p["roll"] = clipn(0.0, 5.0, -20, 20)
    p["light"] = u(-1, 1)
    p["bg_hue"] = u(0, 1)
    p["bg_value"] = rng.beta(2.0, 1.6, n).astype(np.float32)
    # colours (private keys: not attributes)
    hair = _HAIR_RGB[p["hair_color"]] * rng.uniform(0.8, 1.15, (n, 1))
    p["_hair_rgb"] = np.clip(hair, 0, 1).astype(np.float32)
    skin = _SKIN_LIGHT + (_SKIN_DARK - _SKIN_LIGHT) * p["skin_tone"][:, None]
    skin = skin * rng.uniform(0.95, 1.05, (n, 3)) + np.array([0.02, 0.0, -0.02]) * rng.normal(0, 1, (n, 1))
    p["_skin_rgb"] = np.clip(skin, 0, 1).astype(np.float32)
    p["_eye_rgb"] = np.clip(_EYE_RGB[p["eye_color"]] * rng.uniform(0.8, 1.2, (n, 1)), 0, 1).astype(np.float32)
    sat = rng.uniform(0.05, 0.55, n)
    p["_bg_top"] = _hsv_to_rgb(p["bg_hue"], sat, p["bg_value"])
    p["_bg_bottom"] = _hsv_to_rgb((p["bg_hue"] + rng.normal(0, 0.05, n)) % 1.0, sat, p["bg_value"] * rng.uniform(0.55, 0.95, n))
    p["_cloth_rgb"] = _hsv_to_rgb(rng.uniform(0, 1, n), rng.uniform(0.1, 0.8, n), rng.uniform(0.15, 0.9, n))
    p["_frame_rgb"] = np.clip(rng.uniform(0.0, 0.35, (n, 1)) * np.array([1.0, 0.9, 0.8]), 0, 1).astype(np.float32)
    p["_lip_rgb"] = np.clip(p["_skin_rgb"] * np.array([0.95, 0.62, 0.62]) + np.array([0.1, 0.0, 0.02]), 0, 1).astype(np.float32)
    return p


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    h, s, v = (np.asarray(a, dtype=np.float64) for a in (h, s, v))
    k = (np.array([5.0, 3.0, 1.0]) + 6.0 * h[:, None]) % 6.0
    rgb = v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return np.clip(rgb, 0, 1).astype(np.float32)


def _ellipse_alpha(u: np.ndarray, v: np.ndarray, a: Any, b: Any, soft: float) -> np.ndarray:
    """Anti-aliased coverage of the ellipse (u/a)^2 + (v/b)^2 <= 1 (soft = pixel size).

    Uses 1 - r^2 ~ 2 (1 - r) near the rim, which avoids a square root.
    """
    q = (u / a) ** 2 + (v / b) ** 2
    np.subtract(1.0, q, out=q)
    q *= np.minimum(a, b) * (0.5 / soft)
    q += 0.5
    return np.clip(q, 0.0, 1.0, out=q)


def _step(d: np.ndarray, soft: float) -> np.ndarray:
    """Anti-aliased coverage of the region d >= 0 (d a signed distance)."""
    return np.clip(d * (1.0 / soft) + 0.5, 0.0, 1.0)


def _blend(img: np.ndarray, alpha: np.ndarray, rgb: np.ndarray) -> None:
    """In place: img = img * (1 - alpha) + rgb * alpha.

    ``img`` is channel-first (3, n, h, w) so that the inner loops run along image rows;
    ``alpha`` is (n, h, w); ``rgb`` is (n, 3) or (3, n, h, w).
    """
    col = rgb.T[:, :, None, None] if rgb.ndim == 2 else rgb
    diff = col - img
    diff *= alpha
    img += diff


class _Canvas:
    """A channel-first float32 image batch with face frames, drawn region by region.

    Each drawing step works on the smallest pixel box that holds its shape for every
    face of the batch, in face coordinates (u to the face's right, v down the face,
    rotated by the roll angle around the face centre).
    """

    def __init__(self, params: dict[str, np.ndarray], h: int, w: int) -> None:
        f32 = np.float32
        self.h, self.w = h, w
        self.n = n = int(params["face_x"].shape[0])
        self.px = f32(2.0 / min(h, w))  # one pixel in normalised units
        self.xs = (np.arange(w, dtype=f32) + 0.5) / w * 2 - 1
        self.ys = (np.arange(h, dtype=f32) + 0.5) / h * 2 - 1
        self.fx, self.fy = params["face_x"].astype(f32), params["face_y"].astype(f32)
        roll = np.deg2rad(params["roll"].astype(f32))
        self.cr, self.sr = np.cos(roll), np.sin(roll)
        self.img = np.empty((3, n, h, w), dtype=f32)

    def region(self, cu: Any, cv: Any, half_u: Any, half_v: Any):
        """Pixel box of a face-frame rectangle; returns (view, u, v, dx, dy) on that box."""
        n = self.n
        cu, cv, hu, hv = (np.broadcast_to(np.asarray(a, dtype=np.float32).reshape(-1), (n,)) for a in (cu, cv, half_u, half_v))
        cr, sr = self.cr, self.sr
        X = self.fx + cu * cr - cv * sr
        Y = self.fy + cu * sr + cv * cr
        hx = hu * np.abs(cr) + hv * np.abs(sr) + self.px
        hy = hu * np.abs(sr) + hv * np.abs(cr) + self.px
        c0 = int(np.clip(np.floor(((X - hx).min() + 1) / 2 * self.w), 0, self.w))
        c1 = int(np.clip(np.ceil(((X + hx).max() + 1) / 2 * self.w), c0, self.w))
        r0 = int(np.clip(np.floor(((Y - hy).min() + 1) / 2 * self.h), 0, self.h))
        r1 = int(np.clip(np.ceil(((Y + hy).max() + 1) / 2 * self.h), r0, self.h))
        dx = self.xs[None, None, c0:c1] - self.fx[:, None, None]
        dy = self.ys[None, r0:r1, None] - self.fy[:, None, None]
        c, s = self.cr[:, None, None], self.sr[:, None, None]
        u = dx * c + dy * s
        v = dy * c - dx * s
        return self.img[:, :, r0:r1, c0:c1], u, v, dx, dy


def render_faces(params: dict[str, np.ndarray], image_size: Any = (96, 96)) -> np.ndarray:
    """Render faces from parameters drawn by :func:`sample_face_params`.

    Parameters
    ----------
    params : dict of str to ndarray
    image_size : int or (height, width), default=(96, 96)

    Returns
    -------
    ndarray of shape (n, height, width, 3), uint8
    """
    h, w = check_image_size(image_size, owner="render_faces")
    f32 = np.float32
    cv = _Canvas(params, h, w)
    n, px, img = cv.n, cv.px, cv.img
    col = lambda k: params[k].astype(f32)[:, None, None]  # noqa: E731
    flat = lambda k: params[k].astype(f32)  # noqa: E731
    rx, ry = col("face_width"), col("face_height")
    rx1, ry1 = flat("face_width"), flat("face_height")
    yaw, pitch = col("yaw") / 35.0, col("pitch") / 20.0
    hair, skin = params["_hair_rgb"], params["_skin_rgb"]
    vol, length, light, smile = col("hair_volume"), col("hair_length"), col("light"), col("smile")
    # background: a vertical gradient
    t = ((cv.ys + 1) / 2)[None, None, :, None]
    img[...] = params["_bg_top"].T[:, :, None, None] * (1 - t) + params["_bg_bottom"].T[:, :, None, None] * t
    # shoulders, then the neck (a vertical band below the face centre)
    sub, u, v, dx, dy = cv.region(0, 2.05 * ry1, 2.3 * rx1 + 0.2, 0.95 * ry1)
    _blend(sub, _ellipse_alpha(dx, dy - ry * 2.05, rx * 2.3, ry * 0.95, px), params["_cloth_rgb"])
    sub, u, v, dx, dy = cv.region(0, 1.3 * ry1, 0.6 * rx1, 1.3 * ry1)
    _blend(sub, _step(rx * 0.48 - np.abs(dx + 0.1 * yaw * rx), px) * (dy > 0), skin * f32(0.82))
    # the head: hair behind it, ears, the face oval narrowing to the chin, shading
    hv1 = flat("hair_volume")
    sub, u, v, dx, dy = cv.region(0, 0.1 * ry1, 1.3 * rx1 + 0.02, 1.3 * ry1 + 0.02)
    hr_x, hr_y = rx * (1.0 + 0.22 * vol), ry * (1.0 + 0.16 * vol)
    cap = _ellipse_alpha(u, v + ry * 0.06 * vol, hr_x, hr_y, px)
    upper = np.clip((ry * (0.6 * length - 0.05) - v) / (0.12 * ry), 0, 1)  # short hair stays above the ears
    drop = _step((0.05 + 1.1 * length) * ry - v, px)
    side = _step(hr_x - np.abs(u), px) * (v > -0.2 * ry) * drop * (vol > 0.5)
    _blend(sub, np.maximum(cap * upper * np.clip(vol * 4 - 0.4, 0, 1), side), hair)
    ears = [_ellipse_alpha(u - f32(s) * rx * (0.97 - 0.12 * s * yaw), v + 0.05 * ry, rx * 0.16, ry * 0.2, px)
            * np.clip(1 - 0.8 * s * yaw, 0, 1) for s in (-1.0, 1.0)]
    _blend(sub, np.maximum(*ears), skin * f32(0.9))
    taper = 1.0 - 0.22 * np.clip(v / ry, 0, 1) ** 2
    face = _ellipse_alpha(u, v, rx * taper, ry, px)
    shade = 1.0 - 0.22 * ((u / rx) ** 2 + (v / ry) ** 2) + 0.12 * light * u / rx
    _blend(sub, face, skin.T[:, :, None, None] * shade[None])
    # beard on the lower face, fringe and hairline on the upper face
    beard = np.clip((v - 0.3 * ry) / (0.15 * ry), 0, 1) * face * (col("beard") * 0.8)
    _blend(sub, beard, hair * f32(0.8))
    wave = 0.05 * ry * np.cos(u / rx * 9.0)
    over = _ellipse_alpha(u, v, rx * 1.03, ry * 1.02, px)
    fringe = _step(-0.42 * ry + wave - v, px) * col("bangs") * (vol > 0.5)
    hairline = _step(-0.62 * ry - v, px) * np.clip(vol * 2 - 0.6, 0, 1)
    _blend(sub, np.maximum(fringe, hairline) * over, hair)
    # eyes, brows and glasses: features move with pose (yaw sideways, pitch up or down)
    cx1 = flat("yaw") / 35.0 * rx1 * 0.32
    cy1 = flat("pitch") / 20.0 * ry1 * 0.12
    cxf, cyf = cx1[:, None, None], cy1[:, None, None]
    ey = cyf - 0.1 * ry
    sub, u, v, dx, dy = cv.region(cx1, cy1 - 0.16 * ry1, 0.9 * rx1, 0.24 * ry1)
    openness, gaze, glasses, brow = col("eye_openness"), col("gaze"), col("glasses"), col("brow_raise")
    layers: dict[str, list[np.ndarray]] = {k: [] for k in ("brow", "lid", "white", "iris", "pupil", "glint", "frame")}
    for s in (-1.0, 1.0):  # both eyes are drawn layer by layer (they never overlap)
        s32 = f32(s)
        near = 1.0 + 0.25 * s32 * yaw  # the eye on the turned-to side looks larger
        ex = cxf + s32 * rx * 0.4 * (1 - 0.15 * s32 * yaw)
        ew = rx * 0.2 * near
        eh = ry * 0.085 * (0.08 + 0.92 * openness)
        eu, ev = u - ex, v - ey
        brow_v = ev + ry * (0.17 + 0.05 * brow) + s32 * eu * 0.18 * brow
        layers["brow"].append(_ellipse_alpha(eu + s32 * 0.02 * rx, brow_v, ew * 1.15, ry * 0.035, px))
        layers["lid"].append(_ellipse_alpha(eu, ev, ew * 1.08, eh + px * 0.9, px))
        white = _ellipse_alpha(eu, ev, ew, eh, px)
        layers["white"].append(white)
        iu = eu - gaze * ew * 0.35
        layers["iris"].append(_ellipse_alpha(iu, ev, ew * 0.45, ew * 0.45, px) * white)
        layers["pupil"].append(_ellipse_alpha(iu, ev, ew * 0.2, ew * 0.2, px) * white)
        layers["glint"].append(_ellipse_alpha(iu + ew * 0.12, ev + ew * 0.12, ew * 0.08, ew * 0.08, px) * white * 0.8)
        ring = np.abs(np.sqrt(eu ** 2 + ((ev + 0.01) * 1.15) ** 2) - rx * 0.3 * near)
        layers["frame"].append(_step(rx * 0.03 - ring, px) * glasses)
    layers["frame"].append(_ellipse_alpha(u - cxf, v - ey + 0.02 * ry, rx * 0.12 * (1 + 0.2 * yaw), rx * 0.025, px) * glasses)
    colours = {"brow": hair * f32(0.75), "lid": skin * f32(0.35), "white": np.full((n, 3), 0.94, f32),
               "iris": params["_eye_rgb"], "pupil": np.full((n, 3), 0.03, f32), "glint": np.ones((n, 3), f32),
               "frame": params["_frame_rgb"]}
    for key, alphas in layers.items():
        _blend(sub, functools.reduce(np.maximum, alphas), colours[key])
    # nose (shaded side and nostrils) and mouth (lips between two arcs; corners rise
    # with the smile; an open mouth shows the cavity and, when smiling, teeth)
    sub, u, v, dx, dy = cv.region(cx1 * 1.2, cy1 + 0.38 * ry1, 0.5 * rx1, 0.3 * ry1)
    nu, nv = u - cxf * 1.35, v - (cyf + 0.3 * ry)
    ridge = np.clip(1 - np.abs(nu + 0.06 * rx * np.sign(light + 1e-3)) / (0.05 * rx), 0, 1)
    ridge *= np.clip((nv + 0.3 * ry) / (0.3 * ry), 0, 1) * np.clip(-nv / (0.05 * ry) + 1, 0, 1) * 0.25
    _blend(sub, ridge, skin * f32(0.6))
    nostrils = [_ellipse_alpha(nu - f32(s) * rx * 0.08, nv, rx * 0.05, ry * 0.028, px) for s in (-1.0, 1.0)]
    _blend(sub, np.maximum(*nostrils) * 0.85, skin * f32(0.4))
    mu, mv = u - cxf * 1.1, v - (cyf + 0.53 * ry)
    mw = rx * (0.3 + 0.06 * smile)
    q = np.clip(1 - (mu / mw) ** 2, 0, 1)
    centre = smile * ry * 0.07 * q - 0.015 * ry
    opening = col("mouth_open") * ry * 0.09 * np.sqrt(q)
    inside = _step(mw - np.abs(mu), px)
    dist = np.abs(mv - centre)
    _blend(sub, _step(ry * 0.035 * np.sqrt(q) + opening - dist, px) * inside, params["_lip_rgb"])
    cavity = _step(opening * 0.8 - dist, px) * inside
    _blend(sub, cavity, np.tile(np.array([[0.25, 0.05, 0.06]], f32), (n, 1)))
    _blend(sub, cavity * _step(centre - mv, px) * (smile > 0), np.full((n, 3), 0.92, f32))
    # to uint8, channels last
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for c in range(3):
        plane = img[c]
        plane *= 255.0
        plane += 0.5
        np.clip(plane, 0, 255, out=plane)
        out[..., c] = plane
    return out


@functools.lru_cache(maxsize=16)
def _param_block(seed: int, block: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, block])
    params = sample_face_params(PARAM_BLOCK, rng)
    for a in params.values():
        a.setflags(write=False)
    return params


def _params_range(seed: int, start: int, stop: int) -> dict[str, np.ndarray]:
    """Parameters of items ``start .. stop`` (independent of how the range is split)."""
    parts = []
    for block in range(start // PARAM_BLOCK, (stop - 1) // PARAM_BLOCK + 1 if stop > start else start // PARAM_BLOCK):
        lo = max(start, block * PARAM_BLOCK) - block * PARAM_BLOCK
        hi = min(stop, (block + 1) * PARAM_BLOCK) - block * PARAM_BLOCK
        parts.append({k: v[lo:hi] for k, v in _param_block(seed, block).items()})
    if not parts:
        return {k: v[:0] for k, v in _param_block(seed, 0).items()}
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class SyntheticFaces(ImageSource):
    """``n`` procedural face images, deterministic per ``seed`` (spec ``synthetic:N``).

    Parameters
    ----------
    n : int
        Number of faces.
    image_size : int or (height, width), default=(96, 96)
    seed : int, default=0
        Item ``i`` depends only on ``(seed, i)``.

    Attributes
    ----------
    attribute_names : tuple of str
        The face parameters of :data:`FACE_ATTRIBUTES`, returned per item with each
        batch (and written as store columns by ``latentscope encode``).

    Examples
    --------
    >>> src = SyntheticFaces(8, image_size=32)
    >>> batch = next(src.iter_batches(4))
    >>> batch.images.shape, sorted(batch.attributes)[:2]
    ((4, 32, 32, 3), ['beard', 'bangs'])
    """

    _chunk_items = 64

    def __init__(self, n: int, *, image_size: Any = (96, 96), seed: int = 0) -> None:
        check_positive(n, "n", owner="SyntheticFaces", integer=True, minimum=1)
        check_positive(seed, "seed", owner="SyntheticFaces", integer=True, minimum=0)
        self.n = int(n)
        self.seed = int(seed)
        self.image_size = check_image_size(image_size, owner="SyntheticFaces")
        self.strict = False
        self.spec = f"synthetic:{self.n}?seed={self.seed}"

    def __len__(self) -> int:
        return self.n

    @property
    def item_ids(self) -> np.ndarray:
        return np.array([str(i) for i in range(self.n)], dtype=object)

    def _ids(self, start: int, stop: int) -> np.ndarray:
        return np.array([str(i) for i in range(start, min(stop, self.n))], dtype=object)

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(FACE_ATTRIBUTES)

    def attributes(self, start: int, stop: int) -> dict[str, np.ndarray]:
        params = _params_range(self.seed, start, min(stop, self.n))
        return {k: params[k].astype(FACE_ATTRIBUTES[k][0], copy=True) for k in FACE_ATTRIBUTES}

    def params(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """All drawn parameters (attributes and colours) of items ``start .. stop``."""
        stop = self.n if stop is None else min(stop, self.n)
        return {k: v.copy() for k, v in _params_range(self.seed, start, stop).items()}

    def _decode_range(self, start: int, stop: int) -> DecodedRange:
        images = render_faces(_params_range(self.seed, start, stop), self.image_size)
        return DecodedRange(start, images, [None] * (stop - start))
