"""One OpenMP thread for a CLI text recall: set before torch loads, never over the user's choice,
and restored afterwards."""

from __future__ import annotations

import os
import sys

from aimemory.cli.threads import VARIABLE, one_thread


def test_one_thread_while_torch_is_not_loaded(monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    with one_thread():
        assert os.environ[VARIABLE] == "1"
    assert VARIABLE not in os.environ


def test_the_user_s_setting_and_a_loaded_torch_are_left_alone(monkeypatch):
    monkeypatch.setenv(VARIABLE, "3")
    with one_thread():
        assert os.environ[VARIABLE] == "3"
    monkeypatch.delenv(VARIABLE)
    monkeypatch.setitem(sys.modules, "torch", object())
    with one_thread():
        assert VARIABLE not in os.environ
