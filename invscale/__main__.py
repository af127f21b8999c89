"""``python -m invscale``: the command line, as torchrun starts it (``torchrun ... -m invscale score ...``)."""

from invscale.cli import app

app(prog_name="invscale")
