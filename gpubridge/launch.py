"""The ``gpubridge`` command's entry point: the garbage collector stays off while it loads.

Loading the gateway makes some 400,000 objects and next to no garbage, and with the collector
on, it walks them again and again while they are made: about a tenth of a start. The command
turns it back on when its work begins: ``serve`` once it has started (after freezing what the
start made, see ``create_app``), every other command at once.
"""

from __future__ import annotations

import gc


def main() -> int:
    gc.disable()
    try:
        from gpubridge.cli import main as cli_main
    except BaseException:
        gc.enable()
        raise
    return cli_main()
