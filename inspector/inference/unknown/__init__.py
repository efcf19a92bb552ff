"""Unknown-defect branch: regions no good part looks like, from good parts alone.

features.py  frame -> stride-8 tokens of the detector's encoder (Lite0, ONNX Runtime)
bank.py      greedy coreset of the good-part tokens; nearest-neighbour search backends
calibrate.py threshold from held-out good parts at the recipe's false-alarm rate
anomaly.py   token distances -> anomaly map -> regions -> `unknown` detections
branch.py    UnknownBranch: the above behind enroll / detect / state
gpu_search.py numba.cuda search kernel (NVIDIA only), metrics.py and evaluate.py
(`inspector eval-unknown`) for the MagTile evaluation.

The pipeline uses it through inspector.inference.detectors.with_unknown.WithUnknown.
"""

from inspector.inference.unknown.branch import UnknownBranch, UnknownParams

__all__ = ["UnknownBranch", "UnknownParams"]
