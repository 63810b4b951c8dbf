"""An unknown username costs a real argon2 verification, as a known one does (collector/accounts/login.py:
"Hash something even for an unknown user, so timing does not reveal which usernames exist"), also for the
first attempt of a process, before any stand-in hash exists. No timing is measured here (speed belongs in
benchmarks/): the test holds that the stand-in is a real argon2id hash that the attempt verified against.
"""

from __future__ import annotations

from collector.accounts import login as login_step
from collector.accounts.users import hasher


def test_the_first_unknown_username_of_a_process_is_checked_against_a_real_hash(store):
    login_step._DUMMY.clear()  # as in a freshly started collector
    assert login_step.login(store, "nobody", "some-password", "192.0.2.1") is None
    (dummy,) = login_step._DUMMY
    assert dummy.startswith("$argon2id$") and not hasher().check_needs_rehash(dummy)
    assert login_step.login(store, "nobody-else", "x", "192.0.2.1") is None
    assert dummy in login_step._DUMMY and len(login_step._DUMMY) == 1  # made once, reused
