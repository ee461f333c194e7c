"""`bert-jax` meets bad flags and bad configs with one line on stderr and exit status 2.

Each case runs the real command line in a fresh process (absl flags are
process-global and ml_collections reads --config.KEY overrides from sys.argv).
`bert-jax COMMAND --help` lists the command's own flags and exits 0.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

from bert_jax import cli
from bert_jax.errors import UserError

REPO = pathlib.Path(__file__).resolve().parents[1]
# Lines C++ libraries (XLA, TensorFlow) log at import, before Python runs any of ours.
_NATIVE_LOG = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]|WARNING: All log messages before absl)")


def _bert_jax(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    """`bert-jax ARGS` in a fresh process from the repo root (prelude: Python run first)."""
    code = f"{prelude}\nimport sys\nsys.argv = {['bert-jax', *args]!r}\nfrom bert_jax import cli\ncli.run()"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def _stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """What we wrote on stderr: native libraries' import-time log lines left out."""
    return [line for line in proc.stderr.splitlines() if line.strip() and not _NATIVE_LOG.match(line)]


def _error(proc: subprocess.CompletedProcess, command: str) -> str:
    """The one error line, after checking it is the only stderr line and the exit status is 2."""
    lines = _stderr_lines(proc)
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    prefix = f"bert-jax {command}: error: "
    assert lines[0].startswith(prefix), proc.stderr
    return lines[0][len(prefix):]


# ------------------------------------------------------------ config files

# Every command whose --config is a file (DEFINE_config_file), with a config it accepts.
FILE_CONFIG_COMMANDS = {
    "pretrain": "configs/bert_tiny.py",
    "bench": "configs/bert_tiny.py",
    "compile": "configs/bert_tiny.py",
    "inspect-data": "configs/bert_tiny.py",
    "finetune": "configs/finetune/glue.py",
    "distill": "configs/distill/glue.py",
}


@pytest.mark.parametrize("command", ["pretrain", "finetune"])  # unknown keys cover every command
def test_missing_config_file(command, tmp_path):
    missing = tmp_path / "nope.py"
    proc = _bert_jax(command, f"--config={missing}")
    assert _error(proc, command) == (
        f"--config={missing}: config file {missing} does not exist; check the path "
        f"(relative paths are from {REPO})"
    )


def test_missing_config_file_with_overrides_is_the_same_line(tmp_path):
    """Overrides make config_flags touch the config while parsing: still the missing file."""
    missing = tmp_path / "nope.py"
    proc = _bert_jax("pretrain", f"--config={missing}", "--config.batch_size=8")
    assert _error(proc, "pretrain").startswith(f"--config={missing}: config file {missing} does not exist")


def test_config_path_that_is_a_directory_lists_the_files_in_it(tmp_path):
    (tmp_path / "a.py").write_text("def get_config():\n    return None\n")
    (tmp_path / "b.py").write_text("def get_config():\n    return None\n")
    proc = _bert_jax("pretrain", f"--config={tmp_path}", "--workdir=unused")
    assert _error(proc, "pretrain") == (
        f"--config={tmp_path}: {tmp_path} is a directory; pass one config file in it "
        f"({tmp_path}/a.py, {tmp_path}/b.py)"
    )


def test_empty_config_path():
    proc = _bert_jax("pretrain", "--config=")
    assert _error(proc, "pretrain") == "--config is empty; pass a config file, e.g. --config=configs/demo.py"


