"""Run a quick CPU calibration for real and print how well the fit predicts what it did not see.

    python benchmarks/calibration_report.py [--model smolvlm-256m] [--threads 1] [--clock thread|wall]

Prints, per component, the MAPE on training and held-out shapes, the MAPE over
every held-out shape, and the composed whole-model forward pass (ViT +
connector + every decoder layer, prefill and decode timed for real) against
the fit's prediction. These are the figures the README quotes.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from calibrate.run import run_calibration


def main() -> None:
    """Parse options, calibrate, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smolvlm-256m")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is steadiest)")
    parser.add_argument("--clock", choices=["thread", "wall"], default="thread",
                        help="CPU clock: the thread's CPU time (robust on a shared box) or wall clock")
    parser.add_argument("--full", action="store_true", help="the full sweep instead of --quick")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        profile = run_calibration(args.model, "cpu", not args.full, Path(folder) / "profile.json", None,
                                  threads=args.threads, cpu_clock=args.clock)
        wall_s = time.perf_counter() - start
    print(f"{profile.model_id}: {profile.provenance}; {profile.precision}, {profile.device.threads} thread(s), "
          f"{profile.device.timing_clock} clock, torch {profile.device.torch}; run took {wall_s:.0f} s")
    print(f"{'component':16s} {'train':>6s} {'held-out':>9s}  MAPE % (shapes)")
    for fit in profile.fits:
        held = f"{fit.holdout_mape_pct:.1f}" if fit.holdout_mape_pct is not None else "-"
        print(f"{fit.component:16s} {fit.train_mape_pct:6.1f} {held:>9s}  ({fit.train_points} + {fit.holdout_points})")
    print(f"held-out MAPE over all components: {profile.holdout_mape_pct:.1f}%")
    check = profile.composed
    if check is None:
        print("composed check skipped:", "; ".join(profile.notes))
        return
    print(f"composed forward ({check.description}): measured {check.measured_s:.3f} s, "
          f"predicted {check.predicted_s:.3f} s, error {check.error_pct:+.1f}%")
    for part, measured in check.parts_measured_s.items():
        if part != "total":
            print(f"  {part:8s} measured {measured:.3f} s  predicted {check.parts_predicted_s[part]:.3f} s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
