"""One way to load a settings model and explain what is wrong with it.

Every program of ours reads its configuration the same way: an explicit value (a command-line option,
a cdk context key) beats the environment, which beats the default; a bad value stops the program at
start with one line per problem naming the setting, where it is set, what was expected and what was
given, and a ``fix:`` line. ``gpu_recovery/settings.py``, ``healthcheck/config.py`` and
``infra/config.py`` all load through here.

Light on purpose (pydantic and our error type only): the health-check agent imports it on a GPU node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import AliasChoices, BaseModel, ValidationError

from consumers.core.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class FieldHelp:
    """How a user sets one field, and how to fix it, in their words."""

    name: str
    where: str  # e.g. "environment variable GPU_RECOVERY_TTL_DAYS", "--level or environment variable ..."
    fix: str | None = None


# Given the name a validation error points at (a field, or the alias it came in under): its help.
Describe = Callable[[str], FieldHelp | None]


def environment_variables(model: type[BaseModel], field: str) -> list[str]:
    """The environment variables that set a field (its upper-case aliases), most specific first."""
    alias = model.model_fields[field].validation_alias
    choices = alias.choices if isinstance(alias, AliasChoices) else []
    return [str(choice) for choice in choices if isinstance(choice, str) and choice.isupper()]


def field_for(model: type[BaseModel], name: str) -> str | None:
    """The field a validation error's location names (pydantic reports the alias it read)."""
    if name in model.model_fields:
        return name
    return next((field for field in model.model_fields if name in environment_variables(model, field)), None)


def environment_help(model: type[BaseModel], *, options: bool = False) -> Describe:
    """Help for a model read from the environment; ``options``: each field is also a ``--flag``."""

    def describe(name: str) -> FieldHelp | None:
        field = field_for(model, name)
        if field is None:
            return None
        variables = environment_variables(model, field)
        flag = [f"--{field.replace('_', '-')}"] if options else []
        where = " or ".join([*flag, *(f"environment variable {variable}" for variable in variables[:1]),
                             *variables[1:]])
        return FieldHelp(name=field, where=where, fix=_fix(flag, variables))

    return describe


def _fix(flag: list[str], variables: list[str]) -> str | None:
    if not variables and not flag:
        return None
    ways = [f"pass {flag[0]} VALUE"] if flag else []
    ways += [f"set {variables[0]} to a valid value"] if variables else []
    return f"{' or '.join(ways)}, or leave it unset for the default."


def load_model(model: type[Model], overrides: Mapping[str, Any], *, title: str,
               describe: Describe | None = None, hidden: frozenset[str] = frozenset()) -> Model:
    """Build ``model`` from explicit values (None means "not given"), then its own sources, then defaults.

    Raises ConfigError with one explained line per problem.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return model(**given)
    except ValidationError as exc:
        raise ConfigError(explain(exc, title=title, describe=describe or environment_help(model),
                                  hidden=hidden)) from None


def explain(exc: ValidationError, *, title: str, describe: Describe, hidden: frozenset[str] = frozenset()) -> str:
    """The errors of one validation, one setting per line, each with its fix; ``hidden``: fields whose
    value is a secret, never shown."""
    lines = [f"{title}:"]
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        if not name:  # a rule across settings: its message names them and the fix
            lines.append(f"  {_message(error)}")
            continue
        help_ = describe(name)
        label = help_.name if help_ else name
        where = f" ({help_.where})" if help_ and help_.where else ""
        shown = "" if label in hidden or name in hidden else _shown(error)
        lines.append(f"  setting {label}{where}: {_message(error)}{shown}.")
        if help_ and help_.fix:
            lines.append(f"    fix: {help_.fix}")
    return "\n".join(lines)


def _message(error: Mapping[str, Any]) -> str:
    # A validator's own ValueError reads "Value error, <our text>": keep only our text.
    return str(error["msg"]).removeprefix("Value error, ")


def _shown(error: Mapping[str, Any]) -> str:
    got = error.get("input")
    return "" if isinstance(got, dict) else f"; got {got!r}"


__all__ = ["Describe", "FieldHelp", "environment_help", "environment_variables", "explain", "field_for", "load_model"]
