"""The ``tmf`` command line: every subcommand's ``--help`` says what it does and lists its valid names; an unknown
name is a one-line error with the closest valid one (issue 16 item 6)."""

from __future__ import annotations

import re

import pytest


def test_every_subcommand_says_what_it_does():
    from tmf.cli import build_parser

    parser = build_parser()
    (stages,) = [a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict)]
    assert len(stages.choices) > 15
    for name, sub in stages.choices.items():
        assert sub.description and len(sub.description) > 20, name
        for action in sub._actions:
            if action.option_strings and action.dest not in ("help",):
                assert action.help, (name, action.option_strings)


@pytest.mark.parametrize("argv, names", [
    (["pretrain", "--help"], "methods"),
    (["evaluate", "--help"], "protocols_and_methods"),
    (["appearance-encode", "--help"], "encoders"),
])
def test_help_lists_the_valid_names(argv, names, capsys, monkeypatch):
    from tmf.cli import main
    from tmf.config import method_names
    from tmf.plan import BASELINES, PROTOCOLS
    from tmf.plan.checks import encoder_names

    expected = {"methods": method_names(), "protocols_and_methods": [*PROTOCOLS, *method_names(), *BASELINES],
                "encoders": encoder_names()}[names]
    monkeypatch.setenv("COLUMNS", "2000")  # argparse wraps at hyphens: random-|resnet18
    with pytest.raises(SystemExit):
        main(argv)
    text = " ".join(capsys.readouterr().out.split())
    for name in expected:
        assert re.search(rf"\b{re.escape(name)}\b", text), name


def test_an_unknown_encoder_is_one_line_with_the_closest_name(tmp_path, capsys):
    from tmf.cli import main

    assert main(["appearance-encode", "--encoder", "rnadom-resnet18", "--manifest", str(tmp_path / "m.csv"),
                 "--packed", str(tmp_path), "--out", str(tmp_path / "f.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--encoder: unknown encoder 'rnadom-resnet18' (did you mean " \
        "'random-resnet18'?)" in err, err
    assert not (tmp_path / "f.npy").exists()
