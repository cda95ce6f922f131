"""FakeGitHub's endpoints for the app's webhook deliveries: the list (paged by ``cursor``, as
GitHub pages it), one delivery, and a redelivery. ``fake.add_delivery`` records them."""

from __future__ import annotations

from starlette.requests import Request

from ghapp_celery.testing._replies import error_reply, int_param, validation_reply
from ghapp_celery.testing._state import FakeState
from ghapp_celery.testing._types import Credential, Endpoint, Reply

__all__ = ["DeliveryEndpoints"]


class DeliveryEndpoints:
    """``/app/hook/deliveries...``, with the app's JWT."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    def endpoints(self) -> list[Endpoint]:
        one = "/app/hook/deliveries/{delivery_id:int}"
        return [
            Endpoint("/app/hook/deliveries", self.deliveries, auth="jwt"),
            Endpoint(one, self.delivery, auth="jwt"),
            Endpoint(f"{one}/attempts", self.redeliver, ("POST",), "jwt"),
        ]

    # -- the app's webhook deliveries --------------------------------------------------------

    async def deliveries(self, request: Request, credential: Credential) -> Reply:
        per_page = min(100, max(1, int_param(request, "per_page", 30)))
        cursor = request.query_params.get("cursor")
        status = request.query_params.get("status")
        if status not in (None, "success", "failure"):
            return validation_reply("Delivery", "invalid", "status")
        items = sorted(self.state.deliveries, key=lambda d: -int(d["id"]))
        if status == "success":
            items = [d for d in items if 200 <= d["status_code"] < 400]
        elif status == "failure":
            items = [d for d in items if d["status_code"] >= 400]
        start = 0
        if cursor:
            start = next((i for i, d in enumerate(items) if str(d["id"]) == cursor), len(items))
        page = items[start : start + per_page]
        reply = Reply(200, [{k: v for k, v in d.items() if k != "request"} for d in page])
        if start + per_page < len(items):
            nxt = request.url.include_query_params(
                per_page=per_page, cursor=str(items[start + per_page]["id"])
            )
            reply.headers["link"] = f'<{nxt}>; rel="next"'
        return reply

    async def delivery(self, request: Request, credential: Credential) -> Reply:
        did = int(request.path_params["delivery_id"])
        found = [d for d in self.state.deliveries if d["id"] == did]
        return Reply(200, found[0]) if found else error_reply(404)

    async def redeliver(self, request: Request, credential: Credential) -> Reply:
        did = int(request.path_params["delivery_id"])
        found = [d for d in self.state.deliveries if d["id"] == did]
        if not found:
            return error_reply(404)
        self.state.add_delivery(found[0]["event"], guid=found[0]["guid"], redelivery=True)
        return Reply(202, {})
