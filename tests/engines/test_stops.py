from __future__ import annotations

from gpubridge.engines.stops import StopScanner


def feed_all(scanner: StopScanner, pieces: list[str]) -> str:
    return "".join(scanner.feed(p) for p in pieces) + scanner.flush()


def test_text_without_stops_passes_through_unchanged() -> None:
    scanner = StopScanner([])
    assert [scanner.feed("a"), scanner.feed("b")] == ["a", "b"]
    assert scanner.flush() == ""


def test_text_is_cut_before_a_stop_split_across_pieces() -> None:
    scanner = StopScanner(["END"])
    assert feed_all(scanner, ["hello E", "N", "D and more"]) == "hello "
    assert scanner.stopped


def test_a_possible_stop_prefix_is_held_back_until_it_is_ruled_out() -> None:
    scanner = StopScanner(["END"])
    assert scanner.feed("abc E") == "abc "
    assert scanner.feed("x") == "Ex"
    assert not scanner.stopped


def test_held_back_text_is_flushed_at_the_end() -> None:
    scanner = StopScanner(["END"])
    assert feed_all(scanner, ["abc EN"]) == "abc EN"


def test_the_earliest_of_several_stops_wins() -> None:
    scanner = StopScanner(["zz", "b"])
    assert feed_all(scanner, ["a", "bzz"]) == "a"


def test_nothing_is_emitted_after_a_stop() -> None:
    scanner = StopScanner(["."])
    assert scanner.feed("one. two") == "one"
    assert scanner.feed("three") == ""
    assert scanner.flush() == ""
