"""``combine inpaint``: not yet implemented (placeholder owned by its issue)."""

from ..errors import InputError


def register(subparsers, common):
    p = subparsers.add_parser("inpaint", parents=[common], help="(inpaint: not yet implemented)")
    p.set_defaults(run=run)


def run(args):
    raise InputError("inpaint: not implemented yet")
