"""``combine simulate``: not yet implemented (placeholder owned by its issue)."""

from ..errors import InputError


def register(subparsers, common):
    p = subparsers.add_parser("simulate", parents=[common], help="(simulate: not yet implemented)")
    p.set_defaults(run=run)


def run(args):
    raise InputError("simulate: not implemented yet")
