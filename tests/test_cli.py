import subprocess
import sys

from ovi_pl.cli import main


def test_module_entry_point_lists_its_commands():
    result = subprocess.run([sys.executable, "-m", "ovi_pl", "--help"], capture_output=True, text=True, check=True)
    assert "models" in result.stdout and "demo" in result.stdout


def test_models_command_reports_the_released_size(capsys):
    assert main(["models"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("ovi-11b"))
    assert "11.66 B" in line and "5.71 B" in line
