"""Squads v4 (``SQDS4ep65T869zMMBKyuUq6aD6EgTu8psMjkvj52pCf``): its wire format in Python.

``client`` holds the PDAs, the instruction builders and the account decoders; each is
checked byte for byte against the official SDK ``@sqds/multisig`` by
tests/programs/test_squads_wire.py.
"""
