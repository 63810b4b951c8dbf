"""The login throttle itself, on its own clock: the limits docs/en/operations.md ("Login brute force")
states — 5 failures for one username within an hour, or 20 from one address within 15 minutes, lock for
30 s, doubling with each further failure up to 15 minutes; a success clears the username's count; at most
100,000 usernames and as many addresses, the quiet ones forgotten first, then the oldest.

tests/test_security_auth.py holds the same limits through the login form; these run in a millisecond each,
so mutation testing (tests/mutation.py) can afford them for every mutant of throttle.py.
"""

from __future__ import annotations

import pytest

from collector.accounts.throttle import LoginLocked, LoginThrottle, login_throttle

HOUR, QUARTER = 3600.0, 900.0
ADDRESS = "192.0.2.7"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocked():
    clock = Clock()
    return LoginThrottle(clock=clock), clock


def test_the_fifth_failure_for_a_username_locks_it_for_30_seconds(clocked):
    throttle, clock = clocked
    for n in range(1, 5):
        assert throttle.failed("xxk", None) == (n, 0.0)
        assert throttle.retry_after("xxk", None) == 0.0
    assert throttle.failed("xxk", None) == (5, 30.0)
    assert throttle.retry_after("xxk", None) == 30.0
    assert throttle.retry_after("other", None) == 0.0  # another username is not locked
    clock.now += 29.5
    assert throttle.retry_after("xxk", None) == 0.5
    clock.now += 0.5
    assert throttle.retry_after("xxk", None) == 0.0


def test_each_further_failure_doubles_the_lock_up_to_15_minutes(clocked):
    throttle, clock = clocked
    for _ in range(4):
        throttle.failed("xxk", ADDRESS)
    locks = [throttle.failed("xxk", None)[1] for _ in range(8)]
    assert locks == [30.0, 60.0, 120.0, 240.0, 480.0, 900.0, 900.0, 900.0]
    assert throttle.retry_after("xxk", None) == 900.0
    for _ in range(40):  # however long an attacker keeps on, the cap holds
        count, lock = throttle.failed("xxk", None)
    assert (count, lock) == (52, 900.0)


def test_failures_within_the_hour_add_up_and_a_quiet_hour_forgets_them(clocked):
    throttle, clock = clocked
    for _ in range(4):
        throttle.failed("xxk", None)
        clock.now += HOUR  # each failure an hour after the one before: still within the hour
    assert throttle.failed("xxk", None) == (5, 30.0)
    clock.now += HOUR + 1
    assert throttle.retry_after("xxk", None) == 0.0
    assert throttle.failed("xxk", None) == (1, 0.0)  # a new count


def test_twenty_failures_from_one_address_lock_every_username_from_it(clocked):
    throttle, clock = clocked
    for n in range(1, 20):
        assert throttle.failed(f"name-{n}", ADDRESS) == (1, 0.0)
        clock.now += QUARTER / 20
    assert throttle.failed("name-20", ADDRESS) == (1, 30.0)
    assert throttle.retry_after("xxk", ADDRESS) == 30.0  # the real user from that address waits too
    assert throttle.retry_after("xxk", "198.51.100.1") == 0.0  # from elsewhere it does not
    assert throttle.retry_after("xxk", None) == 0.0
    clock.now += 30
    assert throttle.retry_after("xxk", ADDRESS) == 0.0


def test_an_address_is_forgotten_after_a_quiet_quarter_hour(clocked):
    throttle, clock = clocked
    for n in range(19):
        throttle.failed(f"name-{n}", ADDRESS)
    clock.now += QUARTER  # a quarter hour after the last: still within
    assert throttle.failed("name-19", ADDRESS) == (1, 30.0)
    clock.now += QUARTER + 1
    assert throttle.failed("name-20", ADDRESS) == (1, 0.0)


def test_no_address_counts_the_username_only(clocked):
    throttle, _ = clocked
    for n in range(30):
        throttle.failed(f"name-{n}", None)
    assert throttle.retry_after("anyone", None) == 0.0
    assert throttle.retry_after("anyone", "") == 0.0


def test_a_success_clears_the_username_but_not_the_address(clocked):
    throttle, _ = clocked
    for _ in range(4):
        throttle.failed("xxk", ADDRESS)
    for n in range(15):
        throttle.failed(f"name-{n}", ADDRESS)
    throttle.succeeded("xxk")
    assert throttle.failed("xxk", ADDRESS) == (1, 30.0)  # the username's count starts again, the address's is at 20


def test_the_counters_hold_100000_entries_forgetting_the_quiet_then_the_oldest(clocked):
    throttle, clock = clocked
    throttle.failed("first", None)
    clock.now += HOUR + 1  # "first" is now quiet for longer than its window
    for n in range(99_999):
        throttle.failed(f"u{n}", None)
    assert len(throttle._users) == 100_000
    throttle.failed("newcomer", None)  # full: the quiet one goes
    assert "first" not in throttle._users and "u0" in throttle._users
    assert len(throttle._users) == 100_000
    throttle.failed("another", None)  # full of live entries: the oldest goes
    assert "u0" not in throttle._users and "u1" in throttle._users and "another" in throttle._users
    assert len(throttle._users) == 100_000


def test_a_locked_exception_says_how_long(clocked):
    assert LoginLocked(30.4).retry_after_s == 30.4
    assert str(LoginLocked(30.4)) == "locked for 30 s"


def test_one_throttle_per_store():
    class Store:
        pass

    store = Store()
    assert login_throttle(store) is login_throttle(store)
    assert login_throttle(Store()) is not login_throttle(store)


def test_a_success_without_earlier_failures_is_nothing_to_clear(clocked):
    throttle, _ = clocked
    throttle.succeeded("never-failed")  # the usual login: no count to clear, no error
    assert throttle.retry_after("never-failed", ADDRESS) == 0.0


def test_an_entry_exactly_its_window_old_is_not_yet_quiet_when_the_counters_are_full(clocked):
    throttle, clock = clocked
    throttle.failed("a", None)
    throttle.failed("b", None)
    clock.now += HOUR  # "a" and "b" are exactly an hour old: still within the hour
    for n in range(99_998):
        throttle.failed(f"u{n}", None)
    throttle.failed("newcomer", None)  # full of live entries: only the oldest one goes
    assert len({"a", "b"} & set(throttle._users)) == 1 and len(throttle._users) == 100_000
