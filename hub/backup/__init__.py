"""Hot, incremental, signed backups of the archive, and their restore and verification.

The store is content-addressed and immutable, so a backup copies only the blobs its target
lacks. A run takes a consistent snapshot of the index, copies the blobs that snapshot names,
then writes the snapshot, the blob list and, last of all, a signed manifest chained to the one
before it: a run killed at any point leaves no manifest, and the next run copies only what is
still missing.
"""
