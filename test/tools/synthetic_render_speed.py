"""Cost of the synthetic video's buildings as 3D blocks: world build time and time per frame, walls off and on.

For each size and view (nadir: config/scenarios/default.yaml; oblique: config/scenarios/oblique.yaml), at the
scenario's own world, flights of ``--seeds`` are built (``SyntheticVideo(...)``: the world, its mip-map and, with
walls, its blocks) and iterated for ``--frames`` frames; a frame's time is one step of the iteration: render the
next frame, its exact flow, the nuisances (wall time, and CPU time of all the process's threads). Walls off is
``building_height_m: [0, 0]`` (today's flat world, and the only choice on a checkout without the setting); on is
``--heights``. On shared, loaded cores OpenBLAS's worker threads wait on each other (an N×3 by 3×3 product took
from 1 ms to 90 ms here), so the numbers in the walls change come from one BLAS thread:

    OPENBLAS_NUM_THREADS=1 flock /tmp/ssp-cpu.lock python test/tools/synthetic_render_speed.py --out speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from ssp_ros.resources import share_dir
from ssp_ros.schema import load_section
from ssp_ros.synthetic import SyntheticVideo
from ssp_ros.synthetic.config import SyntheticConfig

VIEWS = {"nadir": "default.yaml", "oblique": "oblique.yaml"}


def measure(cfg: SyntheticConfig, seeds: list[int], frames: int) -> dict[str, float]:
    """Median world build time, median and p90 wall time per frame, and median CPU time per frame (all threads:
    on shared cores it moves less with the neighbours' load than wall time does) over the seeds' flights."""
    builds, walls, cpus = [], [], []
    for seed in seeds:
        start = time.perf_counter()
        video = SyntheticVideo(cfg, frames=frames + 1, seed=seed)
        builds.append(time.perf_counter() - start)
        frames_iter = iter(video)
        next(frames_iter)  # renders frames 0 and 1
        for _ in range(frames):
            start, cpu = time.perf_counter(), time.process_time()
            next(frames_iter)
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
    walls.sort()
    return {"build_s": round(statistics.median(builds), 2), "frame_ms": round(1000 * statistics.median(walls), 1),
            "frame_p90_ms": round(1000 * walls[int(0.9 * (len(walls) - 1))], 1),
            "frame_cpu_ms": round(1000 * statistics.median(cpus), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="368x640,736x1280", help="frame sizes HxW")
    parser.add_argument("--views", default="nadir,oblique", help=f"among {', '.join(VIEWS)}")
    parser.add_argument("--walls", default="off,on", help="off (flat buildings), on (3D blocks)")
    parser.add_argument("--heights", default="3,14", help="eaves range of the blocks with walls on (m)")
    parser.add_argument("--seeds", default="2000,3002", help="flights")
    parser.add_argument("--frames", type=int, default=6, help="timed frames per flight")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    heights = tuple(float(h) for h in args.heights.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for view in args.views.split(","):
        base = load_section(SyntheticConfig, share_dir() / "config" / "scenarios" / VIEWS[view])
        for size in args.sizes.split(","):
            height, width = (int(side) for side in size.split("x"))
            for walls in args.walls.split(","):
                world = replace(base.world, building_height_m=heights) if walls == "on" else base.world
                cfg = replace(base, height=height, width=width, world=world)
                row = {"view": view, "size": size, "walls": walls, **measure(cfg, seeds, args.frames)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
