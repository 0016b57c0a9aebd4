"""Benchmarks: programs that print their figures and, as the last line, one JSON object.

Run them through the command line: ``bulkex bench journal``, ``bulkex bench matching``, ...

The reliability runs live here too (``torture``, ``dbfault``, ``conservation``, ``soak``:
``bulkex torture ...``, docs/reliability.md): programs that inject faults and check.
"""

__all__: list[str] = []
