"""The world's land outline for the demo's map: Natural Earth 1:110m land (public domain), from the
`world-atlas` 2.0.2 npm package's land-110m.json (TopoJSON, ISC licence, © Mike Bostock), decoded to
polygon rings of (lon, lat) rounded to 0.1° and stored beside this module (`land_110m.json`, ≈60 KB).

    npm pack world-atlas@2.0.2 && tar -xzf world-atlas-2.0.2.tgz
    python -m grid.demo.land_outline package/land-110m.json   # rewrites grid/demo/land_110m.json
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path

OUTLINE = Path(__file__).with_name("land_110m.json")


@cache
def land_rings() -> list[list[tuple[float, float]]]:
    """The land's polygon rings, each a list of (lon, lat) in degrees."""
    return [[(lon, lat) for lon, lat in ring] for ring in json.loads(OUTLINE.read_text())["rings"]]


def decode_topojson(topology: dict) -> list[list[tuple[float, float]]]:
    """Every ring of the topology's `land` object: arcs delta-decoded and de-quantized, joined in order
    (a negative index is arc ~i reversed), as TopoJSON specifies."""
    (sx, sy), (tx, ty) = topology["transform"]["scale"], topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((round(x * sx + tx, 1), round(y * sy + ty, 1)))
        arcs.append(points)
    rings = []
    for geometry in topology["objects"]["land"]["geometries"]:
        polygons = geometry["arcs"] if geometry["type"] == "MultiPolygon" else [geometry["arcs"]]
        for polygon in polygons:
            for ring_arcs in polygon:
                ring: list[tuple[float, float]] = []
                for index in ring_arcs:
                    points = arcs[index] if index >= 0 else arcs[~index][::-1]
                    ring.extend(points[1:] if ring else points)
                deduplicated = [p for i, p in enumerate(ring) if i == 0 or p != ring[i - 1]]
                if len(deduplicated) >= 4:
                    rings.append(deduplicated)
    return rings


def main(path: str) -> None:
    rings = decode_topojson(json.loads(Path(path).read_text()))
    source = "Natural Earth 1:110m land (public domain) via world-atlas 2.0.2 land-110m.json (ISC, Mike Bostock)"
    OUTLINE.write_text(json.dumps({"source": source, "rings": rings}, separators=(",", ":")))
    print(f"{OUTLINE}: {len(rings)} rings, {sum(map(len, rings))} points, {OUTLINE.stat().st_size:,} bytes")


if __name__ == "__main__":
    main(sys.argv[1])
