"""MkDocs hooks: publish the repository's Markdown files that live outside ``docs/``.

The guide under ``docs/`` links to files elsewhere in the repository (``../benchmarks/RESULTS.md``,
``../plugins/invrim-mri/README.md`` …) so that the links work when the Markdown is read on GitHub.
MkDocs only knows ``docs/``, so these hooks

* add the files matched by ``REPOSITORY_PAGES`` to the site at their repository paths
  (``benchmarks/RESULTS.md`` is published as ``benchmarks/RESULTS/``), where the relative links
  between them keep working unchanged;
* rewrite, in every page, relative links that leave ``docs/`` to the published copy (a link to a
  folder goes to its ``README.md``). A link to a repository file that is not published is left as
  it is, and ``mkdocs build --strict`` reports it.

The repository files themselves are never modified. Configured in ``mkdocs.yml`` (``hooks:``).

The module also holds ``SphinxToMarkdown``, a griffe extension (``mkdocs.yml``: the python
handler's ``extensions``) that lets mkdocstrings render invrim's reStructuredText-flavoured numpy
docstrings as Markdown:

* cross-reference roles (``:func:`fit```) become links into the API reference, or plain code when
  the target is not on the site;
* doctest examples (``>>> …``) become code blocks, and ``::`` before a literal block becomes ``:``;
* a parameter documented together with others (``a, b`` then one description) gets its own type
  and default from the signature instead of the first name's;
* undocumented, unannotated instance attributes (``self.encoder = …``) are left out, so that
  ``show_if_no_docstring`` lists every public method without the implementation's attributes.
"""
from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Optional

import griffe
from mkdocs.structure.files import File

#: Repository files (glob patterns relative to the repository root) published on the site.
REPOSITORY_PAGES = (
    "benchmarks/README.md",
    "benchmarks/RESULTS*.md",
    "benchmarks/QUALITY.md",
    "benchmarks/OPTIMISERS.md",
    "benchmarks/UNCERTAINTY.md",
    "plugins/*/README.md",
    "plugins/*/RESULTS.md",
    "examples/RESULTS_*.md",
    "examples/plugin_template/README.md",
)

_published: dict[Path, str] = {}                       # absolute source path -> src_uri on the site
_LINK = re.compile(r"(\]\()(<?)([^)\s>]+)(>?(?:\s+\"[^\"]*\")?\))")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SCHEME = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|#|/)")


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_files(files, config):
    root = _root(config)
    _published.clear()
    taken = {f.dest_uri for f in files}
    for pattern in REPOSITORY_PAGES:
        for path in sorted(root.glob(pattern)):
            uri = path.relative_to(root).as_posix()
            if files.get_file_from_path(uri) is not None:
                continue
            file = File(uri, src_dir=str(root), dest_dir=config.site_dir,
                        use_directory_urls=config.use_directory_urls)
            if file.dest_uri in taken:        # benchmarks/README.md next to docs/benchmarks.md
                stem = uri[: -len(".md")]
                file.dest_uri = f"{stem}/index.html" if config.use_directory_urls else f"{stem}.html"
            taken.add(file.dest_uri)
            files.append(file)
            _published[path.resolve()] = uri
    return files


def _site_path(target: Path, docs: Path) -> Optional[str]:
    """The page of the site that shows the repository file or folder ``target``, if any."""
    if target.is_dir():
        target = target / "README.md"
    if target in _published:
        return _published[target]
    if target.is_relative_to(docs) and target.is_file():
        return target.relative_to(docs).as_posix()
    return None


def on_page_markdown(markdown, page, config, files):
    docs = Path(config.docs_dir).resolve()
    source = Path(page.file.abs_src_path).resolve()
    here = posixpath.dirname(page.file.src_uri) or "."

    def rewrite(match: re.Match) -> str:
        target = match.group(3)
        if _SCHEME.match(target):
            return match.group(0)
        path, hash_, anchor = target.partition("#")
        if not path:
            return match.group(0)
        site = _site_path((source.parent / path).resolve(), docs)
        if site is None:
            return match.group(0)
        new = posixpath.relpath(site, here) + hash_ + anchor
        return match.group(1) + match.group(2) + new + match.group(4)

    lines, fence = [], None
    for line in markdown.split("\n"):
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            line = _LINK.sub(rewrite, line)
        lines.append(line)
    return "\n".join(lines)


# --- griffe extension -------------------------------------------------------------------------

_ROLE = re.compile(r":(?:py:)?(func|class|meth|mod|attr|data|exc|obj|const):`(~?)([^`<>]+)`")
_LITERAL = re.compile(r"::$", re.MULTILINE)                     # reST literal-block marker
_DOCTEST = re.compile(r"^([ \t]*)>>> .*?(?=\n[ \t]*\n|\Z)", re.MULTILINE | re.DOTALL)   # to the blank line
_SHARED = re.compile(r"^\s*([A-Za-z_]\w*(?:, [A-Za-z_]\w*)+)\s*$", re.MULTILINE)


def _lazy_exports() -> dict[str, str]:
    """``invrim.X`` -> defining module, for the names ``invrim`` imports on first use."""
    try:
        import invrim
        return {f"invrim.{name}": f"{module}.{name}" for name, module in invrim._EXPORTS.items()}
    except Exception:                                           # pragma: no cover - docs only
        return {}


class SphinxToMarkdown(griffe.Extension):
    """Rewrite Sphinx cross-reference roles and fix shared parameter entries (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        self.exports = _lazy_exports()

    def _identifier(self, obj, loader, kind: str, target: str) -> Optional[str]:
        head, _, rest = target.partition(".")
        candidates = [self.exports.get(target, target)]
        try:
            candidates.insert(0, obj.resolve(head) + ("." + rest if rest else ""))
        except Exception:
            pass
        for path in candidates:
            try:
                found = loader.modules_collection.get_member(path)
                name = found.name
                if kind != "mod" and found.is_module and name in found.members:
                    found = found.members[name]            # invrim.training.fit -> its fit()
                return found.canonical_path
            except Exception:
                continue
        return None

    def on_object(self, *, obj, loader, **kwargs) -> None:
        if obj.is_class:                     # ``self.encoder = …``: implementation, not API
            for name, member in tuple(obj.members.items()):
                if (not member.is_alias and member.is_attribute and member.docstring is None
                        and member.annotation is None and member.labels == {"instance-attribute"}):
                    del obj.members[name]
        docstring = obj.docstring
        if docstring is None:
            return

        def role(match: re.Match) -> str:
            kind, short, target = match.group(1), match.group(2), match.group(3).strip()
            shown = target.rsplit(".", 1)[-1] if short else target
            identifier = self._identifier(obj, loader, kind, target)
            if identifier is None:
                return f"`{shown}`"
            return f'<autoref identifier="{identifier}" optional><code>{shown}</code></autoref>'

        text = _ROLE.sub(role, docstring.value)
        text = _DOCTEST.sub(lambda m: f"{m.group(1)}```pycon\n{m.group(0)}\n{m.group(1)}```", text)
        docstring.value = _LITERAL.sub(":", text)

        shared = {name for group in _SHARED.findall(docstring.value) for name in group.split(", ")}
        parameters = getattr(obj, "parameters", None)
        if not shared or parameters is None:
            return
        for section in docstring.parsed:                        # griffe parses it once, here
            if section.kind is not griffe.DocstringSectionKind.parameters:
                continue
            for item in section.value:
                if item.name in shared and item.name in parameters:
                    item.annotation = parameters[item.name].annotation
                    item.value = parameters[item.name].default
