"""The import direction of DESIGN.md §3, read from the source with ``ast`` (every import,
those inside functions included):

    reader_tools ──> ra ──┬──> ca ───────┬──> sscard ──> third-party libraries
                          └──> keymgmt ──┘

``ra`` reaches ``ca`` and ``keymgmt`` only through its ports (ra/ports.py), their published
clients and their public value types and errors (issue 11 item 1); its composition root
(``sscard ra serve``, ra/cli.py) may also import the in-process adapters that wire the embedded
system.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sscard", "ca", "keymgmt", "ra", "reader_tools")

#: which of the project's packages each package may import (besides itself)
MAY_IMPORT: dict[str, frozenset[str]] = {
    "sscard": frozenset(),
    "ca": frozenset({"sscard"}),
    "keymgmt": frozenset({"sscard"}),
    "ra": frozenset({"sscard", "ca", "keymgmt"}),
    "reader_tools": frozenset({"sscard", "ra", "ca", "keymgmt"}),
}

#: what of ca and keymgmt is public to the packages above them: clients, errors, value types
PUBLIC = ("ca.client", "ca.errors", "ca.records", "keymgmt.client", "keymgmt.errors",
          "keymgmt.records")

#: composition roots in ra, and the in-process adapters (of ra.ports) they may wire
COMPOSITION_ROOTS = {"ra/cli.py": frozenset({"ca.ports_inprocess", "keymgmt.ports_inprocess"})}


def _imports(path: Path, root: Path) -> Iterator[str]:
    """Absolute names of the modules a file imports: relative imports resolved, and
    ``from package import module`` named as the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    module_parts = path.relative_to(root).with_suffix("").parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                keep = len(module_parts) - node.level + (path.name == "__init__.py")
                base = ".".join([*module_parts[:keep], *([node.module] if node.module else [])])
            elif node.module:
                base = node.module
            else:
                continue
            for alias in node.names:
                sub = root.joinpath(*base.split("."), alias.name)
                is_module = sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file()
                yield f"{base}.{alias.name}" if is_module else base


def _project_imports(root: Path = ROOT) -> list[tuple[str, str, str]]:
    """(file, importing package, imported module) for every import of another package."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for name in set(_imports(path, root)):
                top = name.split(".")[0]
                if top in PACKAGES and top != package:
                    found.append((path.relative_to(root).as_posix(), package, name))
    return found


def _is_public(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in PUBLIC)


def test_imports_point_downward_only() -> None:
    upward = [f"{file} imports {module}" for file, package, module in _project_imports()
              if module.split(".")[0] not in MAY_IMPORT[package]]
    assert upward == []


def test_ra_and_reader_tools_reach_ca_and_kmc_only_through_public_modules() -> None:
    seen = {(file, module) for file, package, module in _project_imports()
            if package in ("ra", "reader_tools") and module.split(".")[0] in ("ca", "keymgmt")
            and not _is_public(module) and module not in COMPOSITION_ROOTS.get(file, ())}
    assert sorted(seen) == [], "imports of CA or KMC internals"


def test_the_ra_service_holds_only_its_ports() -> None:
    """ra/service.py and ra/ports.py name no ``Any`` at the seam: the RA's CA and KMC are typed
    by the ports, and the ports by public value types."""
    from ra.ports import CaPort, KmcPort
    from ra.service import RegistrationAuthority

    hints = RegistrationAuthority.__init__.__annotations__
    assert (hints["ca"], hints["kmc"]) == ("CaPort | None", "KmcPort | None")
    ports = (ROOT / "ra" / "ports.py").read_text(encoding="utf-8")
    assert "Any" not in ports and "dict[" not in ports
    assert {name for name in vars(CaPort) if not name.startswith("_")} == {
        "chain", "status", "issue_from_csr", "issue_for_public_key", "issue_batch", "revoke"}
    assert {name for name in vars(KmcPort) if not name.startswith("_")} == {
        "escrow", "attach_certificate", "request_recovery", "approve_recovery",
        "complete_recovery"}


def test_the_checker_sees_lazy_relative_and_submodule_imports(tmp_path: Path) -> None:
    """The checker itself, on a tree of its own: an import inside a function counts like a
    top-level one; ``from ca import authority`` names the module ``ca.authority``."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "ca" / "authority.py").write_text("", encoding="utf-8")
    (tmp_path / "sscard" / "der.py").write_text("", encoding="utf-8")
    (tmp_path / "sscard" / "probe.py").write_text(
        "def f():\n    from ra.service import RegistrationAuthority\n    from .der import tlv\n",
        encoding="utf-8")
    (tmp_path / "ra" / "probe.py").write_text("import sscard\nfrom ca import authority\n",
                                              encoding="utf-8")
    assert sorted(_imports(tmp_path / "sscard" / "probe.py", tmp_path)) == [
        "ra.service", "sscard.der"]
    assert sorted(_project_imports(tmp_path)) == [
        ("ra/probe.py", "ra", "ca.authority"), ("ra/probe.py", "ra", "sscard"),
        ("sscard/probe.py", "sscard", "ra.service")]
