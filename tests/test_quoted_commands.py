"""Every `bench run` command quoted in README.md and in our model docstrings works: each is
run with --dry-run (checked, datasets converted, planned; nothing trains)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from conftest import shared

REPO = Path(__file__).resolve().parents[1]


def quoted_commands() -> list[str]:
    found = []
    readme = (REPO / "README.md").read_text()
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
        found += [line for line in block.splitlines() if "bench run" in line]
    for path in sorted((REPO / "custom_models").glob("*.py")):
        found += [line.split("(defaults")[0] for line in path.read_text().splitlines()
                  if line.strip().startswith("bench run")]
    commands = []
    for line in found:
        command = line.split("&&")[-1].strip()
        commands.append(command[command.index("bench run"):].strip())
    return sorted(set(commands))


def test_the_quoted_commands_are_found():
    commands = quoted_commands()
    assert "bench run" in commands
    assert any("--models gru4rec --datasets diginetica" in c for c in commands)


@pytest.mark.parametrize("command", quoted_commands())
def test_quoted_command_passes_a_dry_run(command, tmp_path, monkeypatch):
    from bench.cli import main

    shared("diginetica")  # the shipped suites convert from ../shared/data
    monkeypatch.chdir(REPO)
    argv = shlex.split(command)[1:] + ["--dry-run", "--results", str(tmp_path / "results"),
                                       "--reports", str(tmp_path / "reports"), "--data-root", str(tmp_path / "data")]
    assert main(argv) == 0, command
