"""MindProject: telemetry upload service for IoT fleets."""

__version__ = "0.1.0"
