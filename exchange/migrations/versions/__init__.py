"""Migration scripts, one per schema version, applied in order."""

__all__: list[str] = []
