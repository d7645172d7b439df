"""Every error a user can trigger: one line with the fix, no traceback, no change to existing files.

The cases of issue 10 (lists 9 and 10) plus the ones found while fixing them. Everything is checked
in-process (fast): ``check_cli`` is what a script runs before Hydra starts, so its one line and exit
status 2 are the script's. Each script runs in a subprocess once, in its own module's tests; the slow
checks here run the scripts on read-only and unsafe folders.
"""

import errno
import json
import os
import pickle
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from helpers import FAST, FAST_ANY_MODEL, one_line_error, run_script, snapshot

from replearn.cli.check import check_cli, check_config, quote_path_overrides, with_resumed_overrides
from replearn.errors import ReplearnError
from replearn.report.collect import collect_runs, expected_grid
from replearn.runs.checkpoint import load_checkpoint
from replearn.runs.load import load_run
from replearn.trace import load_network, trace
from replearn.training.loop import train


def _cli_error(capsys, config_name: str, argv: list[str]) -> str:
    """The one line a script prints for ``argv`` before Hydra starts (it exits with status 2)."""
    with pytest.raises(SystemExit) as info:
        check_cli(config_name, argv)
    out, err = capsys.readouterr()
    assert info.value.code == 2 and not out
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def sweep_run(trained_runs, tmp_path_factory):
    """A tiny finished run in a folder named like a sweep job (``depth=1,variant=plain``)."""
    return trained_runs.copy(FAST + ["trainer.epochs=1", "depth=1"], tmp_path_factory.mktemp("sweep") / "depth=1,variant=plain")


# ---------------------------------------------------------------- configuration (in-process, fast)

@pytest.mark.parametrize("overrides,expected", [
    (["optim.beta1=1.5"], "optim.beta1=1.5 is invalid: must be in [0, 1)"),
    (["optim.beta2=-0.1"], "optim.beta2=-0.1 is invalid"),
    (["trainer.warmup_fraction=2"], "trainer.warmup_fraction=2.0 is invalid: must be in (0, 1)"),
    (["optim=sgd", "optim.momentum=-1"], "optim.momentum=-1.0 is invalid: must be in [0, 1)"),
    (["seed=12345678901234567890"], "seed=12345678901234567890 is invalid"),
    (["data.split_seed=-1"], "data.split_seed=-1 is invalid"),
    (["data=synthetic", "data.num_train=0"], "data.num_train=0 is invalid"),
    (["optim.lr=inf"], "optim.lr=inf is invalid: must be a finite number"),
    (["depth=1000000"], "pass trainer.force_resources=true"),
    (["model=cnn", "depth=1000000"], "pass trainer.force_resources=true"),
])
def test_bad_settings_fail_with_one_line(overrides, expected):
    with pytest.raises(ReplearnError) as info:
        check_config("train", overrides)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_resource_guard_is_fast_and_can_be_forced():
    import time

    start = time.perf_counter()
    with pytest.raises(ReplearnError, match=r"needs about \d+"):
        check_config("train", ["depth=1000000"])
    assert time.perf_counter() - start < 10  # composition dominates; the estimate itself is arithmetic
    check_config("train", ["depth=1000000", "trainer.force_resources=true"])  # the override is honoured

    from omegaconf import OmegaConf

    from replearn.guards import check_training

    cfg = OmegaConf.create({"model": {"name": "mlp", "depth": 10**6, "width": 256, "norm": "none"},
                            "trainer": {"batch_size": 512, "eval_batch_size": 2000, "force_resources": False},
                            "data": {"name": "mnist"}, "device": "cpu"})
    start = time.perf_counter()
    with pytest.raises(ReplearnError):
        check_training(cfg)
    assert time.perf_counter() - start < 1.0  # target: guards cost < 1 s at start-up


def test_compare_depth_without_sweep_is_one_line():
    with pytest.raises(ReplearnError, match="sweep is missing: pass sweep="):
        check_config("compare_depth", [])


def test_sweep_folder_names_are_quoted_for_hydra(tmp_path):
    typed = ["run=multirun/depth_smoke/depth=1,variant=plain", "trainer.resume=a/depth=2,seed=0", "depth=1,2",
             "sweep=latest"]
    assert quote_path_overrides(typed) == ["run='multirun/depth_smoke/depth=1,variant=plain'",
                                           "trainer.resume='a/depth=2,seed=0'", "depth=1,2", "sweep=latest"]
    check_config("visualize", [quote_path_overrides(typed[:1])[0]])  # parses; the path is checked at run time


