"""corral.testing's own helpers: polls back off, CORRAL_TEST_SLACK scales deadlines."""

from __future__ import annotations

import pytest

from corral import testing


def test_polls_back_off_to_the_longest_pause() -> None:
    # wait_until, Gate.wait and sleep_until_cancelled pause as _pauses says
    pauses = testing._pauses(0.001)
    assert [next(pauses) for _ in range(8)] == pytest.approx(
        [0.001, 0.002, 0.004, 0.008, 0.016, 0.02, 0.02, 0.02]
    )
    assert testing.MAX_POLL_INTERVAL == 0.02


def test_a_first_pause_longer_than_the_longest_is_kept() -> None:
    pauses = testing._pauses(0.1)
    assert [next(pauses) for _ in range(3)] == [0.1, 0.1, 0.1]


def test_wait_until_returns_once_the_predicate_holds() -> None:
    calls = []
    testing.wait_until(lambda: calls.append(1) or len(calls) == 5, timeout=60)
    assert len(calls) == 5


def test_wait_until_timeout_is_scaled_by_the_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "SLACK", 3.0)
    assert testing.slack(2.0) == 6.0
    with pytest.raises(AssertionError, match=r"timed out after 0\.03s waiting for never"):
        testing.wait_until(lambda: False, timeout=0.01, message="never")


@pytest.mark.parametrize(("text", "value"), [("", 1.0), ("2", 2.0), (" 0.5 ", 0.5)])
def test_slack_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, text: str, value: float
) -> None:
    monkeypatch.setenv("CORRAL_TEST_SLACK", text)
    assert testing._read_slack() == value


@pytest.mark.parametrize("text", ["fast", "0", "-1", "nan"])
def test_a_bad_slack_is_refused(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("CORRAL_TEST_SLACK", text)
    with pytest.raises(ValueError, match="CORRAL_TEST_SLACK"):
        testing._read_slack()


def test_a_gate_opened_here_is_seen_at_once() -> None:
    with testing.Gate() as gate:
        gate.open()
        assert gate.wait(0)
    with testing.Gate() as gate:
        assert not gate.wait(0.01)
