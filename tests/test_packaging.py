"""The product stands alone (issue 22): the dock installs as a package with
its own command, `bodycam` loads only the subcommand it runs, and what a
role does not need (PyAV, c2pa, the dock's stack) is never imported for it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from .conftest import Unit

ROOT = Path(__file__).resolve().parent.parent

# Run Python code with some modules made unimportable (as if not installed).
BLOCKED = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # `import name` now raises ImportError
"""


def _python(code: str, *, blocked: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED.format(blocked=blocked) + code],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bodycam_verify_works_without_pyav(recorded_unit: Unit) -> None:
    r = _python(
        f"from firmware.cli import main\nsys.exit(main(['verify', {str(recorded_unit.path)!r}]))",
        blocked=("av", "numpy", "PIL"),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def test_listing_the_subcommands_imports_none_of_them() -> None:
    r = _python(
        "from firmware.cli import SUBCOMMANDS, build_parser\n"
        "build_parser([]).format_help()\n"
        "print(sorted(m for m, _ in SUBCOMMANDS.values() if m in sys.modules))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('av', 'numpy', 'dock')))"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["[]", "[]"], r.stdout


def test_the_units_own_run_path_loads_no_simulator() -> None:
    """`bodycam run` and `selftest` on a unit's real devices: the simulated
    camera, microphone and scenario player are not even imported, nor the
    dock's stack (issue 28: the unit imports nothing it does not use)."""
    r = _python(
        "import firmware.cmd_run, firmware.cmd_selftest, firmware.recording, firmware.devices\n"
        "import firmware.runtime, firmware.prompts, firmware.unitconfig, boot.selftest\n"
        "from firmware.cli import build_parser\n"
        "build_parser(['run']).parse_args(['run', '--unit', '/nonexistent'])\n"
        "sims = ('hal.camera_sim', 'hal.microphone_sim', 'firmware.scenario')\n"
        "print(sorted(m for m in sys.modules if m in sims))\n"
        "dock = ('dock', 'flask', 'sqlalchemy', 'matplotlib', 'weasyprint', 'waitress', 'c2pa')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in dock))"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["[]", "[]"], r.stdout


def test_the_page_and_the_report_import_without_the_court_copy_stack() -> None:
    r = _python(
        "import dock.compliance.model, dock.report, dock.cli\n"
        "from dock.cli import main\n"
        "sys.exit(main(['report', '--dock-dir', '/nonexistent-dock']))",
        blocked=("av", "c2pa"),
    )
    assert "Traceback" not in r.stderr, r.stderr
    assert "No module named" not in r.stderr


def test_the_demo_without_the_dock_extra_says_which_to_install(tmp_path: Path) -> None:
    r = _python(
        f"from firmware.cli import main\nsys.exit(main(['demo', '--out', {str(tmp_path)!r}]))",
        blocked=("sqlalchemy",),
    )
    assert r.returncode != 0
    assert "pip install '.[dock]'" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
def test_pip_install_dock_extra_into_a_fresh_venv_gives_a_working_bodycam_dock(
    tmp_path: Path,
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    # from a copy of the tree: pip's build leaves build/ and egg-info behind
    src = tmp_path / "src"
    skip = (".git", ".venv", "build", "*.egg-info", "__pycache__", ".*cache", ".artifacts")
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*skip))
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q"]
    r = subprocess.run(
        [*pip, f"{src}[dock]"], capture_output=True, text=True, timeout=1200, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr[-2000:]
    dock = env_dir / "bin" / "bodycam-dock"
    r = subprocess.run([dock, "report", "--dock-dir", str(tmp_path / "d")], capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    # Chinese by default: the build compiled the catalog and the install holds it
    assert r.returncode == 2 and r.stderr == f"dock: {tmp_path / 'd'} 不是采集工作站文件夹\n"
    r = subprocess.run([dock, "report", "--dock-dir", str(tmp_path / "d"), "--language", "en"],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 2 and r.stderr == f"dock: {tmp_path / 'd'} is not a dock folder\n"
    (tmp_path / "d").mkdir()
    r = subprocess.run([dock, "report", "--dock-dir", str(tmp_path / "d"), "--language", "en"],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0 and "no units pulled yet" in r.stdout, r.stdout + r.stderr
    # the templates are package data: the page and the court report render from the install
    r = subprocess.run(
        [env_dir / "bin" / "python", "-c",
         "import dock.compliance, dock.courtcopy.report as rep, pathlib\n"
         "root = pathlib.Path(dock.compliance.__file__).parent\n"
         "assert list(root.rglob('*.html.j2')), root\n"
         "assert (rep.TEMPLATES / 'court_report.html.j2').is_file()\n"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
