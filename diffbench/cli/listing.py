"""``python -m diffbench list``: each case with its tags and input shapes (imports no framework)."""

from __future__ import annotations

import argparse
from typing import Any

from ..selection import load_selected
from .options import EXIT_OK, add_case_options, split


def cmd_list(args: argparse.Namespace) -> int:
    """Print each case with its tags and input shapes."""
    for one in load_selected(args.cases, args.k, split(args.tags)):
        shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in one.inputs.items())
        flag = f"  PROBLEM: {one.problem}" if one.problem else ""
        native = " [+tensorflow]" if one.native else ""
        print(f"{one.name}({shapes}){native}  tags: {', '.join(one.tags) or '-'}{flag}")
    return EXIT_OK


def add_command(sub: Any) -> None:
    """Register ``list``."""
    lst = sub.add_parser("list", help="print each case with its tags and input shapes")
    add_case_options(lst)
    lst.set_defaults(func=cmd_list)
