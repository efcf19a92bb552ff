"""Outputs: result sinks (JSONL, console, MQTT with its durable outbox), the archive,
overlays and the JSON Schemas of every payload.
"""
