"""The action server: Rasa SDK's, with our logging, on loopback unless told otherwise.

``python -m bot.action_server --actions actions --port 5055`` takes Rasa SDK's arguments.
Rasa SDK 3.6 has no option for the address: it listens where ``SANIC_HOST`` says, and on every
address without it. It answers anyone who reaches it, with no authentication, so here
``SANIC_HOST`` defaults to ``127.0.0.1``.
"""

from __future__ import annotations

import os

from bot import logs

DEFAULT_HOST = "127.0.0.1"


def main(argv: list[str] | None = None) -> None:
    logs.configure("actions")
    os.environ.setdefault("SANIC_HOST", DEFAULT_HOST)
    from rasa_sdk.__main__ import main_from_args
    from rasa_sdk.endpoint import create_argument_parser

    main_from_args(create_argument_parser().parse_args(argv))


if __name__ == "__main__":
    main()
