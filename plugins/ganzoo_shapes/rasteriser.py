"""A differentiable rasteriser for covers made of shapes, and the same covers as SVG.

Coordinates are the unit square (x right, y down); a pixel of an S px render is 1/S wide and samples its centre.
Every shape has a signed distance (negative inside); its coverage of a pixel is ``clamp(0.5 - d * S, 0, 1)``: a
ramp one pixel wide across the edge, at any size, which is how an SVG renderer's antialiasing looks. Shapes are
composited with "over" in order of their depth (the order is not differentiable; everything else is). Large
renders go tile by tile, each tile measuring only the shapes whose bounding boxes reach it: time follows the
pixels the shapes cover, and memory one tile.

Background: a linear gradient (``c0`` to ``c1`` along ``angle``, through the centre, over the unit square's
width) under a radial one (``c2`` at ``centre`` to ``c3`` at ``radius``) of opacity ``mix``. Shapes: ellipses
(centre, radii, rotation), rectangles (centre, half sides, rotation), triangles (three corners) and strokes (a
quadratic Bezier curve of a width, round caps), each with a colour and an opacity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

KINDS = ("ellipse", "rectangle", "triangle", "stroke")
TILE = 256
"""Side of the square tiles a render is computed in."""
BEND = 2.4
"""The largest |P0 - 2 P1 + P2| a stroke's control points allow (they lie in [-0.1, 1.1])."""


@dataclass
class Shapes:
    """A batch of covers as shapes; every tensor's first dimension is the cover. Colours are RGB in [0, 1].

    ``background``: (B, 4, 3) colours c0..c3, ``angle`` (B,), ``centre`` (B, 2), ``radius`` (B,), ``mix`` (B,).
    ``kind``: the kind of each of the K shapes (a tuple of KINDS, the same for every cover); ``geometry`` (B, K, 6)
    in the kind's own terms (ellipse and rectangle: x, y, half width, half height, cos, sin; triangle: three
    corners; stroke: three control points), ``width`` (B, K) a stroke's width, ``colour`` (B, K, 3),
    ``opacity`` (B, K), ``depth`` (B, K): shapes are drawn from the lowest depth up.
    """

    background: torch.Tensor
    angle: torch.Tensor
    centre: torch.Tensor
    radius: torch.Tensor
    mix: torch.Tensor
    kind: tuple[str, ...]
    geometry: torch.Tensor
    width: torch.Tensor
    colour: torch.Tensor
    opacity: torch.Tensor
    depth: torch.Tensor

    def __len__(self) -> int:
        return self.background.shape[0]

    def pick(self, slots: list[int]) -> Shapes:
        """The same covers with only the shapes in ``slots``."""
        fields = {name: value[:, slots] for name, value in vars(self).items()
                  if name in ("geometry", "width", "colour", "opacity", "depth")}
        return Shapes(self.background, self.angle, self.centre, self.radius, self.mix,
                      tuple(self.kind[i] for i in slots), **fields)

    def bounds(self) -> torch.Tensor:
        """(B, K, 4): every shape's box (left, top, right, bottom) in unit coordinates."""
        g = self.geometry
        boxed = torch.tensor([kind in ("ellipse", "rectangle") for kind in self.kind], device=g.device)[:, None]
        reach = torch.sqrt(g[..., 2] ** 2 + g[..., 3] ** 2)
        around = torch.stack([g[..., 0] - reach, g[..., 1] - reach, g[..., 0] + reach, g[..., 1] + reach], dim=-1)
        xs, ys = g[..., 0:6:2], g[..., 1:6:2]
        pad = torch.where(torch.tensor([kind == "stroke" for kind in self.kind], device=g.device),
                          self.width / 2, torch.zeros_like(self.width))[..., None]
        hull = torch.stack([xs.amin(-1), ys.amin(-1), xs.amax(-1), ys.amax(-1)], dim=-1) + pad * torch.tensor(
            [-1.0, -1.0, 1.0, 1.0], device=g.device)
        return torch.where(boxed, around, hull)


def coverage_of(distance: torch.Tensor, size: int) -> torch.Tensor:
    return (0.5 - distance * size).clamp(0.0, 1.0)


def rotated_distance(x, y, geometry, kind: str) -> torch.Tensor:
    """Signed distance to an ellipse or a rectangle at every point (x, y), per cover and shape."""
    cx, cy, a, b, cos, sin = (geometry[..., i, None, None] for i in range(6))
    u = (x - cx) * cos + (y - cy) * sin
    v = -(x - cx) * sin + (y - cy) * cos
    if kind == "rectangle":
        qx, qy = u.abs() - a, v.abs() - b
        outside = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2 + 1e-12)
        return torch.where((qx > 0) | (qy > 0), outside, torch.maximum(qx, qy))
    k0 = torch.sqrt((u / a) ** 2 + (v / b) ** 2 + 1e-12)
    k1 = torch.sqrt((u / a ** 2) ** 2 + (v / b ** 2) ** 2 + 1e-12)
    return k0 * (k0 - 1.0) / k1


