"""upgrade_manager: on-chain M-of-N sign-off and timelock for upgrades (C, client, IDL)."""
