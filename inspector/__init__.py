"""Inspector: edge inspection service for factory lines.

Data flow, one package per stage: acquisition -> core.frames (pool) -> preprocess ->
inference -> decision -> outputs (sinks, MQTT outbox, archive), driven by runtime.pipeline
and wired by runtime.service; config and core underneath, cli on top. docs/DESIGN.md has
the module map, the layers (checked by lint-imports) and the contracts.
"""

__version__ = "0.1.0"