def test_resume_uses_the_runs_own_settings_not_hydras_record(sweep_run, tmp_path, capsys):
    """The run's own settings come from its checkpoint (.hydra/overrides.yaml may say anything); the run's folder
    is the job's folder, with no .hydra written (tests/cli/test_resume_cli.py has the whole story)."""
    run = tmp_path / sweep_run.name
    shutil.copytree(sweep_run, run)
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["depth=7", "trainer.removed_key=1"]))
    argv = quote_path_overrides([f"trainer.resume={run}", "trainer.epochs=3"])
    rewritten = with_resumed_overrides(argv)
    assert "depth=1" in rewritten and "depth=7" not in " ".join(rewritten) and "trainer.epochs=1" not in rewritten
    assert rewritten[-4:-2] == argv and rewritten[-2:] == [*quote_path_overrides([f"hydra.run.dir={run}"]),
                                                          "hydra.output_subdir=null"]
    assert f"resuming {run} with its own settings: " in capsys.readouterr().out


# ---------------------------------------------------------------- files (in-process)

def test_checkpoint_error_never_advises_weights_only_false(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 1, "payload": object.__new__(subprocess.Popen)}, path)  # an arbitrary object
    with pytest.raises(ReplearnError) as info:
        load_checkpoint(path)
    assert "weights_only=False" not in str(info.value) and "could run code" in str(info.value)
    path.write_bytes(pickle.dumps([1, 2]) + b"garbage")
    with pytest.raises(ReplearnError, match="corrupt"):
        load_checkpoint(path)


def test_stored_config_too_big_to_build_is_refused(sweep_run, tmp_path):
    state = torch.load(sweep_run / "checkpoint.pt", weights_only=True)
    state["config"]["model"].update(depth=200000, width=256)
    (tmp_path / "big").mkdir()
    torch.save(state, tmp_path / "big" / "checkpoint.pt")
    with pytest.raises(ReplearnError, match="REPLEARN_FORCE_RESOURCES=1"):
        load_run(tmp_path / "big")
    state["config"]["model"]["depth"] = None
    torch.save(state, tmp_path / "big" / "checkpoint.pt")
    with pytest.raises(ReplearnError, match=r"model.depth=None is invalid"):
        load_run(tmp_path / "big")


@pytest.mark.parametrize("text,expected", [
    ("inputs: [.nan, 1]\nlayers: [{nodes: [{weights: [1, 1]}]}]", "finite"),
    ("inputs: [1.0e+300, 1]\nlayers: [{nodes: [{weights: [1.0e+300, 1]}]}]", "magnitude"),
    ("inputs: [100000000000000000000000000000, 1]\nlayers: [{nodes: [{weights: [1, 1]}]}]", "magnitude"),
    ("inputs: [1, 1]\nlayers: [{nodes: [{weights: [.inf, 1]}]}]", "finite"),
])
def test_trace_yaml_with_nan_or_huge_values(tmp_path, text, expected):
    (tmp_path / "net.yaml").write_text(text)
    with pytest.raises(ReplearnError, match=expected):
        load_network(tmp_path / "net.yaml")


def _write_idx(path: Path, data: torch.Tensor) -> None:
    header = struct.pack(">II", 2051, data.shape[0]) + struct.pack(">II", *data.shape[1:]) if data.dim() == 3 \
        else struct.pack(">II", 2049, data.shape[0])
    path.write_bytes(header + data.to(torch.uint8).numpy().tobytes())


