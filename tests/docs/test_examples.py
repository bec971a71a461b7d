"""Every example in README.md and docs/*.md runs, in order per document, against a fresh system
started the way the document says; a failing example fails with the document, line and output."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.markdown import RUN, Block, blocks, documents
from tests.docs.runner import DocSession

ALL = [b for doc in documents() for b in blocks(doc)]
EXAMPLES = [b for b in ALL if b.runs]


class Sessions:
    """One session per document; the previous document's system stops when the next begins."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.doc: Path | None = None
        self.session: DocSession | None = None

    def for_doc(self, doc: Path) -> DocSession:
        if self.doc != doc or self.session is None:
            self.close()
            self.session = DocSession(self.factory.mktemp(doc.stem))
            self.doc = doc
        return self.session

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sessions]:
    s = Sessions(tmp_path_factory)
    yield s
    s.close()


@pytest.mark.parametrize("block", EXAMPLES, ids=[b.where for b in EXAMPLES])
def test_example_runs(sessions: Sessions, block: Block) -> None:
    session = sessions.for_doc(block.doc)
    # an example selected on its own (-k) still finds what the examples before it made
    for earlier in EXAMPLES:
        if earlier.doc == block.doc and earlier.line < block.line and earlier not in session.done:
            session.run(earlier)
    session.run(block)


def test_every_fence_names_its_language() -> None:
    unnamed = [b.where for b in ALL if not b.lang]
    assert not unnamed, f"fences without a language (an example the tests would skip): {unnamed}"


def test_examples_not_run_are_few_and_say_why() -> None:
    marked = [b for b in ALL if b.not_run is not None]
    assert all(len(b.not_run or "") >= 10 for b in marked), [b.where for b in marked]
    assert all(b.lang in RUN for b in marked), "only a runnable example needs a not-run mark"
    # fewer than 3 in 10 of the examples (today: long-running services on fixed ports,
    # machines the suite does not have, and steps waiting for another piece of work)
    assert len(marked) * 10 < (len(marked) + len(EXAMPLES)) * 3, \
        [f"{b.where}: {b.not_run}" for b in marked]


def test_the_documents_have_examples() -> None:
    docs = {b.doc.name for b in EXAMPLES}
    assert {"README.md", "integration-guide.md", "ca-admin-guide.md",
            "operations-guide.md"} <= docs, docs
