"""Getting data in: S3 / GCS sources, the incremental sync, labeling."""
