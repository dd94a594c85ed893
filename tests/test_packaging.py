"""The wheel ships actorbus and the demo under actorbus's own names, and nothing else."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_only_actorbus_names_and_every_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("actorbus-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
    }
    assert top_level == {"actorbus", "actorbus_trading"}  # never a bare "actors"
    shipped = {str(Path(name).parent) for name in names if name.endswith("__init__.py")}
    expected = {
        str(init.parent.relative_to(ROOT)) for init in (ROOT / "actorbus").rglob("__init__.py")
    } | {
        str(Path("actorbus_trading") / init.parent.relative_to(ROOT / "actors")).rstrip("/.")
        for init in (ROOT / "actors").rglob("__init__.py")
    }
    assert shipped == expected
    assert "actorbus_trading/system.py" in names


def test_nothing_imports_the_demo_by_its_folder_name() -> None:
    """``actors`` is only the folder: from a checkout it imports, from a wheel it does not."""
    pattern = re.compile(r"^\s*(from|import) actors\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("actorbus", "actors", "tests", "examples", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
