"""The edge of the exchange: the WebSocket gateway, its Python client, API
keys, and the ``bulkex`` command line (``api.cli``)."""

from matching._native import native_path

__path__ = native_path(__name__, __path__)  # the compiled build, when it matches these sources

from api._client import Client, LocalBook, RequestError
from api._errors import ErrorCode
from api._handlers import HANDLERS
from api._keys import KeyStore, create_key, list_keys, revoke_key
from api._limits import GatewayLimits
from api._protocol import REQUESTS
from api._server import GatewayServer, run_server, serve

__all__ = [
    "HANDLERS",
    "REQUESTS",
    "Client",
    "ErrorCode",
    "GatewayLimits",
    "GatewayServer",
    "KeyStore",
    "LocalBook",
    "RequestError",
    "create_key",
    "list_keys",
    "revoke_key",
    "run_server",
    "serve",
]
