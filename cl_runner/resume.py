"""`resume=FOLDER`: what a resumed run runs, decided in one place.

A resumed run continues in FOLDER with the config saved there (`config.yaml`, loaded typed
by `config.load_saved` and checked like a command line), from its last checkpoint.
`prepare(cfg, overrides)` also takes the command line's other overrides: those that cannot
change the results (`SAFE_KEYS`, and Hydra's own logging and launcher settings) are applied
and listed, an override that repeats the saved value is harmless, and any other one is
refused with exit code 2, naming it. The precheck calls it, so a refused override stops the
command before anything runs, and so does `run`.
"""

from __future__ import annotations

import json
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import checkpoint, config
from .errors import ConfigError

# What a resumed run may change, and why none of it changes the numbers it computes:
SAFE_KEYS = {
    # Where the same computation runs; the checkpoint loads onto any device. (CPU and CUDA
    # round differently in the last digits: the price of moving a run to another machine.)
    "device": "the device",
    "train.progress": "progress bars only",
    # Where the same files are read from; the saved data.verify checks them (so data.root is
    # refused for a run saved with data.verify=false, whose data nothing checks).
    "data.root": "where the data is read from",
    "data.download": "whether missing files may be fetched (and then checked)",
    "checkpoint.every_task": "whether checkpoints are written, not what is computed",
}
# Hydra settings that only say how the resuming process logs or is launched are accepted;
# not those of the output folder: a resumed run writes into FOLDER (hydra.run.dir may name it,
# which the precheck checks).
_HYDRA_FOLDER_KEYS = ("hydra.sweep.dir", "hydra.sweep.subdir", "hydra.mode", "hydra.output_subdir")
# Keys without which config.yaml is not a run's config (newer keys take their defaults).
REQUIRED = ("dataset", "model.name", "strategy.name", "strategy.plugins", "train", "seed")


def saved_config(folder: Path) -> DictConfig:
    """FOLDER's config.yaml, typed and checked; ConfigError naming the file if it is damaged."""
    path = folder / checkpoint.CONFIG

    def refuse(why: str) -> ConfigError:
        return ConfigError("resume", str(folder), f"{path} {why}; it cannot be resumed")

    try:
        values = OmegaConf.load(path)
    except Exception as err:  # noqa: BLE001 - YAML syntax, encoding, unreadable file
        raise refuse(f"is damaged ({_first_line(err)})") from None
    if not isinstance(values, DictConfig):
        raise refuse("is not a cl-run config (not a mapping)")
    try:  # cl-run saves it resolved: an interpolation in it was written by hand, and is resolved once, here
        values = OmegaConf.create(OmegaConf.to_container(values, resolve=True))
    except OmegaConfBaseException as err:
        raise refuse(f"holds a value that cannot be resolved ({_first_line(err)})") from None
    missing = [key for key in REQUIRED if OmegaConf.select(values, key, default=None) is None]
    if missing:
        raise refuse(f"lacks {', '.join(missing)}: not a complete cl-run config")
    try:
        cfg = config.typed(values)
        config.validate(cfg)
    except ConfigError as err:
        raise refuse(f"holds a bad value ({err})") from None
    except (OmegaConfBaseException, ValueError, TypeError) as err:
        raise refuse(f"holds a bad value ({_first_line(err)})") from None
    return cfg


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def prepare(cfg, overrides: list[str]) -> tuple[DictConfig, Path, list[str]]:
    """(the config to run, FOLDER, the overrides applied) for `cfg.resume`; `cfg` is the
    config the command line composed, `overrides` its overrides."""
    folder = checkpoint.resumable(cfg.resume)
    saved = saved_config(folder)
    if _status(folder) == "completed":
        raise ConfigError("resume", str(cfg.resume), f"the run in {folder} is complete: there is nothing to resume")
    applied, refused = [], []
    for text, override in zip(overrides, OverridesParser.create().parse_overrides(list(overrides))):
        key = override.key_or_group.replace("/", ".")
        if key in ("resume", "hydra.run.dir"):
            continue
        if key == "overwrite" and override.value() is True:
            raise ConfigError("overwrite", True, f"resume={folder} continues that run; overwrite=true would replace "
                                                 "it: give one or the other")
        if key.startswith("hydra."):
            (refused if key.startswith(_HYDRA_FOLDER_KEYS) else applied).append(text)
            continue
        new, old = _value(cfg, key), _value(saved, key)
        if new is not _MISSING and new == old and not (override.is_delete() or override.is_add()):
            continue  # repeats the saved value: changes nothing
        if key in SAFE_KEYS and new is not _MISSING and not (key == "data.root" and not saved.data.verify):
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), merge=False)
            applied.append(text)
        else:
            refused.append(text)
    if refused:
        raise ConfigError("resume", str(cfg.resume), f"{folder} goes on with its saved config.yaml; these overrides "
                          f"would change its results: {' '.join(refused)} (a resumed run accepts only "
                          f"{', '.join(SAFE_KEYS)} and hydra logging settings); start a new run for other settings")
    saved.resume = str(folder)
    return saved, folder, applied


_MISSING = object()


def _value(cfg, key: str):
    try:
        node = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=True)
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    except OmegaConfBaseException:
        return _MISSING


def _status(folder: Path) -> str | None:
    try:
        return json.loads((folder / "summary.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):  # no summary yet, or a damaged one: resumable
        return None
