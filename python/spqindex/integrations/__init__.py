"""Adapters that put spqindex inside retrieval frameworks (each an optional extra)."""
