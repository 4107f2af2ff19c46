"""What the conductor keeps on disk for its jobs, shared by the gateway and the activities (below both)."""
