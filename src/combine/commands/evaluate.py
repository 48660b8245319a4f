"""``combine evaluate``: not yet implemented (placeholder owned by its issue)."""

from ..errors import InputError


def register(subparsers, common):
    p = subparsers.add_parser("evaluate", parents=[common], help="(evaluate: not yet implemented)")
    p.set_defaults(run=run)


def run(args):
    raise InputError("evaluate: not implemented yet")
