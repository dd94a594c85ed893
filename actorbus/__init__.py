"""actorbus: supervised actors and a typed message bus, in memory or over RabbitMQ.

The names a user needs are here; everything else lives in modules nobody has to
import. Start with :class:`AsyncMessageBus` (or :class:`MessageBus` from sync
code), :class:`Actor` with :func:`handles`, and :class:`Supervisor`.

Concurrency: actorbus runs on asyncio (uvloop when installed, see ``_loops``),
one event loop per bus. Tasks, futures, events, sleeps and timeouts are
asyncio's. anyio is used where it gives structure asyncio lacks: the task group
and cancel scopes that host actor trees (``hosting``), ``move_on_after`` for
cleanups that must be bounded and shielded at once, ``TaskStatus`` as the
readiness handshake of trees and actors, and the blocking portal and worker
threads of the sync faces. No task is left unowned: each belongs to a tree, a
cell, a ``Background`` set or a broker part that cancels it when it closes.
"""

from .actor import Actor as Actor
from .actor import ActorState as ActorState
from .actor import RetryPolicy as RetryPolicy
from .actor import handles as handles
from .brokers.base import DeadLetter as DeadLetter
from .bus import AsyncMessageBus as AsyncMessageBus
from .children import ChildSpec as ChildSpec
from .children import Restart as Restart
from .clock import REAL_CLOCK as REAL_CLOCK
from .clock import Clock as Clock
from .codec import Codec as Codec
from .errors import ActorbusError as ActorbusError
from .errors import ActorStartError as ActorStartError
from .errors import AskFailed as AskFailed
from .errors import AskTimeout as AskTimeout
from .errors import BrokerRefused as BrokerRefused
from .errors import BrokerUnavailable as BrokerUnavailable
from .errors import BusClosed as BusClosed
from .errors import ConfigurationError as ConfigurationError
from .errors import DecodeError as DecodeError
from .errors import SchemaError as SchemaError
from .errors import TopologyMissing as TopologyMissing
from .errors import UnknownMessageType as UnknownMessageType
from .errors import Unroutable as Unroutable
from .mailbox import Conflate as Conflate
from .messages import Envelope as Envelope
from .messages import MessageTypes as MessageTypes
from .messages import register_message_type as register_message_type
from .queues import QueueOptions as QueueOptions
from .shutdown_report import ShutdownReport as ShutdownReport
from .supervisor import Strategy as Strategy
from .supervisor import Supervisor as Supervisor
from .sync_bus import MessageBus as MessageBus

__all__ = [
    "REAL_CLOCK",
    "Actor",
    "ActorStartError",
    "ActorState",
    "ActorbusError",
    "AskFailed",
    "AskTimeout",
    "AsyncMessageBus",
    "BrokerRefused",
    "BrokerUnavailable",
    "BusClosed",
    "ChildSpec",
    "Clock",
    "Codec",
    "ConfigurationError",
    "Conflate",
    "DeadLetter",
    "DecodeError",
    "Envelope",
    "MessageBus",
    "MessageTypes",
    "QueueOptions",
    "Restart",
    "RetryPolicy",
    "SchemaError",
    "ShutdownReport",
    "Strategy",
    "Supervisor",
    "TopologyMissing",
    "UnknownMessageType",
    "Unroutable",
    "handles",
    "register_message_type",
]
__version__ = "0.1.0"
