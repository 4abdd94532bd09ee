"""Tables of landing figures: Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["landing_table_rows", "write_landing_tables"]

#: (column, header, format) of the table.
_COLUMNS = (
    ("name", "region", "{}"),
    ("in_fragment_rate", "in-fragment", "{:.3f}"),
    ("typical_rate", "typical", "{:.3f}"),
    ("near_rate", "near", "{:.3f}"),
    ("frac_in_pca_box", "in PCA box", "{:.3f}"),
    ("frac_in_ellipsoid", "in 0.99 ellipsoid", "{:.3f}"),
    ("radius_mean", "mean \\|z\\|", "{:.3g}"),
    ("radius_std", "sd \\|z\\|", "{:.3g}"),
    ("mahalanobis_median", "median Mahalanobis r", "{:.3g}"),
    ("nn_median", "median NN dist", "{:.3g}"),
)


def landing_table_rows(reports: Sequence[Any], described: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """One dict of scalars per report (plus the sampler parameters, when given)."""
    rows = []
    for r in reports:
        row = r.summary()
        if described is not None:
            row["parameters"] = described.get(r.name, "")
        rows.append(row)
    return rows


def write_landing_tables(
    reports: Sequence[Any],
    stem: str | Path,
    *,
    described: Mapping[str, str] | None = None,
    reference: Any = None,
    store_path: str = "",
) -> list[Path]:
    """Write ``stem``.md, ``stem``.csv and ``stem``.json; return the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    rows = landing_table_rows(reports, described)
    first = reports[0]
    # Markdown
    head = [h for _, h, _ in _COLUMNS] + (["parameters"] if described is not None else [])
    lines = [
        f"# Where the samples land ({first.n_samples} per region, z_dim {first.z_dim})",
        "",
        f"Data: {store_path or 'array'}; data |z| = {first.data_radius_mean:.3g} +- {first.data_radius_std:.2g}, "
        f"held-out rows (n = {first.n_reference}; the metric, box and ellipsoid come from the other {first.n_fit}): "
        f"median Mahalanobis radius {first.data_mahalanobis_median:.3g}, "
        f"in-fragment {first.data_in_fragment_rate:.3f}, in PCA box {first.data_frac_in_pca_box:.3f}, "
        f"in {first.level:g} ellipsoid {first.data_frac_in_ellipsoid:.3f} (Hotelling prediction bound, squared radius "
        f"{first.ellipsoid_bound:.4g}).",
        f"In-fragment = typical (Mahalanobis radius in [{first.typical_band[0]:.3g}, {first.typical_band[1]:.3g}]) and "
        f"near (whitened distance to the nearest fit row at most {first.nn_threshold:.4g}); both thresholds set on the "
        f"held-out rows so that {first.nn_quantile:g} of them pass; neighbours {first.knn}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(_COLUMNS) - 1) + (["---"] if described is not None else [])) + "|",
    ]
    for row in rows:
        cells = [fmt.format(row[key]) for key, _, fmt in _COLUMNS]
        if described is not None:
            cells.append(str(row.get("parameters", "")).replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    md = stem.with_suffix(".md")
    md.write_text("\n".join(lines) + "\n")
    # CSV
    keys = list(rows[0])
    csv_path = stem.with_suffix(".csv")
    with csv_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    # JSON
    js = stem.with_suffix(".json")
    payload: dict[str, Any] = {"store": store_path, "reports": [r.to_dict() for r in reports]}
    if described is not None:
        payload["parameters"] = dict(described)
    if reference is not None:
        payload["reference"] = {"n_rows": int(reference.n_rows_), "nn_threshold": float(reference.nn_threshold_),
                                "n_reference": int(reference.reference_rows_.size)}
    js.write_text(json.dumps(payload, indent=2))
    return [md, csv_path, js]
