"""The examples of a Markdown document: its fenced code blocks, with the line each starts on.

A fence names its language. ```sh, ```bash, ```console (the `$ ` lines) and ```python blocks are
examples and run; any other language (```text, ```toml, ```json, ```mermaid, ...) is shown, not
run. An example that must not run says why in an HTML comment on the line before its fence:
`<!-- not run: the reason -->`. A file the reader is told to save (a configuration) is marked
`<!-- file: NAME -->` on the line before its fence, and is written to NAME, in order with the
examples. A fence without a language is refused (it would hide an example from the tests).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELL = ("sh", "bash", "console")
RUN = (*SHELL, "python")

FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r"<!--\s*not run:(?P<reason>.*?)-->\s*$")
FILE = re.compile(r"<!--\s*file:\s*(?P<name>[^\s>]+)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    not_run: str | None  # the reason given, if the block is marked not to run
    file: str | None = None  # the file the block is saved as, if it is marked so

    @property
    def where(self) -> str:
        doc = self.doc.relative_to(ROOT) if self.doc.is_relative_to(ROOT) else self.doc
        return f"{doc}:{self.line}"

    @property
    def runs(self) -> bool:
        return (self.lang in RUN or self.file is not None) and self.not_run is None

    def shell_text(self) -> str:
        """The commands of a shell block (for ```console, the `$ ` lines without output)."""
        if self.lang != "console":
            return self.text
        return "".join(line[2:] + "\n" for line in self.text.splitlines()
                       if line.startswith("$ "))

    def commands(self) -> list[str]:
        """The block's commands without comments and blank lines (to recognise `make serve`)."""
        out = []
        for line in self.shell_text().splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
        return out


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(doc: Path) -> list[Block]:
    text = doc.read_text(encoding="utf-8")
    found = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = NOT_RUN.search(before)
        file = FILE.search(before)
        body = textwrap.dedent(m.group("body"))
        found.append(Block(doc, line, m.group("lang").strip(), body,
                           mark.group("reason").strip() if mark else None,
                           file.group("name") if file else None))
    return found
