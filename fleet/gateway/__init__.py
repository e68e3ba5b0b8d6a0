"""`fleet gateway`: the fleet's long-running front door (see server.py)."""
