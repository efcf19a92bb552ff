"""Sparkplug B 3.0 mode of the MQTT link (mqtt.mode: sparkplug)."""