def test_valid_idx_files_of_another_image_size_are_one_line(compose_cfg, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "train-images-idx3-ubyte", torch.randint(0, 255, (20, 20, 20)))
    _write_idx(raw / "train-labels-idx1-ubyte", torch.randint(0, 10, (20,)))
    _write_idx(raw / "t10k-images-idx3-ubyte", torch.randint(0, 255, (10, 20, 20)))
    _write_idx(raw / "t10k-labels-idx1-ubyte", torch.randint(0, 10, (10,)))
    cfg = compose_cfg("train", [f"data.root={tmp_path}", "data.download=false", "data.val_size=4",
                                "trainer.progress=false", "trainer.threads=1"])
    with pytest.raises(ReplearnError, match="holds 20x20 images.*28x28"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_full_disk_is_one_line_naming_the_resume(compose_cfg, tmp_path, monkeypatch):
    import replearn.training.loop as training

    real_save = training.save_checkpoint

    def full_after_first(state, path):
        if state["epoch"] >= 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_save(state, path)

    monkeypatch.setattr(training, "save_checkpoint", full_after_first)
    with pytest.raises(ReplearnError) as info:
        train(compose_cfg("train", FAST + ["trainer.epochs=3"]), tmp_path)
    message = str(info.value)
    assert "No space left on device" in message and f"trainer.resume={tmp_path}" in message and "\n" not in message
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    assert train(compose_cfg("train", FAST + ["trainer.epochs=3"]), tmp_path)["epochs_completed"] == 3


def test_corrupt_final_json_is_rebuilt_from_the_checkpoint(compose_cfg, trained_run):
    cfg = compose_cfg("train", FAST + ["trainer.epochs=1"])
    run = trained_run(FAST + ["trainer.epochs=1"])
    first = json.loads((run / "final.json").read_text())
    (run / "final.json").write_text("[1]")
    again = train(cfg, run)  # a rerun repairs it instead of being blocked
    assert again["status"] == "ok" and again["test_acc"] == first["test_acc"]


# ---------------------------------------------------------------- the depth report

def _fake_run(folder, depth, seed=0, final=None, config=None):
    folder.mkdir(parents=True)
    model = {"name": "mlp", "depth": depth, "width": 8, "norm": "none", "residual": False}
    cfg = config if config is not None else yaml.safe_dump({"model": model, "depth": depth, "seed": seed})
    (folder / "config.yaml").write_bytes(cfg if isinstance(cfg, bytes) else cfg.encode())
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_acc": 0.9, "train_acc": 0.9}) + "\n")
    if final is not None:
        (folder / "final.json").write_bytes(final if isinstance(final, bytes) else final.encode())


def test_unreadable_runs_are_failed_with_reasons_and_the_report_builds(tmp_path):
    from omegaconf import OmegaConf

    from replearn.report.build import compare_depth

    ok = json.dumps({"status": "ok", "test_acc": 0.9, "test_loss": 0.3, "epochs_completed": 1})
    _fake_run(tmp_path / "depth=1,seed=0,variant=plain", 1, final=ok)
    _fake_run(tmp_path / "depth=2,seed=0,variant=plain", 2, final=b"\x80\x81binary")
    _fake_run(tmp_path / "depth=3,seed=0,variant=plain", 3, final="[1]")
    _fake_run(tmp_path / "depth=4,seed=0,variant=plain", 4, final=ok, config=b"\xff\xfe\x00binary")
    _fake_run(tmp_path / "depth=6,seed=0,variant=plain", None, final=ok)
    _fake_run(tmp_path / "depth=8,seed=0,variant=plain", 8,
              final=json.dumps({"status": "ok", "test_acc": 0.096, "test_loss": 3e8}))
    (tmp_path / "depth=1,seed=0,variant=plain" / ".checkpoint.pt-x1.tmp").write_bytes(b"half")
    (tmp_path / "depth=12,seed=0,variant=plain" / ".hydra").mkdir(parents=True)  # a failed start
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"params": {"variant": "plain,batchnorm,residual", "depth": "1,2,3,4,6,8,12,16", "seed": "0,1,2"}},
        "overrides": {"task": ["experiment=depth_mlp", "variant=plain", "depth=1,2,3,4,6,8,12", "seed=0"]}}}))
    assert len(expected_grid(tmp_path)) == 7  # what was asked for, not the experiment's 72
    records = {r.depth: r for r in collect_runs(tmp_path)}
    assert {d: r.status for d, r in records.items()} == {
        1: "ok", 2: "failed", 3: "failed", 4: "failed", 6: "failed", 8: "diverged", 12: "missing"}
    assert "final.json" in records[2].error and "list" in records[3].error
    assert "config.yaml" in records[4].error and "depth None" in records[6].error
    assert "exploded" in records[8].error
    before = snapshot(tmp_path)
    cfg = OmegaConf.create({"sweep": str(tmp_path), "root": str(tmp_path), "cross_cka_images": 0, "progress": False})
    assert compare_depth(cfg).is_file()
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("depth_report/")}
    assert after == before  # the report reads; it changes no run


# ---------------------------------------------------------------- the scripts' command lines (in-process)

def test_train_script_bad_value_is_one_line(capsys, tmp_path):
    assert "optim.beta1" in _cli_error(capsys, "train", ["optim.beta1=1.5", f"hydra.run.dir={tmp_path}/run"])
    assert not (tmp_path / "run").exists()


def test_compare_depth_script_without_sweep_is_one_line(capsys):
    assert "sweep=" in _cli_error(capsys, "compare_depth", [])


