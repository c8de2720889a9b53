"""Argument types of the stages' flags, and flags derived from a settings dataclass."""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing


def boolean(text: str) -> bool:
    """true/false (also yes/no, 1/0), as the workflow writes the config's booleans."""
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def int_or_auto(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, got {text!r}") from None


def finite(text: str) -> float:
    """A float flag's value; nan and inf are refused (they would pass every bound and poison training)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _kind(hint):
    """The argparse type of a field's type hint."""
    return {float: finite, bool: boolean}.get(hint, hint)


def add_settings(parser: argparse.ArgumentParser, settings: type) -> None:
    """One flag per field of a settings dataclass (--snake-case of its name), its default the field's.

    The field's metadata gives the help text and the choices; tuples take several values (none for
    an empty one); `int | str` takes a number or "auto".
    """
    hints = typing.get_type_hints(settings)
    for field in dataclasses.fields(settings):
        flag = "--" + field.name.replace("_", "-")
        kind, meta = hints[field.name], field.metadata
        options = {"default": field.default, "help": f"{meta['help']} (default: %(default)s)"}
        if meta.get("choices"):
            options["choices"] = meta["choices"]
        if kind == int | str:
            parser.add_argument(flag, type=int_or_auto, **options)
        elif typing.get_origin(kind) is tuple:
            parser.add_argument(flag, type=_kind(typing.get_args(kind)[0]), nargs="*", **options)
        else:
            parser.add_argument(flag, type=_kind(kind), **options)


def settings_from(args: argparse.Namespace, settings: type):
    """The settings dataclass from the parsed flags that `add_settings` declared."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(settings)}
    return settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
