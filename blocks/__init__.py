"""Prefect Block types: the configuration a runbook loads by name."""

from blocks.cluster import SolanaCluster
from blocks.database import RecordsDatabase
from blocks.keypair import SolanaKeypair
from blocks.multisig import MultisigPolicy
from blocks.slack import SlackChannel

__all__ = ["MultisigPolicy", "RecordsDatabase", "SlackChannel", "SolanaCluster", "SolanaKeypair"]
