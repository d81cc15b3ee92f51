"""Drawing the 3D blocks into a frame with a per-pixel depth test, and the 3D point behind each of their pixels.

For one camera pose, every face of every block in view that turns its outside to the camera is clipped to the
space in front of the camera (``NEAR_M``), projected, and its pixels are those whose centre it covers; the depth of
each of them comes from the face's plane, and the face keeps the pixels where it is nearer than anything drawn so
far, starting from the ground's depth (movers lie on the ground, so a wall in front of one hides it). Once the
nearest face of every pixel is known, the texels are read: a face's plane maps image to texture by the homography
``(K·R·[e1 | e2 | origin − C])⁻¹``, which gives each pixel its texel and its exact footprint, and all pixels are
read at once with the ground's filtered sampling (``sampling.MipMap.sample_points``): roofs from the world
texture, walls from one atlas of all facades.

The world outside its square is the square mirrored (``sampling.fold_reflect``), and so are its blocks: the eight
mirrored copies around the square are drawn as well (their sunlit walls mirrored with them, as the shadows on the
mirrored ground are), so that far oblique views do not show buildings turning flat at the world's edge, which the
flight keeps in the middle distance of such views. Beyond them (over a world's width past the edge, near the
horizon and in the haze) the mirrored world is flat: its roofs stay painted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from ssp_ros.synthetic.blocks import Block, Face, block_faces, mirrored
from ssp_ros.synthetic.camera import CameraPose, rotation_world_to_camera
from ssp_ros.synthetic.sampling import MipMap
from ssp_ros.synthetic.world import World

NEAR_M = 0.5  # faces are clipped to this depth in front of the camera
ATLAS_PAD = 16  # texels of each facade's own border around it in the atlas: what its coarsest level may blur in
ATLAS_LEVELS = 4  # pyramid levels of the atlas (texel up to 8 × FACADE_TEXEL_M): blur stays inside ATLAS_PAD
MAX_CORNERS = 5  # a gable wall's
SMALL_BOX_PX = 1024  # faces whose box in the image is no larger are drawn together (_draw_at_once)


@dataclass
class BlockLayer:
    """The blocks as one frame sees them."""

    faces: np.ndarray  # H×W int32: the face seen at each pixel (an index into BlockRenderer.faces), −1 none
    depth: np.ndarray  # H×W float64: depth along the optical axis (m) of what the pixel sees, blocks or not
    rgb: np.ndarray  # N×3 float32: the texture of each block pixel (faces >= 0, row-major order), before haze
    points: np.ndarray  # N×3 float64: the world point (m) each block pixel sees


def _clip_near(points: np.ndarray) -> np.ndarray:
    """A convex polygon (K×3 camera coordinates) clipped to z >= NEAR_M (Sutherland–Hodgman, one plane).

    OpenCV clips in 2D only (``cv2.clipLine``, ``cv2.intersectConvexConvex``); this clip happens before projection.
    """
    out = []
    for a, b in zip(points, np.roll(points, -1, axis=0)):
        if a[2] >= NEAR_M:
            out.append(a)
        if (a[2] >= NEAR_M) != (b[2] >= NEAR_M):
            out.append(a + (b - a) * (NEAR_M - a[2]) / (b[2] - a[2]))
    return np.array(out)


def _boxes(outlines: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Pixel boxes x0, y0, x1, y1 (end exclusive, inside the image) around N polygons (N×K×2)."""
    x0, y0 = np.maximum(np.floor(outlines.min(axis=1)).astype(int) - 1, 0).T
    x1, y1 = np.minimum(np.ceil(outlines.max(axis=1)).astype(int) + 2, [size[1], size[0]]).T
    return x0, y0, x1, y1


