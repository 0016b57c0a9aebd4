"""Benchmarks: programs that print their figures and, as the last line, one JSON object.

Run them through the command line: ``bulkex bench journal``, ``bulkex bench matching``, ...
"""

__all__: list[str] = []
