"""demo_vault: the sample upgrade target (C sources in v1/ and v2/, client in client.py)."""
