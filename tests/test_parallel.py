"""Every core on long jobs, safely: worker processes only where the main script allows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import PROJECT_ROOT

SCRIPT = """
import sys
sys.path.insert(0, {src!r})
from catsdogs.data import parallel
parallel.PROCESS_THRESHOLD = 1
print("pool", type(parallel._pool(10)).__name__)
print("squares", parallel.ordered_map(abs, [-3, -2, -1, 0, 1], label="test"))
"""


def run_script(tmp_path: Path, guarded: bool) -> list[str]:
    body = SCRIPT.format(src=str(PROJECT_ROOT / "src"))
    if guarded:
        body = "def main():\n" + "".join(f"    {line}\n" for line in body.strip().splitlines()) + \
            '\n\nif __name__ == "__main__":\n    main()\n'
    script = tmp_path / f"script_{guarded}.py"
    script.write_text(body)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.splitlines()


def test_a_guarded_script_gets_worker_processes(tmp_path: Path) -> None:
    assert run_script(tmp_path, guarded=True) == [
        "pool ProcessPoolExecutor", "squares [3, 2, 1, 0, 1]"]


def test_an_unguarded_script_gets_threads_and_runs_once(tmp_path: Path) -> None:
    # A spawned worker would import the script and run its work a second time.
    assert run_script(tmp_path, guarded=False) == [
        "pool ThreadPoolExecutor", "squares [3, 2, 1, 0, 1]"]
