"""One catalogue of audit actions (sscard.audit.AuditAction), one naming scheme
(``<zone>.<object>.<verb>``): every action written anywhere in the code is a member."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sscard.audit import AuditAction
from sscard.audit.actions import ZONES
from sscard.gateway.service import ROUTES

ROOT = Path(__file__).resolve().parents[2]
SCHEME = re.compile(rf"^({'|'.join(ZONES)})(\.[a-z][a-z_]*)+$")


def test_every_member_follows_the_scheme() -> None:
    assert [a.value for a in AuditAction if not SCHEME.match(a.value)] == []
    assert len({a.value for a in AuditAction}) == len(AuditAction)
    assert {a.zone for a in AuditAction} == set(ZONES)


def _written_actions() -> list[tuple[str, str]]:
    """(place, action) for each literal action handed to an audit log's operation/append."""
    found = []
    for package in ("sscard", "ca", "keymgmt", "ra", "reader_tools"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("operation", "append") and len(node.args) >= 2
                        and "audit" in ast.unparse(node.func.value).lower()):
                    continue
                action = node.args[1]
                if isinstance(action, ast.Constant) and isinstance(action.value, str):
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno}", action.value))
    return found


def test_every_action_written_is_in_the_catalogue() -> None:
    written = _written_actions()
    assert written, "the scan found no audit writes at all: it is broken"
    known = {a.value for a in AuditAction}
    assert [(place, action) for place, action in written if action not in known] == []
    assert [r[2] for r in ROUTES if r[2] not in known] == []  # the gateway's route table
