"""The tuned-config cache: configs timed by `tconv tune` (or online tuning), on disk.

The cache is one JSON file per environment (tconv version, Triton version, device name
and compute capability), in ``$TCONV_CACHE_DIR`` or the user cache directory
(``$XDG_CACHE_HOME/tconv``, by default ``~/.cache/tconv``). A file's header repeats the
environment, so a copied or renamed file from another environment is stale and ignored
with a warning, as is a corrupt one: a cache problem never stops a convolution.

Writes are read-merge-replace under an exclusive lock on a side file, through a
temporary file and ``os.replace``: concurrent tuners never lose each other's entries and
an interrupted sweep never leaves a half-written file.

Which config a launch uses (tuned entry, else online tuning with ``TCONV_AUTOTUNE=1``,
else the heuristic) is decided by tconv._launch.choose_config.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import tempfile
import threading
import warnings

import torch
import triton

from .configs import KernelConfig
from .spec import ConvSpec

FORMAT = 1
_lock = threading.Lock()
_loaded: dict[str, dict] = {}  # path -> entries read from disk (and stored since)
_warned: set[str] = set()
#: Bumped whenever what this process knows of the cache changes (a store, a forget): the
#: launchers' memo of chosen configs is only valid within one generation.
generation = 0

try:  # advisory locks; without fcntl (Windows) writes are still atomic, merges best effort
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


def cache_dir() -> str:
    folder = os.environ.get("TCONV_CACHE_DIR")
    if folder:
        return folder
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tconv")


def environment(device: torch.device) -> dict:
    """What a tuned config is only valid for."""
    return dict(_environment(device.type, device.index if device.type == "cuda" else None))


@functools.cache
def _environment(device_type: str, index: int | None) -> tuple:
    from . import __version__

    device = torch.device(device_type, index) if index is not None else torch.device(device_type)

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        capability = "sm_{}{}".format(*torch.cuda.get_device_capability(device))
    else:
        name, capability = "cpu-interpreter", "none"
    return (("tconv", __version__), ("triton", triton.__version__), ("device", name), ("capability", capability))


def cache_path(device: torch.device) -> str:
    return os.path.join(cache_dir(), _file_name(device.type, device.index if device.type == "cuda" else None))


@functools.cache
def _file_name(device_type: str, index: int | None) -> str:
    """Computed once per device: cache_path runs on every launch."""
    env = dict(_environment(device_type, index))
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{env['device']}-{env['capability']}-tconv{env['tconv']}-triton{env['triton']}")
    return f"tuned-{slug}.json"


def layout_of(tensor: torch.Tensor) -> str:
    """'channels_last' for a channels-last (not also plain-contiguous) 4-d/5-d tensor, and
    for a 3-d one with channels innermost (conv1d on `x.transpose(1, 2)`)."""
    if tensor.dim() == 3:
        return "channels_last" if tensor.transpose(1, 2).is_contiguous() and not tensor.is_contiguous() else "contiguous"
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    layout = formats.get(tensor.dim())
    if layout is not None and tensor.is_contiguous(memory_format=layout) and not tensor.is_contiguous():
        return "channels_last"
    return "contiguous"


def entry_key(kernel: str, spec: ConvSpec, dtype: torch.dtype, layout: str) -> str:
    """The problem a tuned config is for, readable in the JSON file."""
    join = lambda values: "x".join(map(str, values))
    return (
        f"{kernel}|{str(dtype).removeprefix('torch.')}|{layout}|{'T' if spec.transposed else 'F'}{spec.dims}d"
        f"|n{spec.batch}|c{spec.in_channels}|k{spec.out_channels}|g{spec.groups}|in{join(spec.in_size)}"
        f"|kernel{join(spec.kernel_size)}|out{join(spec.out_size)}|s{join(spec.stride)}|p{join(spec.pad_before)}"
        f"-{join(spec.pad_after)}|d{join(spec.dilation)}|{spec.padding_mode}"
    )


def warn_once(path: str, message: str) -> None:
    if path not in _warned:
        _warned.add(path)
        warnings.warn(message, UserWarning, stacklevel=3)


def _read(path: str, env: dict) -> dict:
    """Entries of a valid file for `env`; {} (with a warning) for a corrupt or stale one."""
    try:
        with open(path) as file:
            data = json.load(file)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        warn_once(path, f"tconv: ignoring unreadable tuned-config cache {path} ({error})")
        return {}
    header = {key: data.get(key) for key in env} if isinstance(data, dict) else None
    if header != env or data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
        warn_once(path, f"tconv: ignoring stale tuned-config cache {path} (written for {header}, this is {env})")
        return {}
    return data["entries"]


def entries(device: torch.device) -> dict:
    """Every tuned entry for this device's environment (read once per process)."""
    path = cache_path(device)
    with _lock:
        if path not in _loaded:
            _loaded[path] = _read(path, environment(device))
        return _loaded[path]


@contextlib.contextmanager
def _file_lock(path: str):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def store(device: torch.device, new_entries: dict[str, dict]) -> str:
    """Merge entries ({key: config dict + measurements}) into the cache file atomically."""
    path = cache_path(device)
    env = environment(device)
    with _lock, _file_lock(path):
        merged = _read(path, env)
        merged.update(new_entries)
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tuned-", suffix=".tmp")
        try:
            with os.fdopen(handle, "w") as file:
                json.dump({"format": FORMAT, **env, "entries": merged}, file, indent=1, sort_keys=True)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        _loaded[path] = merged
        _bump()
    return path


def _bump() -> None:
    global generation
    generation += 1


def forget() -> None:
    """Drop what this process has read (tests; a tuner that wrote from elsewhere)."""
    with _lock:
        _bump()
        _loaded.clear()
        _warned.clear()
        _environment.cache_clear()
        _file_name.cache_clear()


def config_from_entry(entry: dict) -> KernelConfig:
    fields = KernelConfig.__dataclass_fields__
    return KernelConfig(**{name: entry[name] for name in fields if name in entry})
