"""Task-queue names."""

# The shared queue every conductor process polls.
CONDUCTOR_TASK_QUEUE = "agent-conductor"
