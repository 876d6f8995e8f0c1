"""The server side of a run: the round loop, its hooks and what it writes (the ServerApp runs the loop)."""
