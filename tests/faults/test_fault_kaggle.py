"""Issue 14: loading the Kaggle client (it authenticates as it is imported) creates no ~/.config/kaggle."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.faults


def test_loading_the_kaggle_client_leaves_home_untouched(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE_", "XDG_"))}
    env.update(HOME=str(home), KAGGLE_USERNAME="someone", KAGGLE_KEY="not-a-real-key")
    code = "from cxrtl.ingest import _kaggle_api\nwith _kaggle_api() as api: print(type(api).__name__)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "KaggleApi"
    assert not list(home.rglob("*")), f"created {sorted(map(str, home.rglob('*')))}"
    assert "not-a-real-key" not in done.stdout + done.stderr
