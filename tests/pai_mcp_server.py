"""A small MCP server over stdio for tests/test_pydantic_ai.py: `add` records each call in
``$PAI_TEST_DIR/calls``, so a test can count how often it really ran."""

from __future__ import annotations

import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer

server = MCPServer("calc")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    with (Path(os.environ["PAI_TEST_DIR"]) / "calls").open("a") as f:
        f.write(f"add {a} {b}\n")
    return a + b


if __name__ == "__main__":
    server.run("stdio")
