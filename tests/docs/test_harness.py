"""The docs harness itself: what counts as an example, and a failing example failing with the
document, the line and the output (a harness that could not fail would prove nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sscard.emulator.sample import SAMPLE_HOLDER
from tests.docs.markdown import blocks
from tests.docs.runner import DocSession, ExampleFailed

DOC = """# A guide

```sh
export GREETING=hello
mkdir -p sub && cd sub
umask 077
```

<!-- file: settings.toml -->
```toml
name = "x"
```

```console
$ test "$GREETING" = hello && test "$(basename "$PWD")" = sub && test "$(umask)" = 0077
output lines are not commands
$ test -f settings.toml
```

<!-- not run: shows what must never be run -->
```sh
exit 3
```

```text
exit 4
```

```python
import os, pathlib
assert os.environ["GREETING"] == "hello" and pathlib.Path.cwd().name == "sub"
print("to stdout", os.environ["GREETING"])
raise SystemExit("the example broke")
```

```sh
echo never reached
```
"""


def test_examples_run_in_order_and_a_failure_names_doc_line_and_output(tmp_path: Path) -> None:
    doc = tmp_path / "guide.md"
    doc.write_text(DOC, encoding="utf-8")
    found = blocks(doc)
    assert [(b.lang, b.runs) for b in found] == [
        ("sh", True), ("toml", True), ("console", True), ("sh", False), ("text", False),
        ("python", True), ("sh", True)]
    assert found[3].not_run == "shows what must never be run"
    assert found[2].shell_text().count("\n") == 2  # the output line is not a command
    session = DocSession(tmp_path / "run")
    try:
        for block in found[:3]:
            session.run(block)
        with pytest.raises(ExampleFailed) as failed:
            session.run(found[5])
        message = str(failed.value)
        assert f"{doc}:{found[5].line}" in message
        assert "to stdout hello" in message and "the example broke" in message
        with pytest.raises(ExampleFailed, match="an earlier example of this document failed"):
            session.run(found[6])
    finally:
        session.close()


CARDS = """# Two cards

```sh
sscard card emulate --state sample.card --new-sample
```

```sh
sscard card info --format json > first.json
```

```sh
sscard card emulate --state blank.card --new-blank
```

```sh
sscard card info --format json > second.json
```
"""


PULL_AND_INSERT = """
import json, sys
from pathlib import Path
from tests.docs.markdown import blocks
from tests.docs.runner import DocSession

root = Path(sys.argv[1])
session = DocSession(root / "run")
stopped = []
try:
    for block in blocks(root / "cards.md"):
        first = session.emulator
        session.run(block)
        if first is not None and session.emulator is not first:
            stopped.append(first.poll() is not None)
finally:
    session.close()
print(json.dumps({"stopped": stopped, "work": str(session.work)}))
"""


def test_a_second_emulated_card_takes_the_place_of_the_first(tmp_path: Path) -> None:
    """A guide that pulls one card and inserts another (sample card, then a blank one) reaches
    the second card in the same reader, and the first card's emulator is stopped. (In a child
    process: libpcsclite keeps the first pcscd socket it was pointed at for the process's life,
    and this suite's other tests have theirs.)"""
    import json
    import subprocess
    import sys

    from tests.docs.markdown import ROOT

    (tmp_path / "cards.md").write_text(CARDS, encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", PULL_AND_INSERT, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["stopped"] == [True]  # the first card's emulator stopped before the second
    work = Path(result["work"])
    first_card = json.loads((work / "first.json").read_text(encoding="utf-8"))
    second_card = json.loads((work / "second.json").read_text(encoding="utf-8"))
    assert (work / "sample.card").exists() and (work / "blank.card").exists()
    assert first_card["ssn"] == SAMPLE_HOLDER.ssn  # the sample card, then
    assert second_card["ssn"] == "" and second_card["card_number"] == ""  # the blank one
