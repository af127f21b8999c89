"""``python -m invscale`` and the ``invscale`` command: the command line, with Ctrl-C during its
start-up (importing torch and transformers takes seconds) one line instead of a traceback."""

import signal
import sys


def main() -> int:
    """Run the command line. An interrupt while it starts is held until the imports are done (some
    libraries' import-time ``except:`` clauses would swallow it) and then ends the run: exit 130,
    one line."""
    interrupts = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: interrupts.append(number))
    try:
        from invscale.cli import app
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupts:
        print("error: interrupted while starting; nothing was done", file=sys.stderr)
        return 130
    return app(prog_name="invscale")


if __name__ == "__main__":
    sys.exit(main())
