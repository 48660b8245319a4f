"""``combine train``: not yet implemented (placeholder owned by its issue)."""

from ..errors import InputError


def register(subparsers, common):
    p = subparsers.add_parser("train", parents=[common], help="(train: not yet implemented)")
    p.set_defaults(run=run)


def run(args):
    raise InputError("train: not implemented yet")
