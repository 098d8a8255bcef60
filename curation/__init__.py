"""Ray pipelines that turn raw videos into WebDataset shards (see the curation issue)."""
