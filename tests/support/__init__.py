"""Test support shared by the fault suite and the RabbitMQ tests.

- :mod:`support.rabbit_node`: a private RabbitMQ node to stop, restart and kill.
- :mod:`support.tcp_proxy`: an asyncio TCP proxy that can cut or blackhole a link.
- :mod:`support.checker`: counts sent, confirmed, received, lost and duplicated messages.
- :mod:`support.terminal`: a real terminal (tmux) to run a command in and read its screen.

Import as ``from support.rabbit_node import RabbitNode`` (``tests/`` is on
``sys.path`` under pytest's default import mode, as the directory of the root
``conftest.py``).
"""
