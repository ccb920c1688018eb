"""The Python API in a few lines: fit a detector of the spoken word "zero", score clips,
save it as a run directory the command line reads, and load it back.

Run: ``python examples/python_api.py [DATA]`` (default: the embedded synthetic data set;
``../shared/data/fsdd/recordings`` with ``--class 0`` semantics: pass ``--target 0``).
"""

import argparse
import tempfile
from pathlib import Path

from audioar import Detector
from audioar.data.synth import default_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=None)
    parser.add_argument("--target", default="zero")
    args = parser.parse_args()
    data = args.data or default_dataset()

    det = Detector(model="maf", seed=0).fit(data, target=args.target)
    print(det, "threshold", round(det.threshold_, 4), "classes", det.classes_)

    clips = sorted(Path(data).rglob("*.wav"))[:8]
    table = det.score(clips)  # the columns of `audioar score`
    print(table[["path", "anomaly_score", "p_value", "is_anomaly"]].to_string(index=False))
    print("decision_function:", det.decision_function(clips).round(3))
    print("predict:", det.predict(clips))

    run = Path(tempfile.mkdtemp()) / "run"
    det.save(run)  # `audioar score clips/ --model RUN` reads it
    again = Detector.load(run)
    assert (again.decision_function(clips) == det.decision_function(clips)).all()
    print(f"saved and loaded {run}")


if __name__ == "__main__":
    main()
