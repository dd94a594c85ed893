"""The trading system, as actors on actorbus: the runtime's first users and best example.

One module per subsystem (``market_data``, ``strategy``, ``risk``, ``execution``,
``exchange``, ``position``), each an :class:`actorbus.Actor` written against the
public API of ``actorbus`` only; ``system`` wires them into the default
supervisor tree, ``runner`` runs it the way ``actorbus run`` does, and
``audit`` checks the book a run leaves behind.

Start with :class:`TradingSystem` and :func:`run_trading_system`::

    system = TradingSystem(TradingConfig(seed=1))
    async with AsyncMessageBus() as bus:
        report = await run_trading_system(bus, system, duration=5)
"""

from .audit import audit as audit
from .base import Chaos as Chaos
from .base import Environment as Environment
from .base import TradingActor as TradingActor
from .runner import run_trading_system as run_trading_system
from .schemas import register_schemas as register_schemas
from .schemas import unregister_schemas as unregister_schemas
from .system import ACTOR_NAMES as ACTOR_NAMES
from .system import TradingConfig as TradingConfig
from .system import TradingSystem as TradingSystem

__all__ = [
    "ACTOR_NAMES",
    "Chaos",
    "Environment",
    "TradingActor",
    "TradingConfig",
    "TradingSystem",
    "audit",
    "register_schemas",
    "run_trading_system",
    "unregister_schemas",
]
