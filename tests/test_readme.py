"""README.md and CI agree: CI runs exactly the test command README shows."""

import re


def _readme_commands(repo_root):
    text = (repo_root / "README.md").read_text(encoding="utf-8")
    quickstart = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\s*(\S.*)$", quickstart.split("```", 2)[1], flags=re.M)


def test_ci_runs_the_readme_test_command(repo_root):
    commands = _readme_commands(repo_root)
    test_cmd = [c for c in commands if "pytest" in c]
    assert len(test_cmd) == 1, commands
    pytest_part = test_cmd[0].split("&&")[-1].strip()
    ci = (repo_root / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(rf"^{re.escape(pytest_part)}$", ci, flags=re.M), (pytest_part, ci)


def test_readme_main_command_is_the_demo(repo_root):
    commands = _readme_commands(repo_root)
    assert any("bert-jax pretrain --config=configs/demo.py" in c for c in commands), commands
