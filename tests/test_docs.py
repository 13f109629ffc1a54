"""The documentation site: it builds without warnings, every page is in the navigation, and the
quick start page says what the README says."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _nav_pages(entries) -> list[str]:
    """Every page path in a MkDocs ``nav`` (nested lists of strings and one-key mappings)."""
    pages: list[str] = []
    for entry in entries:
        if isinstance(entry, str):
            pages.append(entry)
        elif isinstance(entry, dict):
            for value in entry.values():
                pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return [p for p in pages if not re.match(r"^[a-z][a-z0-9+.-]*://", p)]


def _config() -> dict:
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml uses MkDocs' own tags (``!relative``); their values do not matter here.
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)


def test_every_page_is_in_the_nav():
    nav = _nav_pages(_config()["nav"])
    assert len(nav) == len(set(nav)), "a page appears twice in the nav of mkdocs.yml"
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    missing = [p for p in pages if p not in nav]
    assert not missing, f"pages of docs/ missing from the nav of mkdocs.yml: {missing}"
    # Entries outside docs/ are repository files that docs/hooks.py publishes at their paths.
    absent = [p for p in nav if not (DOCS / p).is_file() and not (ROOT / p).is_file()]
    assert not absent, f"nav entries of mkdocs.yml with no file: {absent}"


def _fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_quickstart_page_matches_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = (DOCS / "quickstart.md").read_text(encoding="utf-8")
    blocks = _fenced_blocks(readme)
    commands = [b for b in blocks if b.startswith("python -m venv")]
    assert len(commands) == 2, "the README's quick start has two commands"
    pipeline = [b for b in blocks if b.startswith("invrim simulate")]
    first_model = [b for b in blocks if b.startswith("import torch")]
    for block in commands + pipeline + first_model:
        assert block in _fenced_blocks(quickstart), \
            f"docs/quickstart.md no longer shows the README's\n{block}"


def test_site_builds_without_warnings(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("material")
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{output}"
    assert not re.search(r"^WARNING", output, flags=re.MULTILINE), output
    # the API reference is generated from the docstrings, and the repository pages are published
    rim = (site / "api" / "rim" / "index.html").read_text(encoding="utf-8")
    assert 'id="invrim.rim.RIM.fit"' in rim and "checkpoints_directory" in rim
    assert (site / "benchmarks" / "RESULTS" / "index.html").is_file()
    assert (site / "plugins" / "invrim-mri" / "index.html").is_file()
