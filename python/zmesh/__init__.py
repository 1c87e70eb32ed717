"""zmesh: Python client of the zmesh RPC fabric.

``zmesh.client`` (re-exported here) is the synchronous, green-aware API: ``Transport``,
``Target``, ``Inbox``, ``wait`` and the exceptions ``Error``, ``Timeout``, ``NotFound``,
``Unavailable``, ``InvalidArgument``. ``zmesh._zmesh`` is the non-blocking binding to the C++
library libzmesh underneath (see docs/python.md).
"""

from zmesh.client import (  # noqa: F401 (re-exports)
    DEFAULT_EXCHANGE,
    DEFAULT_IPC_DIR,
    Error,
    Inbox,
    InvalidArgument,
    NotFound,
    Target,
    Timeout,
    Transport,
    Unavailable,
    wait,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_EXCHANGE",
    "DEFAULT_IPC_DIR",
    "Error",
    "Inbox",
    "InvalidArgument",
    "NotFound",
    "Target",
    "Timeout",
    "Transport",
    "Unavailable",
    "wait",
]
