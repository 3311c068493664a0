import shlex

from deepinv_pnn.training.command_line import command_line
from deepinv_pnn.training.train_crr import parse_args
from deepinv_pnn.training.train_wcrr import parse_wcrr_args


def _reparsed(command, parser):
    words = shlex.split(command)
    assert words[:2] == ["python", "-m"]
    return vars(parser(words[3:]))


def test_recorded_wcrr_command_reads_back_the_same_options():
    argv = ["--data-dir", "my data", "--out", "w.safetensors", "--sigma-min", "0", "--reference-init", "--cuda-graph",
            "--tune-sigmas", "5", "15", "--lr", "5e-3", "--loss", "l1", "--schedule", "step"]
    args = parse_wcrr_args(argv)
    command = command_line("deepinv_pnn.training.train_wcrr", args)
    assert "--sigma-min 0.0" in command  # a zero is a value: the default is 2
    words = shlex.split(command)
    assert "--reference-init" in words and "--cuda-graph" in words and "True" not in words
    assert "--tune-sigmas 5.0 15.0" in command and "'my data'" in command
    assert "--init " not in command  # unset options are left out
    assert _reparsed(command, parse_wcrr_args) == vars(args)


def test_recorded_crr_command_reads_back_the_same_options():
    args = parse_args(["--data-dir", "d", "--out", "c.safetensors", "--resume", "--t-steps", "1", "--tv2", "0"])
    command = command_line("deepinv_pnn.training.train_crr", args)
    assert "--tv2 0.0" in command and "--resume" in command
    assert _reparsed(command, parse_args) == vars(args)
