"""Model registry: registered models, immutable numbered versions and movable aliases.

A request's ``model`` resolves ``name`` (alias ``production`` if set, else the latest version),
``name@alias`` or ``name:version``.
"""

from modelyard.registry.records import ModelInfo, Prices, ResolvedModel, VersionInfo, parse_ref, resolve_in
from modelyard.registry.service import Registry

__all__ = ["ModelInfo", "Prices", "Registry", "ResolvedModel", "VersionInfo", "parse_ref", "resolve_in"]