def test_trace_script_takes_a_sweep_folder_as_typed(sweep_run, compose_cfg, tmp_path):
    argv = quote_path_overrides([f"run={sweep_run}", f"hydra.run.dir={tmp_path}/trace", "draw=false"])
    check_cli("trace", argv)  # passes: the folder's "=" and "," do not reach Hydra's override grammar unquoted
    cfg = compose_cfg("trace", [arg for arg in argv if not arg.startswith("hydra.")])
    assert cfg.run == str(sweep_run)
    assert "prediction:" in trace(cfg, tmp_path / "trace")


# ---------------------------------------------------------------- the scripts (subprocess, slow)


@pytest.mark.slow
def test_visualize_refuses_a_viz_link_out_of_the_run(sweep_run, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    (sweep_run / "viz").symlink_to(outside)
    try:
        line = one_line_error(run_script("visualize.py", f"run={sweep_run}"))
    finally:
        (sweep_run / "viz").unlink()
    assert "outside the run folder" in line
    assert [p.name for p in outside.iterdir()] == ["precious.txt"]


@pytest.mark.slow
def test_trace_script_refuses_a_stored_config_too_big(sweep_run, tmp_path):
    state = torch.load(sweep_run / "checkpoint.pt", weights_only=True)
    state["config"]["model"].update(depth=200000, width=256)
    (tmp_path / "big").mkdir()
    torch.save(state, tmp_path / "big" / "checkpoint.pt")
    line = one_line_error(run_script("trace.py", f"run={tmp_path / 'big'}", f"hydra.run.dir={tmp_path}/trace"))
    assert "REPLEARN_FORCE_RESOURCES=1" in line


@pytest.mark.slow
def test_train_script_resume_refusals_touch_nothing(sweep_run, tmp_path):
    before = snapshot(sweep_run)
    line = one_line_error(run_script("train.py", f"trainer.resume={sweep_run}", "optim=sgd", *FAST_ANY_MODEL,
                                     f"hydra.run.dir={tmp_path}/r"))
    assert "optim.name" in line
    assert snapshot(sweep_run) == before
    assert not (tmp_path / "r").exists()  # the folder of a failed start is not left behind


def _immutable(path: Path) -> bool:
    """Make ``path`` unwritable even for root (chattr +i); False where that is not possible."""
    try:
        return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0 and \
            not os.access(path, os.W_OK)
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("what", ["sweep", "run", "report"])
def test_read_only_folders_are_one_line(sweep_run, tmp_path, what):
    target = {"sweep": tmp_path / "sweep", "run": sweep_run, "report": tmp_path / "finished"}[what]
    target.mkdir(exist_ok=True)
    if what == "report":  # a finished sweep whose folder is read-only: the report cannot be written
        _fake_run(target / "depth=1,seed=0", 1, final=json.dumps({"status": "ok", "test_acc": 0.9}))
    if os.geteuid() != 0:
        os.chmod(target, 0o555)
    elif not _immutable(target):
        pytest.skip("cannot make a folder read-only here")
    before = snapshot(target)
    try:
        if what == "sweep":
            proc = run_script("train.py", "-m", "experiment=depth_smoke", f"hydra.sweep.dir={target}")
        elif what == "report":
            proc = run_script("compare_depth.py", f"sweep={target}", "cross_cka_images=0", "progress=false")
        else:
            proc = run_script("train.py", f"trainer.resume={target}", "trainer.epochs=2", *FAST, "depth=1",
                              f"hydra.run.dir={tmp_path}/r")
        line = one_line_error(proc)
    finally:
        subprocess.run(["chattr", "-i", str(target)], capture_output=True)
        os.chmod(target, 0o755)
    assert "writ" in line and snapshot(target) == before


@pytest.mark.parametrize("damage", [b"\xff\xfe\x00binary", None])
def test_damaged_config_yaml_does_not_block_the_rerun(compose_cfg, trained_run, damage):
    cfg = compose_cfg("train", FAST + ["trainer.epochs=1"])
    run = trained_run(FAST + ["trainer.epochs=1"])
    first = json.loads((run / "final.json").read_text())
    config = run / "config.yaml"
    config.write_bytes(damage if damage is not None else config.read_bytes().replace(b"depth: 2", b"depth: null"))
    stamp = (run / "checkpoint.pt").stat().st_mtime_ns
    assert train(cfg, run) == first  # skipped as finished: the checkpoint's config agrees
    assert (run / "checkpoint.pt").stat().st_mtime_ns == stamp


def test_visualize_seed_out_of_range_is_one_line():
    with pytest.raises(ReplearnError, match=r"seed=12345678901234567890 is invalid"):
        check_config("visualize", ["run=latest", "seed=12345678901234567890"])
