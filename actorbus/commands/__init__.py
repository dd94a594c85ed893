"""The library's own commands (``actorbus stats``, ``dlq``, ``topology``,
``asyncapi``, ``top``), apart from the demo.

Each module exposes ``add_parser(subparsers)`` and the command's coroutine;
``actorbus.cli`` registers them.
"""
