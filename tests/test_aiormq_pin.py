"""The aiormq internals are used with the tested minor only, and say so loudly otherwise."""

from __future__ import annotations

import pytest

from actorbus.brokers.rabbitmq._aiormq import AIORMQ_VERSION, TESTED_MINOR, check_version


def test_the_installed_aiormq_is_the_tested_minor() -> None:
    check_version(AIORMQ_VERSION)
    assert tuple(int(p) for p in AIORMQ_VERSION.split(".")[:2]) == TESTED_MINOR


@pytest.mark.parametrize("other", ["7.3.0", "6.8.1", "8.0.0", "7.1.9", "not-a-version"])
def test_another_aiormq_is_refused_with_both_versions_named(other: str) -> None:
    with pytest.raises(ImportError) as refused:
        check_version(other)
    message = str(refused.value)
    assert other in message
    assert "7.2" in message