def segment_distance2(x, y, ax, ay, bx, by) -> torch.Tensor:
    """Squared distance from (x, y) to the segment from (ax, ay) to (bx, by)."""
    dx, dy = bx - ax, by - ay
    t = (((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy + 1e-12)).clamp(0.0, 1.0)
    return (x - ax - t * dx) ** 2 + (y - ay - t * dy) ** 2


def triangle_distance(x, y, geometry) -> torch.Tensor:
    """Signed distance to the triangle of corners geometry[..., 0:6] (either winding)."""
    corners = [(geometry[..., 2 * i, None, None], geometry[..., 2 * i + 1, None, None]) for i in range(3)]
    edges = list(zip(corners, corners[1:] + corners[:1]))
    distance = torch.sqrt(torch.stack([segment_distance2(x, y, ax, ay, bx, by) for (ax, ay), (bx, by) in edges]
                                      ).amin(dim=0) + 1e-12)
    sides = torch.stack([(bx - ax) * (y - ay) - (by - ay) * (x - ax) for (ax, ay), (bx, by) in edges])
    inside = (sides >= 0).all(dim=0) | (sides <= 0).all(dim=0)
    return torch.where(inside, -distance, distance)


def stroke_segments(size: int) -> int:
    """How many straight pieces a curve is measured as at ``size`` px: a chord of a quadratic curve strays from
    it by at most |P0 - 2 P1 + P2| / (4 n^2), under a quarter of a pixel here."""
    return max(8, math.ceil(math.sqrt(BEND * size)))


def bezier_points(geometry: torch.Tensor, segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of ``segments`` + 1 points along each quadratic curve: (..., segments + 1)."""
    t = torch.linspace(0.0, 1.0, segments + 1, device=geometry.device, dtype=geometry.dtype)
    weights = torch.stack([(1 - t) ** 2, 2 * (1 - t) * t, t ** 2])
    return geometry[..., 0:6:2] @ weights, geometry[..., 1:6:2] @ weights


def stroke_distance(x, y, geometry, width, size: int) -> torch.Tensor:
    """Signed distance to each stroke over the pixel centres x (1, 1, 1, columns) and y (1, 1, rows, 1), from the
    pieces of the curves that come within a pixel of them (the others cannot be nearest where coverage is)."""
    px, py = bezier_points(geometry, stroke_segments(size))
    reach = (width / 2)[..., None] + 1.0 / size
    near = ((torch.minimum(px[..., :-1], px[..., 1:]) - reach <= x.max())
            & (torch.maximum(px[..., :-1], px[..., 1:]) + reach >= x.min())
            & (torch.minimum(py[..., :-1], py[..., 1:]) - reach <= y.max())
            & (torch.maximum(py[..., :-1], py[..., 1:]) + reach >= y.min())).flatten(0, -2).any(dim=0)
    nearest = torch.full((*geometry.shape[:2], y.shape[2], x.shape[3]), 4.0, device=x.device, dtype=x.dtype)
    for i in near.nonzero()[:, 0].tolist():
        piece = segment_distance2(x, y, *(p[..., j, None, None] for j in (i, i + 1) for p in (px, py)))
        nearest = torch.minimum(nearest, piece)
    return torch.sqrt(nearest + 1e-12) - width[..., None, None] / 2


def shape_coverage(shapes: Shapes, x: torch.Tensor, y: torch.Tensor, size: int) -> torch.Tensor:
    """(B, K, rows, columns) coverage of every shape over the pixel centres x (columns,) and y (rows,)."""
    x, y = x[None, None, None, :], y[None, None, :, None]
    covers = []
    for kind in KINDS:
        slots = [i for i, k in enumerate(shapes.kind) if k == kind]
        if not slots:
            continue
        geometry = shapes.geometry[:, slots]
        if kind == "triangle":
            distance = triangle_distance(x, y, geometry)
        elif kind == "stroke":
            distance = stroke_distance(x, y, geometry, shapes.width[:, slots], size)
        else:
            distance = rotated_distance(x, y, geometry, kind)
        covers.append((slots, coverage_of(distance, size)))
    order = [i for slots, _ in covers for i in slots]
    stacked = torch.cat([coverage for _, coverage in covers], dim=1)
    return stacked[:, torch.tensor(order, device=stacked.device).argsort()]


def background_of(shapes: Shapes, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, 3, rows, columns): the linear gradient with the radial one over it."""
    x, y = x[None, None, :], y[None, :, None]
    cos, sin = (f(shapes.angle)[:, None, None] for f in (torch.cos, torch.sin))
    along = (0.5 + (x - 0.5) * cos + (y - 0.5) * sin).clamp(0.0, 1.0)
    cx, cy = shapes.centre[:, 0, None, None], shapes.centre[:, 1, None, None]
    out = (torch.sqrt((x - cx) ** 2 + (y - cy) ** 2 + 1e-12) / shapes.radius[:, None, None]).clamp(0.0, 1.0)
    c = shapes.background[..., None, None]
    linear = c[:, 0] + (c[:, 1] - c[:, 0]) * along[:, None]
    radial = c[:, 2] + (c[:, 3] - c[:, 2]) * out[:, None]
    mix = shapes.mix[:, None, None, None]
    return linear * (1 - mix) + radial * mix


def render(shapes: Shapes, size: int) -> torch.Tensor:
    """(B, 3, size, size) images in [0, 1], computed tile by tile."""
    centres = (torch.arange(size, device=shapes.geometry.device, dtype=shapes.geometry.dtype) + 0.5) / size
    bounds = shapes.bounds()
    margin = 1.0 / size
    rows_of_tiles = []
    for top in range(0, size, TILE):
        rows = centres[top:top + TILE]
        tiles = []
        for left in range(0, size, TILE):
            columns = centres[left:left + TILE]
            tile = background_of(shapes, columns, rows)
            reaches = ((bounds[..., 0] <= columns[-1] + margin) & (bounds[..., 2] >= columns[0] - margin)
                       & (bounds[..., 1] <= rows[-1] + margin) & (bounds[..., 3] >= rows[0] - margin)).any(dim=0)
            slots = reaches.nonzero()[:, 0].tolist()
            if slots:
                tile = composited(tile, shapes.pick(slots), columns, rows, size)
            tiles.append(tile)
        rows_of_tiles.append(torch.cat(tiles, dim=3))
    return torch.cat(rows_of_tiles, dim=2)


def composited(image: torch.Tensor, shapes: Shapes, x: torch.Tensor, y: torch.Tensor, size: int) -> torch.Tensor:
    """``image`` (B, 3, rows, columns) with ``shapes`` drawn over it "over", from the lowest depth up."""
    order = shapes.depth.argsort(dim=1)
    coverage = shape_coverage(shapes, x, y, size)
    coverage = coverage.gather(1, order[..., None, None].expand(-1, -1, *coverage.shape[2:]))
    colour = shapes.colour.gather(1, order[..., None].expand(-1, -1, 3))[..., None, None]
    opacity = shapes.opacity.gather(1, order)[..., None, None]
    for k in range(coverage.shape[1]):
        alpha = (coverage[:, k] * opacity[:, k])[:, None]
        image = image * (1 - alpha) + colour[:, k] * alpha
    return image


def svg_of(shapes: Shapes, index: int, size: int) -> str:
    """Cover ``index`` of ``shapes`` as an SVG document of ``size`` x ``size`` px (its drawing in a 1 x 1 view
    box): the background's two gradients, then the shapes from the lowest depth up."""
    def colour(rgb) -> str:
        return "#" + "".join(f"{round(float(v) * 255):02x}" for v in rgb.clamp(0, 1))

    def number(value) -> str:
        return f"{float(value):.6g}"

    c = shapes.background[index]
    angle = float(shapes.angle[index])
    dx, dy = math.cos(angle) / 2, math.sin(angle) / 2
    cx, cy = shapes.centre[index]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 1 1">',
             "<defs>",
             f'<linearGradient id="linear" gradientUnits="userSpaceOnUse" x1="{number(0.5 - dx)}" '
             f'y1="{number(0.5 - dy)}" x2="{number(0.5 + dx)}" y2="{number(0.5 + dy)}">'
             f'<stop offset="0" stop-color="{colour(c[0])}"/><stop offset="1" stop-color="{colour(c[1])}"/>'
             "</linearGradient>",
             f'<radialGradient id="radial" gradientUnits="userSpaceOnUse" cx="{number(cx)}" cy="{number(cy)}" '
             f'r="{number(shapes.radius[index])}"><stop offset="0" stop-color="{colour(c[2])}"/>'
             f'<stop offset="1" stop-color="{colour(c[3])}"/></radialGradient>',
             "</defs>",
             '<rect width="1" height="1" fill="url(#linear)"/>',
             f'<rect width="1" height="1" fill="url(#radial)" fill-opacity="{number(shapes.mix[index])}"/>']
    for k in shapes.depth[index].argsort().tolist():
        g = shapes.geometry[index, k].tolist()
        paint = f'fill="{colour(shapes.colour[index, k])}" fill-opacity="{number(shapes.opacity[index, k])}"'
        kind = shapes.kind[k]
        if kind in ("ellipse", "rectangle"):
            turn = math.degrees(math.atan2(g[5], g[4]))
            place = f'transform="translate({number(g[0])} {number(g[1])}) rotate({number(turn)})"'
            if kind == "ellipse":
                parts.append(f'<ellipse {place} rx="{number(g[2])}" ry="{number(g[3])}" {paint}/>')
            else:
                parts.append(f'<rect {place} x="{number(-g[2])}" y="{number(-g[3])}" width="{number(2 * g[2])}" '
                             f'height="{number(2 * g[3])}" {paint}/>')
        elif kind == "triangle":
            points = " ".join(number(v) for v in g)
            parts.append(f'<polygon points="{points}" {paint}/>')
        else:
            stroke = paint.replace("fill=", "stroke=").replace("fill-opacity=", "stroke-opacity=")
            parts.append(f'<path d="M {number(g[0])} {number(g[1])} Q {number(g[2])} {number(g[3])} '
                         f'{number(g[4])} {number(g[5])}" fill="none" {stroke} '
                         f'stroke-width="{number(shapes.width[index, k])}" stroke-linecap="round"/>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
