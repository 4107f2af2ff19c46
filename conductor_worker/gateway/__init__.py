"""The agent gateway: the gRPC server agents talk to, their channel into Temporal, and their job logs."""
