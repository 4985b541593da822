"""Transformation blocks as pipeline steps over the catalog (plain functions).

``blocks`` finds a step's block folder and hashes it; ``mounts`` makes ``s3://``
parameter values local folders; ``plan`` selects the step's units (an item, a file of an
item, or the one standalone run) with the filter language, leaves out what the
incremental ledger says is done, and stores the run's plan and its batches once (the first
of the step's slots to arrive makes it, the others read it); ``batch`` runs a slot: its
batch of the plan (materialize the inputs from the blob store, ``run_block``, ingest the
outputs, apply ``ei-metadata.json``, record the outcome per unit); ``outputs`` writes
outputs into the catalog, content-addressed.
"""

from __future__ import annotations
