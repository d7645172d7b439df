"""Per-script --help: Hydra's app help template, no *_schema entries, the groups it lists are the real ones."""

import re

import pytest
from helpers import run_script

from replearn.conf import CONFIG_DIR

SCRIPTS = ["train.py", "visualize.py", "compare_depth.py", "trace.py", "bench.py"]


def real_options(group: str) -> set[str]:
    """Options of a config group: YAML files plus ConfigStore entries, schemas excluded."""
    from hydra.core.config_store import ConfigStore

    import replearn.conf  # noqa: F401  (registers)

    files = {p.stem for p in (CONFIG_DIR / group).glob("*.yaml")}
    stored = {name.removesuffix(".yaml") for name in ConfigStore.instance().repo.get(group, {})}
    return {name for name in files | stored if not name.endswith("_schema")}


def help_template(cfg) -> str:
    """The script's help text as Hydra renders it from its composed config, before $CONFIG is filled in."""
    return cfg.hydra.help.template.replace("${hydra.help.header}", cfg.hydra.help.header)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_template_is_the_scripts_own(compose_cfg, script):
    text = help_template(compose_cfg(script.removesuffix(".py"), return_hydra_config=True))
    assert "_schema" not in text and "$APP_CONFIG_GROUPS" not in text
    assert f"python scripts/{script}" in text.split("\n\n")[1]  # the usage line names this script
    if script != "train.py":
        assert "experiment" not in text and "variant" not in text  # train's groups are not listed here


def test_train_help_lists_every_group_option():
    proc = run_script("train.py", "--help", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    assert "_schema" not in text
    block = text.split("Config groups (choose one option each):\n", 1)[1].split("\n\n", 1)[0]
    listed = {}
    for line in block.splitlines():
        group, options = line.split(None, 1)
        listed[group] = {o.strip() for o in re.sub(r"\(.*\)", "", options).split(",")}
    for group in ("model", "data", "optim", "trainer", "logger", "variant", "experiment"):
        assert listed[group] == real_options(group), group
    assert "width: 256" in text  # the composed config with its defaults follows