def _edges(outlines: np.ndarray) -> np.ndarray:
    """N×K×3 half-planes (e, f, g) of N convex polygons (N×K×2): pixel (x, y) is inside where every
    e·y − f·x + g >= 0 (none, for a polygon of no area)."""
    following = np.roll(outlines, -1, axis=1)
    e, f = following[..., 0] - outlines[..., 0], following[..., 1] - outlines[..., 1]
    g = f * outlines[..., 0] - e * outlines[..., 1]
    orientation = np.sign(np.sum(outlines[..., 0] * following[..., 1] - following[..., 0] * outlines[..., 1], axis=1))
    half_planes = np.stack([e, f, g], axis=-1) * orientation[:, None, None]
    half_planes[orientation == 0] = [0.0, 0.0, -1.0]
    return half_planes


def _draw_face(index: int, outline: np.ndarray, plane: np.ndarray, depth: np.ndarray, seen: np.ndarray) -> None:
    """Draw one face (its image outline K×2, its depth plane a, b, c, n·(P − C)) where it is nearest so far."""
    (x0,), (y0,), (x1,), (y1,) = _boxes(outline[None], depth.shape)
    if x1 <= x0 or y1 <= y0:
        return
    cols, rows = np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64)
    inside = np.ones((y1 - y0, x1 - x0), bool)
    for e, f, g in _edges(outline[None])[0]:
        inside &= (e * rows + g)[:, None] - (f * cols)[None, :] >= 0
    with np.errstate(divide="ignore", invalid="ignore"):  # rays along the plane, outside the face
        t = plane[3] / ((plane[1] * rows + plane[2])[:, None] + (plane[0] * cols)[None, :])
    box = (slice(y0, y1), slice(x0, x1))
    nearer = inside & (t > NEAR_M) & (t < depth[box])
    depth[box][nearer] = t[nearer]
    seen[box][nearer] = index


def _draw_at_once(faces: np.ndarray, outlines: np.ndarray, planes: np.ndarray, depth: np.ndarray,
                  seen: np.ndarray) -> None:
    """``_draw_face`` for many small faces at once: every pixel of every box, then the nearest face per pixel
    (most faces of a far view cover a few pixels, where a loop would spend its time on the loop)."""
    x0, y0, x1, y1 = _boxes(outlines, depth.shape)
    width, area = x1 - x0, (x1 - x0) * (y1 - y0)
    owner = np.repeat(np.arange(len(faces)), area)
    local = np.arange(area.sum()) - (np.cumsum(area) - area)[owner]
    col, row = x0[owner] + local % width[owner], y0[owner] + local // width[owner]
    half_planes = _edges(outlines)
    inside = np.ones(len(owner), bool)
    for edge in range(half_planes.shape[1]):
        e, f, g = half_planes[owner, edge].T
        inside &= e * row - f * col + g >= 0
    plane = planes[owner]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = plane[:, 3] / (plane[:, 0] * col + plane[:, 1] * row + plane[:, 2])
    keep = inside & (t > NEAR_M) & (t < depth[row, col])
    pixel, t, owner = row[keep] * depth.shape[1] + col[keep], t[keep], owner[keep]
    order = np.lexsort((t, pixel))  # by pixel, nearest first
    first = order[np.diff(pixel[order], prepend=-1) != 0]
    np.put(depth, pixel[first], t[first])
    np.put(seen, pixel[first], faces[owner[first]])


