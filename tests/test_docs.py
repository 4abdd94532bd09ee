"""The generated references (docs/cli.md, docs/api.md) are current, every public name is documented,
and the documentation's links and figures exist."""

from __future__ import annotations

import difflib
import importlib.util
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _load(script: str):
    spec = importlib.util.spec_from_file_location(f"_docs_{script}", DOCS / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_current(name: str, generated: str) -> None:
    current = (DOCS / name).read_text(encoding="utf-8") if (DOCS / name).exists() else ""
    if generated != current:
        diff = list(difflib.unified_diff(current.splitlines(), generated.splitlines(), f"docs/{name}", "generated", n=1, lineterm=""))
        script = "gen_cli_reference.py" if name == "cli.md" else "gen_api_reference.py"
        pytest.fail(f"docs/{name} is out of date; run: python docs/{script}\n" + "\n".join(diff[:40]), pytrace=False)


def test_cli_reference_up_to_date():
    gen = _load("gen_cli_reference")
    _assert_current("cli.md", gen.render())


def test_cli_reference_lists_every_command_and_option():
    import typer

    from latentscope.cli import app

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        assert f"## `latentscope {name}`" in text
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("-"):
                    assert f"`{opt}`" in text, f"{name}: {opt} missing from docs/cli.md"


def test_api_reference_up_to_date():
    gen = _load("gen_api_reference")
    _assert_current("api.md", gen.render())


def test_public_names_have_docstrings():
    gen = _load("gen_api_reference")
    missing = gen.missing_docstrings()
    assert not missing, "public names without a docstring (numpydoc; constants need a '#:' comment): " + ", ".join(missing)


def test_missing_docstrings_finds_undocumented_names(tmp_path, monkeypatch):
    pkg = tmp_path / "_fake_docs_pkg"
    pkg.mkdir()
    (pkg / "_impl.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass

        #: A documented constant.
        GOOD_CONST = 1
        BAD_CONST = 2

        def good():
            """Documented."""

        def bad():
            pass

        @dataclass
        class BadRecord:
            x: int

        @dataclass
        class GoodRecord:
            """Documented record."""
            x: int
    '''))
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        """A fake package."""
        from ._impl import GOOD_CONST, BAD_CONST, good, bad, BadRecord, GoodRecord

        __all__ = ["GOOD_CONST", "BAD_CONST", "good", "bad", "BadRecord", "GoodRecord"]
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    gen = _load("gen_api_reference")
    missing = gen.missing_docstrings(["_fake_docs_pkg"])
    assert missing == ["_fake_docs_pkg.BAD_CONST", "_fake_docs_pkg.bad", "_fake_docs_pkg.BadRecord"]


def test_reference_generators_import_no_heavy_modules():
    code = (
        "import sys, runpy\n"
        "sys.argv = ['x', '--check']\n"
        "rc = 0\n"
        f"for script in ({str(DOCS / 'gen_cli_reference.py')!r}, {str(DOCS / 'gen_api_reference.py')!r}):\n"
        "    try:\n"
        "        runpy.run_path(script, run_name='__main__')\n"
        "    except SystemExit as exc:\n"
        "        rc |= int(exc.code or 0)\n"
        "heavy = [m for m in ('matplotlib', 'tensorflow', 'keras', 'torch', 'jax') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr


def _markdown_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def test_docs_index_lists_every_page():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([\w\-]+\.md)(?:#[^)]*)?\)", index))
    for page in _markdown_pages():
        if page.name != "index.md":
            assert page.name in linked, f"docs/index.md does not link {page.name}"
    for name in linked:
        assert (DOCS / name).exists(), f"docs/index.md links a missing page: {name}"


@pytest.mark.parametrize("page", _markdown_pages(), ids=lambda p: p.name)
def test_docs_local_links_and_images_exist(page):
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # links inside code blocks are not links
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{page.name}: broken link {target}"
        if path.suffix.lower() == ".png":
            assert path.stat().st_size < 200 * 1024, f"{page.name}: {target} is over 200 KB"
