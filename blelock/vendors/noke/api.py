"""The kiosk's Nokē routes (mounted at ``/v1/noke`` by the service, under its bearer token):
a lock's quick clicks issued, listed and revoked, the company's activity, and lock info.

The codes a kiosk issues come in the request body and never go back out: listings show only a
code's length (the kiosk knows the codes it gave out). Every rule of the doc is checked before
the cloud is asked (:mod:`blelock.vendors.noke.quick_clicks`); a broken rule is a 422 naming it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr

from blelock.config import Settings
from blelock.errors import lock_context
from blelock.model import MacAddress, parse_mac
from blelock.vendors.noke.cloud import NokeCloud
from blelock.vendors.noke.models import LockQuickClicks
from blelock.vendors.noke.quick_clicks import PER_LOCK
from blelock.vendors.noke.views import (
    QUICK_CLICK_NOTE,
    activity_rows,
    lock_rows,
    quick_click_rows,
)

__all__ = ["router"]

MacPath = Annotated[str, Path(min_length=1, max_length=64, description="the lock's MAC address")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuickClickIn(_Strict):
    code: SecretStr = Field(description="1 (long press) and 0 (short press), 3-24 of them")
    uses: int = Field(description="1-244, or 255 for unlimited")


class IssueBody(_Strict):
    quick_clicks: list[QuickClickIn] = Field(min_length=1, max_length=PER_LOCK)


class RevokeBody(_Strict):
    codes: list[SecretStr] = Field(min_length=1, max_length=PER_LOCK)


class QuickClickRow(BaseModel):
    lock_id: str
    code: str
    """Its length only: the code itself is never shown."""
    uses: int | str
    state: str


class QuickClicksView(BaseModel):
    lock_id: str
    quick_clicks: list[QuickClickRow]
    note: str = QUICK_CLICK_NOTE


class ActivityRow(BaseModel):
    lock_id: str
    action: str
    from_: str | None = Field(alias="from")
    to: str | None
    recorded: str | None
    tracking_key: str | None

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class ActivityView(BaseModel):
    activity: list[ActivityRow]


class LockRow(BaseModel):
    lock_id: str
    hardware: str | None
    firmware: str | None
    serial: str | None
    internal_battery_mv: int | None
    external_battery_mv: int | None
    status: str | None
    waiting_to_sync: str | None
    """What the lock's next online unlock carries (setup, keys, quick_clicks), if anything."""
    setup_count: int | None


class LockInfoView(BaseModel):
    locks: list[LockRow]


def _view(mac: MacAddress, listing: LockQuickClicks) -> QuickClicksView:
    rows = [QuickClickRow(**row) for row in quick_click_rows([listing])]
    return QuickClicksView(lock_id=mac, quick_clicks=rows)


def router(settings: Settings) -> APIRouter:
    """The routes over the configured Nokē cloud (one client per request: these are office
    actions, seconds apart, not the unlock path)."""
    routes = APIRouter(tags=["noke"])

    @routes.get(
        "/locks/{lock_id}/quick-clicks",
        response_model=QuickClicksView,
        summary="a lock's quick clicks (lengths only), pending and revoked ones too",
    )
    async def list_quick_clicks(lock_id: MacPath) -> QuickClicksView:
        mac = parse_mac(lock_id)
        with lock_context(mac, "list quick clicks"):
            async with NokeCloud.from_settings(settings) as cloud:
                listed = await cloud.quick_clicks([mac])
        return _view(mac, listed[0] if listed else LockQuickClicks(mac=mac))

    @routes.post(
        "/locks/{lock_id}/quick-clicks",
        response_model=QuickClicksView,
        status_code=201,
        summary="issue quick clicks; they reach the lock with its next online unlock",
    )
    async def issue_quick_clicks(lock_id: MacPath, body: IssueBody) -> QuickClicksView:
        mac = parse_mac(lock_id)
        with lock_context(mac, "issue quick clicks"):
            async with NokeCloud.from_settings(settings) as cloud:
                listing = await cloud.issue_quick_clicks(
                    mac, [(click.code, click.uses) for click in body.quick_clicks]
                )
        return _view(mac, listing)

    @routes.post(
        "/locks/{lock_id}/quick-clicks/revoke",
        response_model=QuickClicksView,
        summary="revoke quick clicks; they open until the lock's next online unlock removes them",
    )
    async def revoke_quick_clicks(lock_id: MacPath, body: RevokeBody) -> QuickClicksView:
        mac = parse_mac(lock_id)
        with lock_context(mac, "revoke quick clicks"):
            async with NokeCloud.from_settings(settings) as cloud:
                listing = await cloud.revoke_quick_clicks(mac, body.codes)
        return _view(mac, listing)

    @routes.get("/activity", response_model=ActivityView, summary="who opened what, and when")
    async def activity(
        lock: Annotated[list[str] | None, Query(description="a lock's MAC; repeatable")] = None,
        action: Annotated[list[str] | None, Query(description="repeatable")] = None,
        tracking_key: Annotated[list[str] | None, Query(description="repeatable")] = None,
        before: Annotated[AwareDatetime | None, Query(description="ISO 8601, with zone")] = None,
        after: Annotated[AwareDatetime | None, Query(description="ISO 8601, with zone")] = None,
    ) -> ActivityView:
        macs = [parse_mac(text) for text in lock] if lock else None
        with lock_context(macs[0] if macs and len(macs) == 1 else None, "read activity"):
            async with NokeCloud.from_settings(settings) as cloud:
                entries = await cloud.activity(
                    lock_macs=macs,
                    actions=action,
                    tracking_keys=tracking_key,
                    before=before,
                    after=after,
                )
        return ActivityView(activity=[ActivityRow(**row) for row in activity_rows(entries)])

    @routes.get("/locks", response_model=LockInfoView, summary="what the cloud knows of locks")
    async def locks(
        lock: Annotated[list[str] | None, Query(description="a MAC; repeatable")] = None,
    ) -> LockInfoView:
        macs = [parse_mac(text) for text in lock] if lock else None
        async with NokeCloud.from_settings(settings) as cloud:
            found = await cloud.locks(macs)
        return LockInfoView(locks=[LockRow(**row) for row in lock_rows(found)])

    return routes
