"""zmesh: Python client of the zmesh RPC fabric.

``zmesh.client`` (re-exported here) is the synchronous, green-aware API: ``Transport``,
``Target``, ``Inbox``, ``wait`` and the exceptions ``Error``, ``Timeout``, ``NotFound``,
``Unavailable``, ``InvalidArgument``. ``zmesh._zmesh`` is the non-blocking binding to the C++
library libzmesh underneath (see docs/python.md).
"""

from zmesh.client import *  # noqa: F401,F403 (re-exports: the names in client.__all__)
from zmesh.client import __all__  # noqa: F401

__version__ = "0.1.0"
