"""``combine masks``: not yet implemented (placeholder owned by its issue)."""

from ..errors import InputError


def register(subparsers, common):
    p = subparsers.add_parser("masks", parents=[common], help="(masks: not yet implemented)")
    p.set_defaults(run=run)


def run(args):
    raise InputError("masks: not implemented yet")
