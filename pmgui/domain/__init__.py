"""Pure data and math: no Qt, no I/O, no asyncio."""
