"""Subcommands of ``combine``. Each module defines ``register(subparsers, common)``, which adds
its parser with ``set_defaults(run=run)``, and ``run(args) -> int | None``."""

from . import demo, evaluate, inpaint, masks, simulate, train

COMMANDS = (simulate, masks, train, inpaint, evaluate, demo)
