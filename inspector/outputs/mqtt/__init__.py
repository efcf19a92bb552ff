"""MQTT link of a station: durable outbox, publisher, recipe commands (contract v1).

`MqttSink` (inspector.outputs.mqtt.sink) is the entry point; see docs/DESIGN.md for
the topics.
"""
