"""Package layout that pyproject.toml alone cannot say.

The trading demo's source lives in the repository's ``actors/`` folder but is
installed under the import name ``actorbus_trading``, so the wheel never claims
a top-level name as common as ``actors``. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["actorbus", "actorbus.*"]), "actorbus_trading"],
    package_dir={"actorbus_trading": "actors"},
)