def test_config_file_with_a_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config():\n    return dict(a=1\n\n")
    proc = _bert_jax("pretrain", f"--config={bad}", "--workdir=unused")
    message = _error(proc, "pretrain")
    assert re.fullmatch(rf"{re.escape(str(bad))}:2: syntax error in the config file: .+; fix the file", message)


def test_config_whose_get_config_raises_value_error_names_the_line(tmp_path):
    bad = tmp_path / "raises.py"
    bad.write_text("def get_config():\n    raise ValueError('batch too big')\n")
    proc = _bert_jax("pretrain", f"--config={bad}", "--workdir=unused")
    assert _error(proc, "pretrain") == (
        f"--config: the config file's get_config() failed at {bad}:2: ValueError: batch too big; "
        "fix the config file"
    )


def test_config_whose_get_config_raises_another_error_names_the_line(tmp_path):
    bad = tmp_path / "raises.py"
    bad.write_text("def get_config():\n    return undefined_name\n")
    proc = _bert_jax("pretrain", f"--config={bad}", "--workdir=unused")
    assert _error(proc, "pretrain") == (
        f"the config file raised NameError at {bad}:2: name 'undefined_name' is not defined; "
        "fix the config file"
    )


# ---------------------------------------------------------- --config.KEY


@pytest.mark.parametrize("command", sorted(FILE_CONFIG_COMMANDS))
def test_unknown_config_key_is_named_with_did_you_mean(command):
    config = FILE_CONFIG_COMMANDS[command]
    proc = _bert_jax(command, f"--config={config}", "--config.batch_sise=20")
    assert _error(proc, command) == (
        f"--config.batch_sise: the config from {config} has no key 'batch_sise'; "
        "did you mean --config.batch_size?"
    )


def test_unknown_total_steps_key_of_the_issue():
    proc = _bert_jax("pretrain", "--config=configs/bert_tiny.py", "--config.total_stepz=20")
    assert _error(proc, "pretrain") == (
        "--config.total_stepz: the config from configs/bert_tiny.py has no key 'total_stepz'; "
        "did you mean --config.total_steps?"
    )


@pytest.mark.parametrize(
    ("key", "use"),
    [("learning_rate", "learning_rate"), ("warmup_steps", "warmup (a fraction of the steps)")],
)
def test_fine_tuning_has_one_learning_rate_and_one_warmup(key, use):
    """The pre-training optimizer's pair used to be overwritten silently by the fine-tuning fields."""
    proc = _bert_jax("finetune", "--config=configs/finetune/glue.py", f"--config.optimizer.{key}=3")
    assert _error(proc, "finetune") == (
        f"--config.optimizer.{key}: the config from configs/finetune/glue.py (under optimizer) has no key "
        f"{key!r}; fine-tuning has one learning rate and one warmup: use --config.{use}"
    )


def test_unknown_section_of_a_nested_key():
    proc = _bert_jax("pretrain", "--config=configs/bert_tiny.py", "--config.modl.hidden_size=64")
    assert _error(proc, "pretrain") == (
        "--config.modl.hidden_size: the config from configs/bert_tiny.py has no key 'modl'; "
        "did you mean --config.model?"
    )


def test_unknown_nested_key_without_a_close_match():
    proc = _bert_jax("pretrain", "--config=configs/bert_tiny.py", "--config.model.zzz=64")
    assert _error(proc, "pretrain") == (
        "--config.model.zzz: the config from configs/bert_tiny.py (under model) has no key 'zzz'; "
        "override a key the config defines (the config file lists them)"
    )


def test_unknown_key_of_evaluate_whose_config_is_built_in():
    """evaluate's --config is a DEFINE_config_dict: overrides are applied at import."""
    proc = _bert_jax("evaluate", "--workdir=unused", "--config.total_stepz=3")
    assert _error(proc, "evaluate") == (
        "--config.total_stepz: --config has no key 'total_stepz'; did you mean --config.total_steps?"
    )


def test_evaluate_given_a_config_file():
    proc = _bert_jax("evaluate", "--config=configs/bert_tiny.py")
    assert _error(proc, "evaluate") == (
        "--config takes no file here; change single keys with --config.KEY=VALUE (bert-jax evaluate --help)"
    )


def test_override_value_of_the_wrong_type_names_the_type():
    proc = _bert_jax("pretrain", "--config=configs/bert_tiny.py", "--config.batch_size=abc")
    assert _error(proc, "pretrain") == (
        "flag --config.batch_size=abc: invalid literal for int() with base 10: 'abc'; "
        "the config's batch_size is int 256: give a value of that type"
    )


def test_override_before_the_config_file():
    proc = _bert_jax("pretrain", "--config.batch_size=8", "--config=configs/bert_tiny.py")
    assert _error(proc, "pretrain") == "--config.batch_size comes before --config=FILE; put --config=FILE first"


# ------------------------------------------------------------ other flags


def test_unknown_flag():
    proc = _bert_jax("tokenize", "--nosuchflag")
    assert _error(proc, "tokenize") == "unknown flag --nosuchflag; bert-jax tokenize --help lists its flags"


def test_misspelt_flag_gets_a_suggestion():
    proc = _bert_jax("tokenize", "--vocab_fil=x")
    assert _error(proc, "tokenize") == "unknown flag --vocab_fil; did you mean --vocab?"


def test_flag_value_of_the_wrong_type():
    proc = _bert_jax("tokenize", "--batch_size=many")
    assert _error(proc, "tokenize") == (
        "flag --batch_size=many: invalid literal for int() with base 10: 'many'; "
        "bert-jax tokenize --help lists its flags"
    )


def test_missing_required_flags_are_listed():
    proc = _bert_jax("build-vocab", "--input=x")
    assert _error(proc, "build-vocab") == (
        "missing required flags --output, --vocab_size; bert-jax build-vocab --help lists its flags"
    )


# ------------------------------------------------------------------ --help


def _defined_flags(command: str) -> list[str]:
    """The flag names a command module defines (flags.DEFINE_* / config_flags.DEFINE_*)."""
    source = (REPO / "bert_jax" / "commands" / f"{cli.COMMANDS[command][0]}.py").read_text()
    names = re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", source)
    if "common.define_model_to_folder_flags()" in source:  # shared by prune, quantize and export
        names += ["workdir", "output", "overwrite"]
    assert names, command
    return names


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_command_help_lists_its_flags_and_exits_0(command):
    proc = _bert_jax(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert _stderr_lines(proc) == []
    assert f"flags of bert-jax {command}:\n" in proc.stdout
    listed = set(re.findall(r"^  --(?:\[no\])?(\w+)", proc.stdout, flags=re.M))
    assert listed == set(_defined_flags(command))
    assert "Try --helpfull" not in proc.stdout


def test_help_command_shows_a_commands_flags():
    proc = _bert_jax("help", "compile")
    assert proc.returncode == 0, proc.stderr
    assert "flags of bert-jax compile:\n  --config=FILE\n" in proc.stdout


def test_helpfull_adds_absls_flags_and_exits_0():
    proc = _bert_jax("compile", "--helpfull")
    assert proc.returncode == 0, proc.stderr
    assert "flags of bert-jax compile:\n" in proc.stdout and "--verbosity" in proc.stdout


def test_help_shows_each_flags_help_text_and_default():
    proc = _bert_jax("tokenize", "-h")
    assert proc.returncode == 0, proc.stderr
    assert "  --batch_size=INT\n      Lines tokenized per batch. (default: 1024)\n" in proc.stdout


def test_help_wins_over_missing_required_flags():
    proc = _bert_jax("build-vocab", "--input=x", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "  --vocab_size=INT\n      Tokens in the vocabulary. (required)\n" in proc.stdout


def test_quantize_help_without_qwix():
    """quantize needs the compress extra (Qwix) to run, not to show its flags."""
    proc = _bert_jax("quantize", "--help", prelude="import sys; sys.modules['qwix'] = None")
    assert proc.returncode == 0, proc.stderr
    assert "  --config=FILE\n" in proc.stdout and "--config.scheme=int8|int8_weights" in proc.stdout


def test_command_whose_import_needs_a_missing_extra_names_it(monkeypatch, capsys):
    def no_beam(name):
        raise ModuleNotFoundError("No module named 'apache_beam'", name="apache_beam")

    monkeypatch.setattr(cli.importlib, "import_module", no_beam)
    with pytest.raises(UserError, match=r"^needs the Python package 'apache_beam', which is not installed; "
                                        r"pip install -e '\.\[beam\]'$"):
        cli._import_command("create-data")


# ------------------------------------------------------------ bert-jax alone


def test_no_command_prints_usage_on_stderr_and_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.run(["bert-jax"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2
    assert out == ""
    assert err.startswith("usage: bert-jax COMMAND [--flags]")
    assert all(f"  {name} " in err for name in cli.COMMANDS)


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help_prints_usage_on_stdout_and_exits_0(flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.run(["bert-jax", flag])
    out, err = capsys.readouterr()
    assert exit_.value.code == 0
    assert err == ""
    assert out.startswith("usage: bert-jax COMMAND [--flags]")


def test_unknown_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.run(["bert-jax", "pretrian"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2
    assert out == ""
    assert err.startswith("bert-jax: error: unknown command 'pretrian'; commands: pretrain, evaluate, ")
    assert err.count("\n") == 1


@pytest.mark.parametrize("command", ["prune", "quantize"])
def test_compression_settings_are_config_keys_not_flags(command):
    """prune and quantize take a config like every job; their old per-setting flags are gone."""
    proc = _bert_jax(command, "--workdir=unused", "--output=unused", "--config.batch_sise=8")
    assert _error(proc, command) == (
        "--config.batch_sise: --config has no key 'batch_sise'; did you mean --config.batch_size?"
    )


def test_prune_without_a_sparsity_names_the_key():
    from bert_jax.compress import prune
    from bert_jax.compress.config import prune_config

    with pytest.raises(UserError, match=r"^config.sparsity is not set; pass --config.sparsity=S"):
        prune.run(prune_config(), "unused", "unused")
