"""Registration on oblique synthetic flights: corner error, failures and keypoints in the sky against the pitch.

Flights of the oblique scenario flown at fixed forward pitches (plus its wobble), registered with the sky band
ignored (the default) and not, on the scenario's own sky and on a sky with fine texture (``--sky-texture``:
broken cloud or a skyline). The model card's registration table comes from

    flock /tmp/ssp-cpu.lock python test/tools/registration_vs_tilt.py --out registration_vs_tilt.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from ssp_ros.config import RegistrationConfig
from ssp_ros.eval.registration_check import tilt_sweep
from ssp_ros.resources import share_dir
from ssp_ros.schema import load_section
from ssp_ros.synthetic.config import SyntheticConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pitches", default="0,15,30,45,60,66,72", help="forward pitches from nadir (deg)")
    parser.add_argument("--seeds", default="2000,2001", help="flights (held-aside seeds)")
    parser.add_argument("--pairs", type=int, default=30, help="frame pairs per flight")
    parser.add_argument("--sky-texture", type=float, default=60.0, help="contrast of the textured-sky variant")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    base = load_section(SyntheticConfig, share_dir() / "config" / "scenarios" / "oblique.yaml")
    variants = {"sky ignored": RegistrationConfig(), "all keypoints": RegistrationConfig(ignore_sky=False)}
    pitches = [float(p) for p in args.pitches.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for sky, scenario in (("soft", base), ("textured", replace(base, atmosphere=replace(
            base.atmosphere, sky_texture=args.sky_texture)))):
        for row in tilt_sweep(scenario, pitches, seeds, args.pairs, variants):
            rows.append({"sky": sky, **row})
            print(f"{sky:8s} pitch {row['pitch_deg']:4.0f}  {row['variant']:13s}  failed {row['failed']:2d}/"
                  f"{row['pairs']}  corner error median {row['median_px']} p95 {row['p95_px']} max {row['max_px']} px"
                  f"  sky keypoints/frame {row['sky_keypoints_per_frame']}", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
