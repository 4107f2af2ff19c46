"""Process assembly: the Temporal client and workers, the servers started together, drain, metrics wiring and tracing."""
