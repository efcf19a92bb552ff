"""Inspector: edge inspection service for factory lines.

Data flow (one module or subpackage per stage): sources -> framepool -> preprocess
-> detector -> decision -> results -> sinks (jsonl, console, mqtt outbox), driven by
pipeline and wired by service. See README.md and DESIGN.md for the contracts.
"""

__version__ = "0.1.0"