def facade_atlas(blocks: list[Block]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """All facades in one texture (rows of facades, each inside ATLAS_PAD texels of its own border: wrapped along
    the perimeter, which closes on itself, mirrored above and below) and each facade's top-left in it (col, row)."""
    padded = [cv2.copyMakeBorder(cv2.copyMakeBorder(block.facade, 0, 0, ATLAS_PAD, ATLAS_PAD, cv2.BORDER_WRAP),
                                 ATLAS_PAD, ATLAS_PAD, 0, 0, cv2.BORDER_REFLECT) for block in blocks]
    area = sum(p.shape[0] * p.shape[1] for p in padded)
    width = max(max(p.shape[1] for p in padded), int(np.sqrt(area)))
    places, x, y, shelf = [], 0, 0, 0
    for p in padded:  # shelf packing, in order
        if x + p.shape[1] > width:
            x, y, shelf = 0, y + shelf, 0
        places.append((x, y))
        x, shelf = x + p.shape[1], max(shelf, p.shape[0])
    atlas = np.zeros((y + shelf, width, 3), np.uint8)
    for p, (x, y) in zip(padded, places):
        atlas[y : y + p.shape[0], x : x + p.shape[1]] = p
    return atlas, [(x + ATLAS_PAD, y + ATLAS_PAD) for x, y in places]


class BlockRenderer:
    """The faces of a world's blocks and of their mirrored copies, and the textures they read."""

    def __init__(self, world: World, world_texture: MipMap) -> None:
        gsd, n = world.gsd_m, world.size_px
        atlas, places = facade_atlas(world.blocks)
        self._world_texture, self._atlas = world_texture, MipMap(atlas, max_levels=ATLAS_LEVELS)
        self.faces: list[Face] = []
        boxes = []  # per block copy: its 8 bounding-box corners (world metres)
        self._spans: list[range] = []  # per block copy: its faces
        edges = {-1: -0.5 * gsd, 1: (n - 0.5) * gsd}  # the planes the world is mirrored in (world pixel −0.5, n − 0.5)
        for block, (col, row) in zip(world.blocks, places):
            own = [face if face.roof else replace(face, origin=face.origin - col * face.e1 - row * face.e2)
                   for face in block_faces(block, gsd)]  # walls read the atlas where their facade sits
            for tile_x in (-1, 0, 1):
                for tile_y in (-1, 0, 1):
                    faces = own
                    if tile_x:
                        faces = [mirrored(face, 0, edges[tile_x]) for face in faces]
                    if tile_y:
                        faces = [mirrored(face, 1, edges[tile_y]) for face in faces]
                    corners = np.concatenate([face.corners for face in faces])
                    low, high = corners.min(axis=0), corners.max(axis=0)
                    boxes.append(np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1])
                                           for z in (low[2], high[2])]))
                    self._spans.append(range(len(self.faces), len(self.faces) + len(faces)))
                    self.faces += faces
        self._boxes = np.array(boxes).reshape(-1, 8, 3)
        self._corners = np.array([np.concatenate([f.corners, f.corners[-1:].repeat(MAX_CORNERS - len(f.corners), 0)])
                                  for f in self.faces]).reshape(-1, MAX_CORNERS, 3)  # padded with the last corner
        self._normals = np.array([f.normal for f in self.faces]).reshape(-1, 3)
        self._roof = np.array([f.roof for f in self.faces], bool)
        self._texture_maps = np.array([np.column_stack([f.e1, f.e2, f.origin]) for f in self.faces]).reshape(-1, 3, 3)

    def _facing(self, r: np.ndarray, centre: np.ndarray, k: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Faces that may show in the image: of a block copy whose bounding box does, turned towards the camera."""
        cam = (self._boxes - centre) @ r.T
        z = cam[..., 2]
        ahead = z > NEAR_M
        pix = cam[..., :2] / np.where(ahead, z, 1.0)[..., None] * np.diag(k)[:2] + k[:2, 2]
        low, high = pix.min(axis=1), pix.max(axis=1)
        overlaps = (high[:, 0] >= 0) & (low[:, 0] < size[1]) & (high[:, 1] >= 0) & (low[:, 1] < size[0])
        copies = np.flatnonzero(ahead.any(axis=1) & (overlaps | ~ahead.all(axis=1)))
        faces = np.array([i for copy in copies for i in self._spans[copy]], np.int64)
        if not len(faces):
            return faces
        return faces[np.einsum("fi,fi->f", self._normals[faces], centre - self._corners[faces, 0]) > 0]

    def draw(self, pose: CameraPose, k: np.ndarray, grid: np.ndarray, rays: np.ndarray,
             depth: np.ndarray) -> BlockLayer:
        """Draw the blocks seen from ``pose`` over a frame whose pixels (``grid``, H×W×2) see ``depth`` (H×W, m;
        inf for the sky) so far; ``rays`` are the pixels' camera-frame directions (H×W×3, z = 1)."""
        r = rotation_world_to_camera(pose)
        centre = np.array([pose.x, pose.y, -pose.altitude])
        depth, seen = depth.copy(), np.full(depth.shape, -1, np.int32)
        faces = self._facing(r, centre, k, depth.shape)
        cams = (self._corners[faces] - centre) @ r.T
        ahead = cams[..., 2].min(axis=1) >= NEAR_M
        outlines = cams[..., :2] / np.where(ahead[:, None], cams[..., 2], 1.0)[..., None] * np.diag(k)[:2] + k[:2, 2]
        # depth of the plane n·X = n·P along the ray X = C + t·Rᵀ·d of pixel (x, y), d = K⁻¹·(x, y, 1):
        # t = n·(P − C) / (n_c·d), where n_c·d = a·x + b·y + c
        n_c = self._normals[faces] @ r.T
        a, b = n_c[:, 0] / k[0, 0], n_c[:, 1] / k[1, 1]
        planes = np.column_stack([a, b, n_c[:, 2] - a * k[0, 2] - b * k[1, 2],
                                  np.einsum("fi,fi->f", self._normals[faces], self._corners[faces, 0] - centre)])
        x0, y0, x1, y1 = _boxes(outlines, depth.shape)
        in_image = ahead & (x1 > x0) & (y1 > y0)
        small = in_image & ((x1 - x0) * (y1 - y0) <= SMALL_BOX_PX)
        _draw_at_once(faces[small], outlines[small], planes[small], depth, seen)
        large = (in_image & ~small) | ~ahead
        for index, cam, outline, plane in zip(faces[large], cams[large], outlines[large], planes[large]):
            if cam[:, 2].min() < NEAR_M:  # partly behind the camera
                cam = _clip_near(cam[: len(self.faces[index].corners)])
                if len(cam) < 3:
                    continue
                outline = cam[:, :2] / cam[:, 2:] * np.diag(k)[:2] + k[:2, 2]
            _draw_face(index, outline, plane, depth, seen)
        drawn = seen >= 0
        return BlockLayer(faces=seen, depth=depth, rgb=self._texels(seen[drawn], grid[drawn], r, centre, k),
                          points=centre + depth[drawn][:, None] * (rays[drawn] @ r))

    def _texels(self, faces: np.ndarray, pixels: np.ndarray, r: np.ndarray, centre: np.ndarray,
                k: np.ndarray) -> np.ndarray:
        """The filtered texture (N×3 float32) at N image ``pixels`` (N×2) of ``faces`` (N,)."""
        if not len(faces):
            return np.zeros((0, 3), np.float32)
        used = np.flatnonzero(np.bincount(faces, minlength=len(self.faces)))
        which = np.cumsum(np.bincount(used, minlength=len(self.faces)))[faces] - 1  # faces → their row in used
        maps = self._texture_maps[used].copy()
        maps[:, :, 2] -= centre
        to_texture = np.linalg.inv(k @ r @ maps)[which]  # image → texture, per pixel
        p = np.column_stack([pixels, np.ones(len(pixels))])
        uvw = np.einsum("nij,nj->ni", to_texture, p)
        uv = uvw[:, :2] / uvw[:, 2:]
        # the footprint: the homography's Jacobian, [[∂u/∂x, ∂u/∂y], [∂v/∂x, ∂v/∂y]]
        jacobian = (to_texture[:, :2, :2] - uv[:, :, None] * to_texture[:, 2:, :2]) / uvw[:, 2, None, None]
        rgb = np.empty((len(faces), 3), np.float32)
        for texture, sel in ((self._world_texture, self._roof[faces]), (self._atlas, ~self._roof[faces])):
            rgb[sel] = texture.sample_points(uv[sel, 0], uv[sel, 1], jacobian[sel])
        return rgb
