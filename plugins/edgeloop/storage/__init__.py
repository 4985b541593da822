"""Where blobs live: a content-addressed store, local or on S3."""
