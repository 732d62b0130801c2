"""The document import a run (or a plan of shards) uploads into: created from the config, or the
one named (by the config, the journal or the plan) checked against it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline.client.api import ApiClient
from pipeline.config import ImportSettings
from pipeline.errors import ConfigError


async def ensure_import(client: ApiClient, imp_cfg: ImportSettings, known: str | None, run_id: str) -> dict[str, Any]:
    """The import ``known`` (its document and mime types must be the config's: ``ConfigError``
    naming the key otherwise), or a new one named from ``import.name`` with ``run_id``."""
    if known:
        imp: dict[str, Any] = await client.get_import(imp_cfg.datamart_id, known)
        for key in ("document_type", "mime_type"):
            if imp.get(key) != getattr(imp_cfg, key):
                raise ConfigError(
                    f"import.{key}",
                    f"document import {known} has {key} {imp.get(key)}, the config says {getattr(imp_cfg, key)}",
                )
        return imp
    name = imp_cfg.name.format(date=datetime.now(UTC).date().isoformat(), run_id=run_id)
    created: dict[str, Any] = await client.create_import(
        imp_cfg.datamart_id,
        document_type=imp_cfg.document_type,
        mime_type=imp_cfg.mime_type,
        encoding=imp_cfg.encoding,
        name=name,
        priority=imp_cfg.priority,
    )
    return created
