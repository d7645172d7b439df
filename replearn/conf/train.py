"""Structured schemas for the train config and its groups (model, data, optim, trainer).

Types are checked by OmegaConf at composition (``depth=three`` fails there);
ranges and choices are checked by :func:`replearn.conf.validate.validate_train`
before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, OmegaConf

from replearn.conf.analysis import AnalysisConfig
from replearn.conf.logger import LoggerConfig


@dataclass
class MLPConfig:
    name: str = "mlp"
    depth: int = II("depth")
    # One output per class of the data (10 for the MNIST family, 8 or 2 for shapes), and its image side.
    num_classes: int = II("data.num_classes")
    image_size: int = II("data.size")
    width: int = 256
    activation: str = "relu"
    norm: str = "none"
    residual: bool = False
    init: str = "he"


@dataclass
class CNNConfig:
    name: str = "cnn"
    depth: int = II("depth")
    num_classes: int = II("data.num_classes")
    image_size: int = II("data.size")
    channels: int = 32
    max_channels: int = 128
    activation: str = "relu"
    norm: str = "batchnorm"
    residual: bool = False
    init: str = "he"
    # pooled: global average pool, then a linear head on the channels. flatten: a linear head on the last
    # block's whole map (channels x h x w inputs): the head then knows where a feature is, so a shallow
    # net no longer needs depth to relate distant parts (one block, 2 epochs on MNIST: 31% pooled, 98%
    # flatten; docs/configs.md).
    head: str = "pooled"
    # grow: 3x3 kernels, the receptive field grows with depth (3, 7, 15 px at depths 1-3 on 28 px).
    # cover: the first block's kernel widens until one unit of the last block sees every pixel, at
    # every depth (29, 27, 21, 5 px at depths 1-4 on 28 px; 3x3 from depth 5). Channels, strides and map
    # sizes stay those of grow and only the first block (one input channel) grows, so parameters stay
    # comparable: + (k^2 - 9) x channels weights, +26.6k / +23.0k / +13.8k / +0.5k at depths 1-4 of
    # the default (whose depth-4 net has 242k).
    reach: str = "grow"


@dataclass
class DataConfig:
    name: str = "mnist"
    # torchvision layout under root: <root>/MNIST/raw/*-ubyte[.gz]
    root: str = "${oc.env:REPLEARN_DATA_DIR,./data}"
    download: bool = True
    val_size: int = 5000
    # The validation split is drawn with its own seed so every run of a sweep holds out the same images.
    split_seed: int = 0
    # The largest translation (pixels) that keeps an image's class; a trainer that augments uses it
    # (trainer.augment_shift, the CNN's). MNIST: 2. Fashion-MNIST: 0, because shifts of 1-2 pixels
    # lowered the 4-epoch CNN from 91.0% to 90.4% / 88.9% test accuracy.
    max_shift: int = 0
    # Only used by data=synthetic.
    num_train: int = 0
    num_test: int = 0
    # Only used by data=shapes (replearn.shapes): image side in px, and the labelling: parts (the
    # object, 8 classes) or strokes (the twin negative control, labelled by stroke statistics alone).
    size: int = 28
    labels: str = "parts"
    # The number of classes (the models' outputs follow it): 10 for the MNIST family; data=shapes
    # derives it from data.labels (8 objects, or the 2 classes of the strokes twin).
    num_classes: int = 10
    # Train on shuffled labels (the shuffled-label control, replearn.analysis.controls): the training
    # labels are permuted once, seeded with label_shuffle_seed (the data's own seed, like split_seed: every
    # seed of a sweep gets the same permutation); validation and test labels stay true, so the test
    # accuracy of such a run reads as chance.
    shuffle_labels: bool = False
    label_shuffle_seed: int = 0


@dataclass
class AdamConfig:
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999


@dataclass
class SGDConfig:
    name: str = "sgd"
    lr: float = 0.05
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = True


@dataclass
class TrainerConfig:
    epochs: int = 8
    batch_size: int = 128
    eval_batch_size: int = 2000
    schedule: str = "onecycle"
    warmup_fraction: float = 0.15
    label_smoothing: float = 0.0
    # Translate each training image by up to this many pixels (a new draw every epoch); 0 = off.
    augment_shift: int = 0
    # A run dir (or its checkpoint.pt) to continue, with its own settings and the overrides typed.
    resume: str | None = None
    # Re-run even if the output dir already holds a finished run.
    force: bool = False
    # Train even if the memory estimate (parameters + activations, replearn.guards) exceeds what is free.
    force_resources: bool = False
    progress: bool = True
    # Torch CPU threads per run; 0 = auto: the cores other processes leave free, re-checked each
    # epoch, where the count cannot change the numbers; else one count per run, recorded in the
    # checkpoint (replearn.device.ThreadPolicy). Sweeps with parallel jobs set 1.
    threads: int = 0


@dataclass
class TrainConfig:
    model: Any = MISSING
    data: Any = MISSING
    optim: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    # Per-run analysis (probes, CKA, trainability, complexity) written to analysis.json after training.
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    # Where metrics go besides metrics.jsonl: logger=csv|tensorboard|wandb (configs/logger/).
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    depth: int = 3
    seed: int = 0
    device: str = "auto"


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="model", name="mlp_schema", node=MLPConfig)
    cs.store(group="model", name="cnn_schema", node=CNNConfig)
    # The data options live here rather than in configs/data/*.yaml: they are presets of
    # one schema, and a tracked folder named data/ reads as committed data.
    cs.store(group="data", name="mnist", node=DataConfig(name="mnist", max_shift=2))
    cs.store(group="data", name="fashion_mnist", node=DataConfig(name="fashion_mnist"))
    # A small generated 28x28, 10-class dataset a network can learn: for fast tests.
    cs.store(group="data", name="synthetic",
             node=DataConfig(name="synthetic", val_size=500, num_train=3000, num_test=1000))
    # The generated shapes world: lines -> parts -> objects, with exact concept masks (replearn.shapes).
    # max_shift 0: a shift can push an object's strokes off the 28 px canvas.
    cs.store(group="data", name="shapes",
             node=DataConfig(name="shapes", download=False, num_classes="${shapes_classes:${data.labels}}"))
    cs.store(group="optim", name="adam_schema", node=AdamConfig)
    cs.store(group="optim", name="sgd_schema", node=SGDConfig)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)



def _shapes_classes(labels: str) -> int:
    """How many classes a shapes labelling has (the ``shapes_classes`` resolver)."""
    from replearn.shapes.labels import class_names  # lazy: replearn.shapes imports torch (~1.4 s); only shapes needs it

    return len(class_names(labels))


def _cnn_sweep_suffix(head: str, reach: str) -> str:
    """The sweep-folder suffix of a CNN's head and reach (the ``cnn_sweep_suffix`` resolver): empty for the
    defaults, so ``multirun/depth_cnn`` keeps its runs, else ``_flatten``, ``_cover`` or ``_flatten_cover``."""
    for key, value, allowed in (("model.head", head, ("pooled", "flatten")), ("model.reach", reach, ("grow", "cover"))):
        if value not in allowed:
            raise ValueError(f"{key}={value!r} is invalid: choose one of {', '.join(allowed)}")
    return ("_flatten" if head == "flatten" else "") + ("_cover" if reach == "cover" else "")


register()
OmegaConf.register_new_resolver("shapes_classes", _shapes_classes, replace=True)
OmegaConf.register_new_resolver("cnn_sweep_suffix", _cnn_sweep_suffix, replace=True)
