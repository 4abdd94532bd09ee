"""HTML reports that read well: real tables, linked figures, deciding numbers on top, ``_repr_html_``."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pytest

from latentscope.cli import main
from latentscope.store import create_store, open_store


class _Page(HTMLParser):
    """Tables (rows of cell texts per ``<table class=...>``), links around images, and the first block's class."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self._stack: list[str] = []
        self._cell: list[str] | None = None
        self._link: str | None = None
        self.linked_images: list[tuple[str, str]] = []
        self.divs: list[str] = []
        self.order: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append({"class": a.get("class", ""), "head": [], "body": [], "_part": "body"})
            self.order.append("table:" + a.get("class", ""))
        elif tag in ("thead", "tbody") and self.tables:
            self.tables[-1]["_part"] = "head" if tag == "thead" else "body"
        elif tag == "tr" and self.tables:
            self.tables[-1][self.tables[-1]["_part"]].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "a":
            self._link = a.get("href")
        elif tag == "img" and self._link is not None:
            self.linked_images.append((self._link, a.get("src")))
        elif tag == "div":
            self.divs.append(a.get("class", ""))
            self.order.append("div:" + a.get("class", ""))
        elif tag == "h2":
            self.order.append("h2")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables:
            rows = self.tables[-1][self.tables[-1]["_part"]]
            if rows:
                rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "a":
            self._link = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Page:
    p = _Page()
    p.feed(text)
    return p


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    """A linear model on 160 synthetic 32x32 faces and the store encoding them."""
    from latentscope.backends import encode_to_store, get_backend
    from latentscope.data import open_source

    root = tmp_path_factory.mktemp("reports")
    src = open_source("synthetic:160", image_size=(32, 32))
    model = get_backend("linear").train(src, root / "model", z_dim=8)
    encode_to_store(model, src, root / "z.h5")
    return root / "model", root / "z.h5"


@pytest.mark.slow
def test_evaluate_html_has_one_table_row_per_region(linear, tmp_path, capsys):
    model, store = linear
    out = tmp_path / "ev"
    code = main(["evaluate", str(store), "--backend", "linear", "--model", str(model), "--out", str(out),
                 "--regions", "cube,mvn,gmm", "--gmm-components", "2", "-n", "60", "--seed", "1",
                 "--kid-subsets", "0", "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 0, err
    page = _parse((out / "index.html").read_text())
    regions = [t for t in page.tables if t["class"] == "regions"]
    assert len(regions) == 1
    labels = [row[0] for row in regions[0]["body"]]
    assert labels == ["cube", "mvn", "gmm", "store-z (reference)"]
    assert all(len(row) == len(regions[0]["head"][0]) for row in regions[0]["body"])
    assert "**" not in (out / "index.html").read_text()
    # the deciding numbers come first, then the table; the best FD latent there is the JSON's
    assert page.order[0] == "div:key"
    key = {row[0]: row[1] for row in page.tables[0]["body"]}
    assert key["best on fd_latent"] == json.loads((out / "metrics.json").read_text())["best"]["fd_latent"]
    assert "in-fragment rate, mvn" in key
    # every figure links to its full-size PNG
    assert ("chart.png", "chart.png") in page.linked_images
    assert {src for _, src in page.linked_images} >= {"grids/cube.png", "grids/mvn.png", "grids/gmm.png"}
    assert all(href == src and (out / href).exists() for href, src in page.linked_images)
    # the table fragment beside metrics.md
    assert _parse((out / "metrics.html").read_text()).tables[0]["class"] == "regions"


def _lognormal_store(path, rng, n=400, d=5):
    Z = rng.lognormal(0.0, 0.7, size=(n, d)) @ np.linalg.qr(rng.normal(size=(d, d)))[0]
    with create_store(path, d, source="synthetic:400") as s:
        s.append(Z.astype(np.float32), columns={"Smiling": (rng.random(n) < 0.5).astype(np.int8)})
    return path


def test_analyze_report_puts_deciding_numbers_first_and_links_figures(tmp_path, rng):
    from latentscope.analysis import analyze

    store = _lognormal_store(tmp_path / "z.h5", rng)
    res = analyze(store, tmp_path / "an")
    text = (tmp_path / "an" / "index.html").read_text()
    page = _parse(text)
    assert page.order[0] == "div:key"
    key = {row[0]: row[1] for row in page.tables[0]["body"]}
    assert float(key["effective dimension (PCA)"]) == pytest.approx(res.pca.effective_dimension_, rel=1e-3)
    assert len(page.linked_images) >= 6
    assert all(href == src and src.endswith(".png") and (tmp_path / "an" / src).exists()
               for href, src in page.linked_images)
    html = res._repr_html_()
    assert "effective dimension" in html and "<table" in html


def test_repr_html_of_store_landing_report_and_evaluation(tmp_path, rng):
    from latentscope.samplers import landing_report, make_sampler

    store = _lognormal_store(tmp_path / "z.h5", rng)
    with open_store(store) as st:
        text = st._repr_html_()
        assert "<table" in text and "400 x 5" in text and "Smiling" in text
        sampler = make_sampler("mvn").fit(st, rng=rng)
        rep = landing_report(sampler.sample(200, rng=rng), st, rng=rng, name="mvn")
    assert "closed" in st._repr_html_()
    t = rep._repr_html_()
    assert "in-fragment" in t and "<table" in t and "mvn" in t


def test_plot_functions_return_figures(tmp_path, rng):
    from matplotlib.figure import Figure

    from latentscope.filaments import FilamentDetector
    from latentscope.filaments._plots import plot_filaments, plot_statistics

    Z = rng.standard_t(3, size=(600, 4))
    det = FilamentDetector(rng=0).fit(Z)
    assert isinstance(plot_filaments(det, Z), Figure)
    fig = plot_statistics(det, tmp_path / "s.png")
    assert isinstance(fig, Figure) and (tmp_path / "s.png").exists()


def test_demo_page_puts_deciding_numbers_first_and_embeds_the_html_table(tmp_path):
    # the demo's page from the files its steps write (the pipeline itself runs in tests/test_demo.py)
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("demo", Path(__file__).parents[1] / "examples" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    ev = tmp_path / "evaluate"
    ev.mkdir()
    (ev / "metrics.md").write_text("| region |\n")
    (ev / "metrics.html").write_text('<table class="regions"><tbody><tr><th>cube</th><td>1</td></tr>'
                                     "<tr><th>mvn</th><td>2</td></tr></tbody></table>")
    (ev / "metrics.json").write_text(json.dumps({"best": {"fd_latent": "mvn", "precision": "mvn", "recall": "mvn"},
                                                 "rows": [{"label": "cube", "in_fragment": 0.0},
                                                          {"label": "mvn", "in_fragment": 0.93}]}))
    (tmp_path / "filaments").mkdir()
    (tmp_path / "filaments" / "filaments.json").write_text(json.dumps({"n_filaments": 2, "n_points": 300}))
    demo.write_index(tmp_path, "synthetic:300", "small", 1, {"train": 1.0})
    text = (tmp_path / "index.html").read_text()
    page = _parse(text)
    assert page.order[0] == "div:key" and "<pre>" not in text
    key = {row[0]: row[1] for row in page.tables[0]["body"]}
    assert key["best region on fd_latent"] == "mvn" and key["in-fragment rate, mvn"] == "0.93"
    assert key["filaments"].startswith("2 filament(s)")
    assert [row[0] for row in next(t for t in page.tables if t["class"] == "regions")["body"]] == ["cube", "mvn"]
