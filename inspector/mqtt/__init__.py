"""MQTT link of a station: durable outbox, publisher, recipe commands (contract v1).

`MqttSink` (inspector.mqtt.sink) is the entry point; see DESIGN.md for the topics.
"""
