"""The no-drift false-alarm rate over several seeded reference/control splits, not one.

`python -m drills.calibrate` measures the light on the 24 control days of one seeded split (seed 0):
2 non-green days of 24 reads 8.3 %, with a 95 % interval of 1-27 %, which cannot say whether the
1-day target (<= 5 % non-green) is met. Each seed draws other control days (a third of Jan 1-Mar 17)
and fits another model and reference on the rest, so the seeds together judge ~4x more no-drift
windows; a day is a control day in some seeds and a reference day in others, so the windows are not
all independent (the interval below treats them as if they were: read it as a lower bound on its
width).

`python -m scripts.control_seeds [--seeds 0 1 2 3 4]` prints, per seed and in all, the validation
days and the control days and weeks judged non-green and red, with the top reasons of each
non-green window (docs/thresholds.md keeps the latest, with this command). Nothing is tuned here:
the policy and nulls are the ones the calibration reports.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

GROUPS = ("validation 1 d", "validation 7 d", "control 1 d", "control 7 d")


def main() -> None:
    from drills.calibrate import judge_raw, rate_interval, raw_window, setup, top_reason, windows

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = ap.parse_args()
    t0 = time.perf_counter()
    totals = {g: Counter() for g in GROUPS}
    lines = ["| seed | " + " | ".join(GROUPS) + " | non-green windows (top reason) |", "| --- " * (len(GROUPS) + 2) + "|"]
    for seed in args.seeds:
        s = setup(seed=seed)
        cells, flagged = [], []
        for g in GROUPS:
            c: Counter = Counter()
            for label, days in windows(s)[g]:
                verdict, _ = judge_raw(s, raw_window(s, days))
                c[verdict.status] += 1
                if verdict.status not in ("green", "not_enough_data"):
                    flagged.append(f"{g.split()[0]} {label}: {verdict.status} {top_reason(verdict)}")
            judged = sum(v for k, v in c.items() if k != "not_enough_data")
            cells.append(f"{c['yellow'] + c['red']} / {judged} ({c['red']} red)")
            totals[g].update({"judged": judged, "nongreen": c["yellow"] + c["red"], "red": c["red"]})
        lines.append(f"| {seed} | " + " | ".join(cells) + " | " + ("; ".join(flagged) or "-") + " |")
        print(f"seed {seed} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    lines.append(
        "| all | "
        + " | ".join(
            f"{t['nongreen']} / {t['judged']} ({t['nongreen'] / max(t['judged'], 1):.1%}, "
            f"95 % {rate_interval(t['nongreen'], t['judged'])}; {t['red']} red)"
            for t in totals.values()
        )
        + " | |"
    )
    print("\n".join(lines))
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
