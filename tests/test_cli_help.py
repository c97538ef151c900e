"""The command line's help: a description and an example per subcommand, --study required where it
names an existing study, --version from the package metadata."""
from __future__ import annotations

import importlib.metadata

import pytest

from run_search import build_parser, main

COMMANDS = ("search", "worker", "report", "compress", "confirm", "export", "paper", "predict")


@pytest.mark.parametrize("command", COMMANDS)
def test_each_subcommand_help_describes_it_and_shows_an_example(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    description = out.split("options:")[0].split("\n\n", 1)[1]  # the paragraph after the usage lines
    assert len(description.split()) >= 12
    examples = out.split("examples:\n", 1)[1].splitlines()
    assert examples and all(line.startswith(f"  python run_search.py {command} ") for line in examples)


def test_the_command_list_names_every_subcommand():
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(subparsers.choices) == set(COMMANDS)


@pytest.mark.parametrize("command", ["worker", "report", "compress", "export", "paper"])
def test_a_missing_study_is_one_line_exit_2(command, capsys):
    extra = ["--team", "T"] if command == "export" else []
    assert main([command, *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--study" in err


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"run_search.py {importlib.metadata.version('liqa-nas')}"


def test_confirm_and_export_take_the_same_protocol_options():
    """confirm's --top/--protocol/--runs are export's --confirm-top/--confirm-protocol/--confirm-runs (the older
    --folds spellings still read as runs); left out, the study's own protocol is used (None here)."""
    parse = build_parser().parse_args
    confirm = parse(["confirm", "--study", "s", "--top", "2", "--protocol", "seeds", "--runs", "4"])
    export = parse(["export", "--study", "s", "--team", "T", "--confirm-top", "2", "--confirm-protocol", "seeds",
                    "--confirm-folds", "4"])
    for args in (confirm, export):
        assert (args.confirm_top, args.confirm_protocol, args.confirm_runs) == (2, "seeds", 4)
    plain = parse(["confirm", "--study", "s"])
    assert (plain.confirm_protocol, plain.confirm_runs) == (None, None)


@pytest.mark.parametrize("bad", [["--protocol", "bootstrap"], ["--runs", "1"]])
def test_a_bad_confirm_protocol_is_one_line_exit_2(bad, capsys):
    assert main(["confirm", "--study", "s", *bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and bad[0] in err
