"""Result sinks: where finished results go (JSONL file, console, MQTT outbox)."""
