"""The import step's operators: verify the source, sync it, label what came in.

They carry their resolved arguments (bucket, prefix, connection, project, ...), so
the serialized DAG holds the config and the UI shows the rendered values; nothing
re-reads the config file at run time. Heavy libraries (boto3, SQLAlchemy work)
are imported inside ``execute`` and the hook is created lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import Context

from edgeloop.ingest.source import DEFAULT_FILE_TYPES, SourceSpec
from edgeloop.operators.base import PipelineTaskOperator

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from edgeloop.ingest.source import S3Source


def _prefix(prefix: str | None) -> str:
    """A prefix as the source takes it: empty or ending with '/' (also after templating)."""
    prefix = (prefix or "").lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


class SourceOperator(PipelineTaskOperator):
    """Base of the tasks that read a bucket: the source's arguments and its lazy I/O."""

    template_fields: Sequence[str] = (
        "bucket",
        "prefix",
        "project",
        "conn_id",
        "endpoint",
        "region",
    )

    def __init__(
        self,
        *,
        scheme: str = "s3",
        bucket: str,
        prefix: str = "",
        project: str,
        conn_id: str = "aws_default",
        endpoint: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key_encrypted: str | None = None,
        file_types: Sequence[str] = DEFAULT_FILE_TYPES,
        concurrency: int = 16,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.scheme = scheme
        self.bucket = bucket
        self.prefix = prefix
        self.project = project
        self.conn_id = conn_id
        self.endpoint = endpoint
        self.region = region
        self.access_key = access_key
        self.secret_key_encrypted = secret_key_encrypted
        self.file_types = tuple(file_types)
        self.concurrency = concurrency

    def spec(self) -> SourceSpec:
        """The source as the (rendered) arguments describe it."""
        return SourceSpec(
            scheme=self.scheme,
            bucket=self.bucket,
            prefix=_prefix(self.prefix),
            conn_id=self.conn_id,
            endpoint=self.endpoint or None,
            region=self.region or None,
            access_key=self.access_key,
            secret_key_encrypted=self.secret_key_encrypted,
            file_types=self.file_types,
            concurrency=self.concurrency,
        )

    @cached_property
    def source(self) -> S3Source:
        """The source's I/O (listing, downloads), created on first use in ``execute``."""
        from edgeloop.ingest.source import S3Source

        return S3Source(self.spec(), file=self.config_file)

    @property
    def hook(self) -> S3Hook:
        return self.source.hook


class VerifySourceOperator(SourceOperator):
    """List one page of the source: fail fast on wrong credentials, bucket or prefix."""

    def execute(self, context: Context) -> dict[str, Any]:
        from edgeloop.ingest.source import verify_source

        self.check_config(context)
        return verify_source(self.spec(), file=self.config_file, source=self.source)


class S3SyncOperator(SourceOperator):
    """Incremental sync of the source into the project's dataset; returns the counts."""

    def __init__(self, *, sync_deletions: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sync_deletions = sync_deletions

    def execute(self, context: Context) -> dict[str, int]:
        from edgeloop.ingest.sync import sync_source

        self.check_config(context)
        return sync_source(
            self.spec(),
            self.project,
            run_id=context["run_id"],
            sync_deletions=self.sync_deletions,
            file=self.config_file,
            source=self.source,
        )


class LabelOperator(PipelineTaskOperator):
    """Label the items the sync brought in or changed and place them in training/testing."""

    template_fields: Sequence[str] = ("bucket", "prefix", "project")

    def __init__(
        self,
        *,
        scheme: str = "s3",
        bucket: str,
        prefix: str = "",
        project: str,
        strategy: str = "infer-from-folder-name",
        category: str = "split",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.scheme = scheme
        self.bucket = bucket
        self.prefix = prefix
        self.project = project
        self.strategy = strategy
        self.category = category

    @property
    def source_uri(self) -> str:
        return f"{self.scheme}://{self.bucket}/{_prefix(self.prefix)}"

    def execute(self, context: Context) -> dict[str, Any]:
        from edgeloop.ingest.label import label_source

        self.check_config(context)
        result = label_source(
            self.source_uri, self.project, strategy=self.strategy, category=self.category
        )
        for warning in result.get("warnings", ()):
            self.log.warning("%s", warning)
        return result
