"""``invrim plugins list`` and ``invrim plugins check``."""
from __future__ import annotations

import argparse
import difflib
import json
import sys


def add_parser(sub) -> None:
    parser = sub.add_parser("plugins", help="list installed plugins and check their components",
                            description="Inspect the plugins found through the 'invrim' entry-point group.")
    psub = parser.add_subparsers(dest="plugins_command", metavar="ACTION", required=True)
    lst = psub.add_parser("list", help="plugins and components: provider, version, status",
                          description="List every plugin (built-in, active, disabled, failed, missing-deps) "
                                      "and the components it provides.")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(handler=list_plugins)
    chk = psub.add_parser("check", help="run the conformance kit on installed components",
                          description="Run invrim.plugins.testing on every component (or those named): "
                                      "adjoint dot-product test, score vs autograd, batch/dtype/device, "
                                      "gradients, config round trip. A plugin that failed to load (or "
                                      "one of whose hooks raised) counts as a failure; a component whose "
                                      "optional dependency is absent is skipped with the pip hint. "
                                      "Exits 1 if anything failed.")
    chk.add_argument("names", nargs="*", metavar="NAME",
                     help="component ('blur', 'plugin:name') or plugin name; default: everything")
    chk.add_argument("--json", action="store_true", help="machine-readable output")
    chk.set_defaults(handler=check_plugins)


def list_plugins(args: argparse.Namespace) -> int:
    from ..plugins import KINDS, registry
    from ..plugins.component import install_hint
    reg = registry()
    if args.json:
        print(json.dumps({"plugins": [p.describe() for p in reg.plugins],
                          "components": [c.describe() for kind in reg.kinds().values() for c in kind]},
                         indent=2))
        return 0
    rows = [("PLUGIN", "DISTRIBUTION", "VERSION", "STATUS", "PROVIDES")]
    for p in reg.plugins:
        provides = "; ".join(f"{KINDS[kind].plural}: {', '.join(names)}"
                             for kind, names in p.describe()["provides"].items()) or "-"
        rows.append((p.name, p.distribution or "-", p.version or "-", p.status, provides))
    _table(rows)
    for p in reg.plugins:
        for note in (p.error, p.warning):
            if note:
                print(f"  {p.qualified_name}: {note}")
    missing = [c for kind in reg.kinds().values() for c in kind if c.missing]
    for c in missing:
        print(f"  {c.qualified_name} ({KINDS[c.kind].label}) needs: {install_hint(c.missing)}")
    return 0


def _table(rows) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)) + "  " + str(r[-1]))


def check_plugins(args: argparse.Namespace) -> int:
    from ..plugins import KINDS, MissingDependencyError, UnknownComponentError, registry
    from ..plugins.testing import check_component
    reg = registry()
    components = [c for kind in reg.kinds().values() for c in kind]
    broken = [p for p in reg.plugins if p.broken]
    if args.names:
        chosen, broken_named = [], []
        for name in args.names:
            record = reg.plugin(name)
            if record is not None and record.broken:
                broken_named.append(record)
            by_plugin = reg.components_of(name)        # entry-point, distribution or dist:name
            if by_plugin or record is not None:
                chosen += by_plugin
                continue
            hits = []
            for kind in reg.kinds().values():
                try:
                    hits.append(kind.info(name))       # an ambiguous name raises, naming both
                except UnknownComponentError:
                    pass
            if not hits:
                known = sorted({c.name for c in components} | {p.name for p in reg.plugins})
                close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
                hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
                raise ValueError(f"no plugin or component named {name!r}; known: {', '.join(known)}{hint}")
            chosen += hits
        components, broken = chosen, broken_named
    results, failed = [], 0
    for p in broken:                                   # a plugin that did not (fully) load
        entry = {"plugin": p.qualified_name, "kind": "plugin", "distribution": p.distribution,
                 "version": p.version, "detail": p.error or p.status}
        # a hooks module that needs an absent optional package is skipped, with the hint; anything
        # else (an import error, a raising hook) is a failure of the installation
        entry["status"] = "skipped" if p.status == "missing-deps" else "failed"
        failed += entry["status"] == "failed"
        results.append(entry)
        if not args.json:
            dist = " ".join(v for v in (p.distribution, p.version) if v)
            print(f"{entry['status'].upper():8} plugin {p.qualified_name}" + (f" ({dist})" if dist else "")
                  + f": {entry['detail']}")
    for c in components:
        entry = {"component": c.qualified_name, "kind": c.kind}
        try:
            entry["checks"] = check_component(c)
            entry["status"] = "passed"
        except (LookupError, MissingDependencyError) as e:
            entry["status"], entry["detail"] = "skipped", str(e)
        except BaseException as e:  # noqa: BLE001 — any failure (SystemExit too) is reported, not raised
            if isinstance(e, KeyboardInterrupt):
                raise
            entry["status"], entry["detail"] = "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            failed += 1
        results.append(entry)
        if not args.json:
            detail = ", ".join(entry.get("checks", [])) or entry.get("detail", "")
            print(f"{entry['status'].upper():8} {KINDS[c.kind].label} {c.qualified_name}: {detail}")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{len(results) - failed} passed or skipped, {failed} failed", file=sys.stderr)
    return 1 if failed else 0
