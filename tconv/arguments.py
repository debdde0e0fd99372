"""Command-line argument types and the parser every `tconv` subcommand uses.

Every expected failure (a bad value, an unimportable model, a missing file, no GPU) ends
in one line on stderr that names the argument and what it accepts, with exit status 2;
a traceback means a bug.
"""

from __future__ import annotations

import argparse
import sys

import torch

from .descriptors.base import LAYOUTS

#: Names a user may give a dtype by (torch's own names, and common short ones).
DTYPE_NAMES = {
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
}
PASSES = ("fprop", "dgrad", "wgrad")


class UsageError(Exception):
    """An expected failure of a command: printed as one line, exit status 2."""


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help, except a `--no-x` switch's (its "default: True" reads as on)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._StoreFalseAction):
            return action.help or ""
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse with every default shown in --help and errors on one line (no usage block)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _items(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or not all(items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, got {text!r}")
    return items


def dtype_list(text: str) -> list[torch.dtype]:
    """'float16,bf16' -> [torch.float16, torch.bfloat16]."""
    dtypes = []
    for item in _items(text, "dtypes"):
        dtype = DTYPE_NAMES.get(item.lower().removeprefix("torch."))
        if dtype is None:
            raise argparse.ArgumentTypeError(
                f"unknown dtype {item!r}; accepted: float16 (fp16, half), bfloat16 (bf16), float32 (fp32, float), "
                "float64 (fp64, double)")
        dtypes.append(dtype)
    return list(dict.fromkeys(dtypes))


def _choices(text: str, accepted: tuple[str, ...], what: str) -> list[str]:
    items = _items(text, what)
    unknown = [item for item in items if item not in accepted]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(map(repr, unknown))}; accepted: {', '.join(accepted)}")
    return list(dict.fromkeys(items))


def pass_list(text: str) -> list[str]:
    """'fprop,wgrad' -> the passes, each one of fprop, dgrad, wgrad."""
    return _choices(text, PASSES, "pass")


def layout_list(text: str) -> list[str]:
    return _choices(text, LAYOUTS, "layout")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def int_list(text: str) -> list[int]:
    """'32,3,224,224' -> [32, 3, 224, 224] (positive integers)."""
    try:
        values = [int(item) for item in _items(text, "integers")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def arch_list(text: str) -> list[int]:
    """'80,90' -> [80, 90]; '' -> [] (no ahead-of-time compile)."""
    if not text.strip():
        return []
    values = []
    for item in _items(text, "archs"):
        if item.removeprefix("sm_") not in ("80", "90"):
            raise argparse.ArgumentTypeError(f"unknown arch {item!r}; accepted: 80, 90 (or '' for none)")
        values.append(int(item.removeprefix("sm_")))
    return list(dict.fromkeys(values))
