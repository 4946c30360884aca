"""``analyze``, ``split`` and ``balance`` (offline augmentation included) never import
torch.

The check does not depend on torch being installed: an import hook records
every attempt to import torch or torchvision, even one that is caught.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GUARD = r"""
import sys
attempts = []
class Guard:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            attempts.append(name)
            raise ImportError("blocked by test: " + name)
        return None
sys.meta_path.insert(0, Guard())
from imgbalance.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    heavy = [m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")]
    print("TORCH_ATTEMPTS=%r MODULES=%r" % (attempts, heavy), file=sys.stderr)
"""


@pytest.mark.parametrize("command", ["analyze", "split", "balance", "balance-augment"])
def test_command_does_not_import_torch(command: str, balanced_tree: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    if command.startswith("balance"):
        method = "augment" if command == "balance-augment" else "stem"
        args = ["balance", str(balanced_tree), out, "--method", method, "--workers", "2"]
    else:
        args = [command, str(balanced_tree), "--out", out]
    r = subprocess.run(
        [sys.executable, "-c", GUARD, *args], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert "TORCH_ATTEMPTS=[] MODULES=[]" in r.stderr
    assert any((tmp_path / "out").iterdir())
