"""pointwatch-collector's global options (--config, --data-dir): before or after any command, in every --help."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from collector.cli import build_parser, main


def _every_parser(parser: argparse.ArgumentParser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _every_parser(sub, (*path, name))


def test_every_commands_help_shows_the_global_options():
    parsers = list(_every_parser(build_parser()))
    assert len(parsers) > 20  # serve, demo, points add, evidence export …
    for path, parser in parsers:
        text = parser.format_help()
        assert "--config" in text and "--data-dir" in text, " ".join(path)


def test_help_of_a_command_run_as_a_user_would():
    out = subprocess.run([sys.executable, "-m", "collector.cli", "serve", "--help"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "--data-dir" in out and "--config" in out


@pytest.mark.parametrize("argv", [
    ["--data-dir", "D", "--config", "C", "serve"],
    ["serve", "--data-dir", "D", "--config", "C"],
    ["--config", "C", "serve", "--port", "9000", "--data-dir", "D"],
    ["--data-dir", "D", "points", "add", "--code", "1", "--name", "n", "--region", "r", "--config", "C"],
    ["evidence", "export", "--point", "1", "--from", "2026-01-01", "--to", "2026-01-31", "--out", "o.zip",
     "--data-dir", "D", "--config", "C"],
])
def test_global_options_before_or_after_the_command(argv):
    args = build_parser().parse_args(argv)
    assert (args.data_dir, args.config) == ("D", "C")


def test_an_option_after_the_command_wins_over_one_before():
    args = build_parser().parse_args(["--data-dir", "first", "serve", "--data-dir", "second"])
    assert args.data_dir == "second"


def test_commands_use_the_data_dir_given_after_them(tmp_path, capsys):
    data, cfg = tmp_path / "data", tmp_path / "collector.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'from-config'}\n", encoding="utf-8")
    assert main(["points", "add", "--code", "620102001001", "--name", "某村医保服务点",
                 "--region", "甘肃省/兰州市/城关区/某镇/某村", "--data-dir", str(data)]) == 0
    assert (data / "pointwatch.db").exists()
    capsys.readouterr()
    assert main(["--data-dir", str(data), "scores", "--json"]) == 0
    assert [r["code"] for r in json.loads(capsys.readouterr().out)["ranking"]] == ["620102001001"]
    # --config after the command: its data_dir is used when no --data-dir is given.
    assert main(["db", "upgrade", "--config", str(cfg)]) == 0
    assert (tmp_path / "from-config" / "pointwatch.db").exists()
