"""``picard-ad describe``: a method's networks, with parameter counts and FLOPs (PICARD's per completion)."""

from __future__ import annotations

from pathlib import Path

import click

from picard_ad.cli.options import MethodCommand, given, peek_option

DEFAULT_METHOD = "picard"


def _positional_run(args: list[str]) -> str | None:
    """The RUN_DIR argument among raw arguments: the first that is not an option or an option's value."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = "=" not in arg and arg not in ("-h", "--help")
        else:
            return arg
    return None


def _method_and_base(run_dir: str | Path | None, method: str | None):
    """(method class, training config before flags, where it comes from): the run's, or the method's default
    preset."""
    from picard_ad.config import from_dict
    from picard_ad.methods import method_class
    from picard_ad.methods.base import read_method_record

    if run_dir is not None:
        name, train, _ = read_method_record(Path(run_dir))
        cls = method_class(name)
        return cls, from_dict(cls.train_config_class, train, where=f"{run_dir}: train"), str(run_dir)
    cls = method_class(method or DEFAULT_METHOD)
    return cls, cls.preset(), f"the {cls.name} defaults"


def _callback(run_dir: Path | None, method: str | None, **flags) -> None:
    from picard_ad.training.config import resolve_config

    cls, base, source = _method_and_base(run_dir, method)
    overrides = given(flags, type(base))
    config = resolve_config(base, None, overrides)
    click.echo(f"Method {cls.name}; settings from {source}" + (" and flags" if overrides else ""))
    click.echo("\n".join(cls.describe_architecture(config)))


command = MethodCommand(
    "describe",
    params=[
        click.Argument(["run_dir"], required=False, type=click.Path(file_okay=False, path_type=Path)),
        click.Option(["--method"], help=f"Method whose networks to describe, without RUN_DIR [{DEFAULT_METHOD}]."),
    ],
    callback=_callback,
    settings_of=lambda args: _method_and_base(_positional_run(args), peek_option(args, "--method"))[1],
    help="""Print a method's networks with parameter counts per stage and FLOPs (PICARD's per completion).

    With RUN_DIR, the run's training config (its method.json or checkpoint) is described; training-config flags
    (e.g. --cnum, --patch-size) override it. Without, the method's default preset.
    """,
)
