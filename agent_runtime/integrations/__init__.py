"""Adapters that make agent frameworks' runs durable steps of an agent_runtime workflow.

Each lives in its own subpackage and imports its framework only when imported itself, so the
runtime in a tenant stays as small as it is without them.
"""
