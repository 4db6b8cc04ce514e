"""projectors: PostgreSQL changes captured by Debezium, projected into read stores."""

__version__ = "0.1.0"
