"""The live grid's recent routing decisions, explained (`grid.routing.explain`): a compact
`x-grid-decision` header on every answer and `GET /grid/decisions/{request_id}` for the last
`RECENT` requests (their id is the answer's `x-grid-request-id`)."""

from __future__ import annotations

from collections import OrderedDict

from grid.dispatch.sinks import Sink
from grid.routing.crossing import Crossing
from grid.routing.explain import Explanation
from grid.serving.request import Request
from grid.world import World

RECENT = 4096
HEADER_CHARS = 200


class DecisionLog(Sink):
    def __init__(self, world: World, recent: int = RECENT) -> None:
        self.world = world
        self.recent = recent
        self.crossing = Crossing(world)
        self._by_id: OrderedDict[int, tuple[int, Explanation]] = OrderedDict()

    def decided(self, request: Request, explanation: Explanation, now_s: float) -> None:
        self._by_id[request.id] = (request.population, explanation)  # a retry's decision replaces the first
        self._by_id.move_to_end(request.id)
        while len(self._by_id) > self.recent:
            self._by_id.popitem(last=False)

    def header(self, request_id: int) -> str | None:
        """`RULE; ZONE; REASON`, ASCII, at most `HEADER_CHARS`."""
        entry = self._by_id.get(request_id)
        if entry is None:
            return None
        explanation = entry[1]
        text = f"{explanation.rule}; {self.world.zone_ids[explanation.winner]}; {explanation.reason}"
        return text.replace("−", "-").encode("ascii", "replace").decode()[:HEADER_CHARS]

    def get(self, request_id: int) -> dict | None:
        entry = self._by_id.get(request_id)
        if entry is None:
            return None
        population, explanation = entry
        body = explanation.to_dict(self.world.zone_ids)
        crossed = self.crossing(population, explanation)
        home = self.world.region_ids[int(self.world.home_region[population])]
        return {"request_id": request_id, "population": self.world.population_ids[population], "home_region": home,
                "crossed_because": crossed or None, **body}  # fmt: skip
