"""Per-job agent tokens: minted by the launchers, checked by the gateways (below both)."""
