"""Which Java TorchServe gets (serve.server.find_java) and the gate of the real-TorchServe
tests (tests/conftest.py require_java): fake `java` scripts, so these run on any machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from serve.server import ServerError, check_java, find_java, instance_env
from tests.conftest import require_java

OUTCOMES = (pytest.fail.Exception, pytest.skip.Exception)


def fake_java(home: Path, version: str) -> Path:
    """<home>/bin/java printing `version` the way `java -version` does (on stderr)."""
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f'#!/bin/sh\necho \'openjdk version "{version}" 2024-01-01\' >&2\n')
    java.chmod(0o755)
    return java


@pytest.fixture
def javas(tmp_path, monkeypatch):
    """Homes with Java 17, 11 and 1.8; PATH holds only the folder the test puts there."""
    homes = {v: tmp_path / f"jdk-{v}" for v in ("17.0.15", "11.0.2", "1.8.0_392")}
    for version, home in homes.items():
        fake_java(home, version)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    return homes


def on_path(monkeypatch, home: Path) -> None:
    monkeypatch.setenv("PATH", str(home / "bin"))


def test_a_working_java_home_is_preferred(javas, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(javas["17.0.15"]))
    on_path(monkeypatch, javas["11.0.2"])
    java = find_java()
    assert java.home == str(javas["17.0.15"].resolve()) and "17.0.15" in java.version


@pytest.mark.parametrize("stale", ["missing", "11.0.2", "1.8.0_392"])
def test_a_stale_java_home_does_not_hide_java_17_on_path(javas, monkeypatch, tmp_path, stale):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "gone" if stale == "missing" else javas[stale]))
    on_path(monkeypatch, javas["17.0.15"])
    assert find_java().home == str(javas["17.0.15"].resolve())
    # and TorchServe's launcher (which runs $JAVA_HOME/bin/java) is handed that one
    assert instance_env(tmp_path / "run")["JAVA_HOME"] == str(javas["17.0.15"].resolve())


def test_no_java_17_anywhere_is_a_clear_error_naming_what_was_tried(javas, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(javas["1.8.0_392"]))
    on_path(monkeypatch, javas["11.0.2"])
    with pytest.raises(ServerError) as info:
        check_java()
    message = str(info.value)
    assert f"JAVA_HOME={javas['1.8.0_392']}: openjdk version \"1.8.0_392\"" in message
    assert 'java on PATH: openjdk version "11.0.2"' in message and "Java 17 or newer is required" in message
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setenv("PATH", os.devnull)
    with pytest.raises(ServerError, match="java on PATH: not found"):
        check_java()


@pytest.mark.parametrize("ci", ["true", "1"])
def test_without_java_the_torchserve_tests_fail_in_ci(javas, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(OUTCOMES) as info:  # both caught: a skip here must turn this test red
        require_java("TorchServe tests")
    assert info.type is pytest.fail.Exception, info.value
    assert "need Java 17: " in str(info.value) and "CI is set: these tests must run" in str(info.value)


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_without_java_the_torchserve_tests_skip_locally_saying_why(javas, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(OUTCOMES) as info:
        require_java("TorchServe tests")
    assert info.type is pytest.skip.Exception, info.value
    assert "TorchServe tests need Java 17: Java 17 or newer is required" in str(info.value)
    on_path(monkeypatch, javas["17.0.15"])
    assert "17.0.15" in require_java("TorchServe tests")
