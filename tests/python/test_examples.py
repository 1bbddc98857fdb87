"""examples/python/: the scripts run (briefly) and do what their docstrings say."""
import os
import subprocess
import sys

from conftest import EXAMPLES


def run_two_moons(tmp_path, env=None):
    out = tmp_path / "moons.png"
    script = EXAMPLES / "python" / "two_moons.py"
    cmd = [sys.executable, str(script), "--steps", "30", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp_path, env=env)
    return done.stdout, out


def test_two_moons_with_matplotlib_or_without(tmp_path):
    stdout, out = run_two_moons(tmp_path)
    assert "test NLL:" in stdout
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in stdout and not out.exists()
    else:
        assert "density plot" in stdout and out.read_bytes().startswith(b"\x89PNG")


def test_two_moons_says_when_matplotlib_is_missing(tmp_path):
    blocked = tmp_path / "blocked" / "matplotlib"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('not installed here')\n")
    env = dict(os.environ, PYTHONPATH=f"{blocked.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    stdout, out = run_two_moons(tmp_path, env)
    assert "test NLL:" in stdout and "matplotlib is not installed" in stdout and not out.exists()
