"""The library's own commands, apart from the demo.

``actorbus stats``, ``dlq``, ``topology``, ``asyncapi``, ``top``, ``bench``,
``queue`` and ``stop``: each module exposes ``add_parser(subparsers)`` and the
command's function (a coroutine, or a plain function for ``asyncapi``);
``actorbus.cli`` registers them.
"""
