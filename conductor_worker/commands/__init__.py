"""The `conductor` command line: serve, dev, simulate, dlq, logs, schedule, doctor and the rest."""
