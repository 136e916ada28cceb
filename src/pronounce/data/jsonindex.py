"""resource/scores.json indexed instead of loaded.

json.load of the whole file would hold every utterance's labels as Python objects (several
times the file's size) for the whole of decode: memory that grows with the corpus. One
streaming pass records where each utterance's entry lies; entries are parsed when needed.
"""

import json
import re
import sys

from ..core.errors import CorpusError

_WS = re.compile(r"[ \t\n\r]*")
_LENGTH_BITS = 32  # an entry of up to 4 GiB
_DECODER = json.JSONDecoder()


class _JsonCursor:
    """A moving window over a UTF-8 JSON file, read as latin-1 so that string positions are byte
    offsets (UTF-8's multi-byte sequences never contain the bytes JSON's syntax uses)."""

    def __init__(self, f, path, chunk: int):
        self.f, self.path, self.chunk = f, path, chunk
        self.buf, self.base, self.pos, self.eof = "", 0, 0, False

    def _more(self) -> bool:
        data = b"" if self.eof else self.f.read(self.chunk)
        if not data:
            self.eof = True
            return False
        self.buf, self.base, self.pos = self.buf[self.pos:] + data.decode("latin-1"), self.base + self.pos, 0
        return True

    def peek(self) -> str:
        """The next non-blank character ('' at the end of the file)."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self._more():
                return self.buf[self.pos:self.pos + 1]

    def expect(self, chars: str, what: str) -> str:
        c = self.peek()
        if not c or c not in chars:
            self.fail(f"expected {what}", self.pos)
        self.pos += 1
        return c

    def value(self):
        """(the next JSON value, its start and end byte offsets)."""
        self.peek()
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:  # a number cut at the window's end is not whole
                    start, self.pos = self.pos, end
                    return obj, self.base + start, self.base + end
            except json.JSONDecodeError as e:
                if self.eof:
                    self.fail(e.msg, e.pos)
            self._more()

    def fail(self, msg: str, pos: int):
        raise CorpusError(f"{self.path} is not valid JSON: {msg} at byte {self.base + pos}")


def index_scores(path, chunk: int = 1 << 20) -> dict[str, int]:
    """utterance id -> where its entry lies in scores.json (start and length packed in one int:
    a third of the memory of a tuple), in one streaming pass (a later duplicate key wins, as
    with json.load). `load_score` reads an entry back."""
    spans = {}
    with open(path, "rb") as f:
        cur = _JsonCursor(f, path, chunk)
        if cur.peek() != "{":
            raise CorpusError(f"{path}: expected an object keyed by utterance id")
        cur.pos += 1
        if cur.peek() == "}":
            cur.pos += 1
        else:
            while True:
                key, _, _ = cur.value()
                if not isinstance(key, str):
                    cur.fail("expected a string key", cur.pos)
                cur.expect(":", "':'")
                _, start, end = cur.value()
                spans[sys.intern(key.encode("latin-1").decode("utf-8", errors="replace"))] = start << _LENGTH_BITS | (end - start)
                if cur.expect(",}", "',' or '}'") == "}":
                    break
        if cur.peek():
            cur.fail("extra data after the object", cur.pos)
    return spans


def load_score(f, span: int):
    """One utterance's scores.json entry (`span` from index_scores), parsed from the open file."""
    f.seek(span >> _LENGTH_BITS)
    return json.loads(f.read(span & ((1 << _LENGTH_BITS) - 1)))
