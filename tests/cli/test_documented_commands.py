"""Every ``python scripts/<name>.py ...`` command of the README and docs/ does what the page says, in-process.

A command composes, passes the script's checks and gets the values it types; a transcript of an error
(``$ python scripts/...`` followed by ``error: ...``) prints exactly that line.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

import pytest
from helpers import ROOT
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

from replearn.cli.check import check_cli, check_config, quote_path_overrides, user_overrides
from replearn.conf.compose import compose, validate_config

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"^(?P<prompt>\$ )?python scripts/(?P<script>\w+)\.py\b(?P<args>.*)$")


@dataclass(frozen=True)
class Documented:
    page: str
    config_name: str
    argv: tuple[str, ...]
    error: str | None  # the documented error line of a transcript, or None for a command that runs

    def __str__(self) -> str:
        return f"{self.page}: {self.config_name} {' '.join(self.argv)}"


def _argv(args: str) -> tuple[str, ...]:
    """The typed arguments, with placeholders (``<run dir>``, ``...``) replaced by a plain value."""
    argv = []
    for arg in shlex.split(args, comments=True):
        key, sep, value = arg.partition("=")
        argv.append(f"{key}=placeholder" if sep and ("<" in value or "..." in value) else arg)
    return tuple(argv)


def documented_commands() -> list[Documented]:
    found: dict[tuple, Documented] = {}  # one test per command, named after the first page that shows it
    for page in PAGES:
        text = page.read_text().replace("\\\n", " ")  # a command continued on the next line
        blocks = [block.splitlines() for block in re.findall(r"```[^\n]*\n(.*?)```", text, re.S)]
        blocks += [[span] for span in re.findall(r"`(python scripts/[^`]+)`", text)]  # inline, e.g. in tables
        for lines in blocks:
            for i, line in enumerate(lines):
                match = COMMAND.match(line.strip())
                if match is None:
                    continue
                error = None
                if match["prompt"]:  # a transcript: the lines after it are what the command printed
                    after = lines[i + 1].strip() if i + 1 < len(lines) else ""
                    error = after if after.startswith("error: ") else None
                command = Documented(page.name, match["script"], _argv(match["args"]), error)
                found.setdefault((command.config_name, command.argv, error), command)
    return list(found.values())


COMMANDS = documented_commands()


def _first_combination(overrides: list[str]) -> list[str]:
    """A sweep's first job: every swept key at its first value."""
    return [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" if o.is_sweep_override() else o.input_line
            for o in OverridesParser.create().parse_overrides(overrides)]


def _value(cfg: DictConfig, key: str):
    value = OmegaConf.select(cfg, key)
    return OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value


def test_the_docs_document_every_script_and_an_error():
    assert {c.config_name for c in COMMANDS} == {"train", "visualize", "compare_depth", "trace", "bench"}
    assert any(c.error for c in COMMANDS)
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.error is None], ids=str)
def test_documented_command_composes_to_what_it_types(command):
    overrides = user_overrides(quote_path_overrides(list(command.argv)))
    assert overrides is not None, "a documented command that only prints help"
    first = _first_combination(overrides)
    if first != overrides:
        check_config(command.config_name, overrides)  # every swept value composes and passes the script's checks
    cfg = compose(command.config_name, first, return_hydra_config=True)
    validate_config(command.config_name, cfg)
    choices = cfg.hydra.runtime.choices
    for override in OverridesParser.create().parse_overrides(first):
        key = override.key_or_group
        if key in choices:  # a config group: model=cnn, experiment=depth_mlp, ...
            assert choices[key] == override.value(), key
        else:
            assert _value(cfg, key) == override.value(), key


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.error], ids=str)
def test_documented_error_is_the_line_the_script_prints(command, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        check_cli(command.config_name, [*command.argv, f"hydra.run.dir={tmp_path}/run"])
    out, err = capsys.readouterr()
    assert info.value.code == 2 and not out
    assert err.strip() == command.error
