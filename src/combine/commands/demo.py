"""``combine demo``: not yet implemented (placeholder owned by its issue)."""

from ..errors import InputError


def register(subparsers, common):
    p = subparsers.add_parser("demo", parents=[common], help="(demo: not yet implemented)")
    p.set_defaults(run=run)


def run(args):
    raise InputError("demo: not implemented yet")
