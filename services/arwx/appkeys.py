"""Typed keys for what the aiohttp app and its requests carry."""

from __future__ import annotations

from aiohttp import web

from arwx.accounts.service import Accounts, LoginSession
from arwx.blobs.base import BlobStore
from arwx.catalog import Catalog
from arwx.config import Settings
from arwx.ingest.service import IngestService
from arwx.log.base import EventLog
from arwx.runs import Runs
from arwx.sdkdist.wheel import Wheel
from arwx.store.base import Store
from arwx.tenancy import ApiKey, Tenancy

CONFIG = web.AppKey("config", Settings)
STORE = web.AppKey("store", Store)
LOG = web.AppKey("log", EventLog)
RUNS = web.AppKey("runs", Runs)
TENANCY = web.AppKey("tenancy", Tenancy)
BLOBS = web.AppKey("blobs", BlobStore)
CATALOG = web.AppKey("catalog", Catalog)
SDK_WHEEL = web.AppKey("sdk_wheel", Wheel)
API_KEY = web.RequestKey("api_key", ApiKey)
INGEST = web.AppKey("ingest", IngestService)
ACCOUNTS = web.AppKey("accounts", Accounts)
#: The login session of a request authenticated by its cookie (absent for an API key).
SESSION = web.RequestKey("session", LoginSession)
