"""The service catalog: services, models, input schemas, prices and backends."""

from gpubridge.catalog.catalog import Catalog, Quote
from gpubridge.catalog.loader import load_catalog_file
from gpubridge.catalog.models import ModelSpec, Price, Service

__all__ = ["Catalog", "ModelSpec", "Price", "Quote", "Service", "load_catalog_file"]
