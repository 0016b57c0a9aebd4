"""The edge of the exchange: the command line (and, later, the WebSocket gateway and file intake)."""

__all__: list[str] = []
