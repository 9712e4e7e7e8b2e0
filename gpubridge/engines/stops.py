"""Stop sequences applied to streamed text, so no emitted piece ever contains a stop string."""

from __future__ import annotations


class StopScanner:
    """Feed streamed pieces; get back the text that is safe to emit.

    Text that could be the start of a stop string is held back until it is known not to be.
    Once a stop string is seen, everything from it on is dropped and ``stopped`` is set.
    """

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The part of ``pending + piece`` that can be emitted now."""
        if self.stopped:
            return ""
        if not self._stops:
            return piece
        text = self._pending + piece
        cut = min((i for i in (text.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._pending = ""
            return text[:cut]
        keep = self._held_back(text)
        self._pending = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        """What was held back, at the end of the stream (no stop string completed)."""
        rest, self._pending = self._pending, ""
        return "" if self.stopped else rest

    def _held_back(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest
