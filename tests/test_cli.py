"""The deepinv-pnn command line."""

import subprocess
import sys

import pytest

from deepinv_pnn.cli import main


def test_list_prints_the_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "tv-denoiser" in out and "tv-prior" in out


def test_demo_prints_a_table_and_writes_a_png(tmp_path, capsys):
    png = tmp_path / "demo.png"
    code = main(["demo", "--size", "48", "--methods", "tv-denoiser", "tv-prior", "--output", str(png)])
    out = capsys.readouterr().out
    assert code == 0
    assert "PSNR" in out and "tv-prior" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    psnr = {line.split()[0]: float(line.split()[2]) for line in out.splitlines()
            if line.startswith(("observation", "tv-prior"))}
    assert psnr["tv-prior"] > psnr["observation"]


def test_reconstruct_writes_the_image(tmp_path, capsys):
    out_png = tmp_path / "out.png"
    code = main(["reconstruct", "--input", "camera", "--size", "40", "--physics", "inpaint",
                 "--method", "tv-prior", "--output", str(out_png)])
    assert code == 0 and out_png.exists()
    assert "dB" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["reconstruct", "--input", "nope", "--physics", "deblur", "--method", "tv-prior", "--output", "o.png"],
         "unknown image"),
        (["reconstruct", "--input", "camera", "--physics", "deblur", "--method", "nope", "--output", "o.png"],
         "unknown component"),
        (["reconstruct", "--input", "camera", "--physics", "denoise", "--method", "tv-prior", "--output", "o.png"],
         "does not solve"),
        (["demo", "--methods", "nope"], "unknown or do not apply"),
        (["train", "nope"], "unknown recipe"),
    ],
)
def test_errors_are_helpful(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "deepinv_pnn.cli", "list", "--kind", "prior"],
                            capture_output=True, text=True, check=True)
    assert "tv-prior" in result.stdout and "tv-denoiser" not in result.stdout
