import subprocess
import sys

from safetensors.torch import load_file

from ovi_pl.cli import main


def test_module_entry_point_lists_its_commands():
    result = subprocess.run([sys.executable, "-m", "ovi_pl", "--help"], capture_output=True, text=True, check=True)
    assert "models" in result.stdout and "demo" in result.stdout


def test_models_command_reports_the_released_size(capsys):
    assert main(["models"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("ovi-11b"))
    assert "11.66 B" in line and "5.71 B" in line


def test_demo_writes_an_ovi_format_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    keys = load_file(tmp_path / "runs/demo/ovi-tiny.safetensors")
    assert "audio_model.blocks.1.cross_attn.k_fusion.weight" in keys
    assert "identical outputs: True" in capsys.readouterr().out
