"""The versioned schema of a shard sample, shared by curation and training (see the data-specs issue)."""
