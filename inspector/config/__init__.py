"""The station's configuration models (station.yaml): camera sources, MQTT, archive, health
and supervision settings. Imports only core.
"""
