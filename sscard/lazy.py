"""Names of a package loaded from their modules when first used (PEP 562), so that a command
importing the package pays only for what it touches (start-up time, issue 16)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, where: Mapping[str, str], namespace: dict[str, Any],
                 renamed: Mapping[str, str] | None = None,
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``: ``where`` maps each exported
    name to the submodule that defines it, ``renamed`` an exported name to the one it has in
    that submodule where the two differ; a name once loaded is bound in ``namespace`` (the
    package's globals) and found directly from then on."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        own = renamed.get(name, name) if renamed else name
        # __import__, not importlib.import_module: the same import, and `python -X importtime`
        # (which only sees the interpreter's own import path) still shows it
        value = getattr(__import__(f"{package}.{module}", fromlist=(own,)), own)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__
