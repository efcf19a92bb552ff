"""Threshold of the unknown-defect branch from good parts alone.

No defect data exists for an unknown defect, so the threshold is set by the false-alarm
rate the recipe accepts (`unknown.target_false_alarm_rate`): good parts are split into
folds, each fold is scored against a bank built from the other folds (so every score
is that of an unseen good part), and the threshold is the (1 - rate) quantile of those
scores. With fewer held-out parts than the tail needs (n * rate < `MIN_TAIL`), the
empirical quantile would just be the maximum, so the tail is extrapolated from a
Gumbel fit of the scores instead (a part's score is the maximum of its anomaly map, and
maxima follow the Gumbel law), with the 90 % upper confidence bound of their spread
(16 parts underestimate a tail: measured on the demo recipe, the plain fit gave 3 %
false alarms on new good parts for a 1 % target), never below the highest score seen.
The achieved rate on the held-out parts is reported with the threshold, with its exact
(Clopper-Pearson) 95 % confidence interval; when even no false alarm on that many parts
could not show the target (n < ln(0.05) / ln(1 - target), about 3 / target: 299 parts for
1 %), enrolment warns that the rate is not shown and says how many good parts would be.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_TAIL = 2.0  # held-out scores needed above the quantile to trust the empirical one
EULER_GAMMA = 0.5772156649015329
SPREAD_CONFIDENCE = 0.9  # the Gumbel fit uses this upper confidence bound of the spread
RATE_CONFIDENCE = 0.95  # two-sided confidence of the reported false-alarm interval


@dataclass(frozen=True)
class Calibration:
    """The threshold and how it was reached; logged and stored at enrolment."""

    threshold: float  # raw anomaly distance
    target_rate: float
    achieved_rate: float  # share of held-out good parts at or above the threshold
    n_heldout: int
    method: str  # "empirical" or "gumbel-tail"
    score_max: float
    score_median: float

    @property
    def rate_interval(self) -> tuple[float, float]:
        """Clopper-Pearson interval of the false-alarm rate from the held-out parts."""
        return rate_interval(round(self.achieved_rate * self.n_heldout), self.n_heldout)

    @property
    def parts_to_show_target(self) -> int:
        """Held-out good parts needed before no false alarm among them shows the target."""
        return parts_to_show(self.target_rate)

    @property
    def enough_parts(self) -> bool:
        """Whether this many held-out parts could show the target at all."""
        return self.n_heldout >= self.parts_to_show_target

    def summary(self) -> str:
        lo, hi = self.rate_interval
        text = (f"unknown threshold {self.threshold:.4g} ({self.method}): false-alarm rate "
                f"{100 * self.achieved_rate:.2f} % on {self.n_heldout} held-out good parts, "
                f"95 % interval {100 * lo:.2f}-{100 * hi:.2f} % "
                f"(target {100 * self.target_rate:.2f} %)")
        if not self.enough_parts:
            text += (f"; {self.n_heldout} parts are too few to show the target: with no "
                     f"false alarm at all it takes {self.parts_to_show_target}")
        return text


def rate_interval(alarms: int, n: int, confidence: float = RATE_CONFIDENCE
                  ) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval of a rate seen as `alarms` of `n`."""
    from scipy.stats import beta

    a = (1 - confidence) / 2
    lo = 0.0 if alarms == 0 else float(beta.ppf(a, alarms, n - alarms + 1))
    hi = 1.0 if alarms >= n else float(beta.ppf(1 - a, alarms + 1, n - alarms))
    return lo, hi


def parts_to_show(target: float, confidence: float = RATE_CONFIDENCE) -> int:
    """The fewest parts whose interval with no alarm at all ends at or below `target`."""
    a = (1 - confidence) / 2
    n = int(np.ceil(np.log(a) / np.log1p(-target)))
    while rate_interval(0, n, confidence)[1] > target:  # guard the float edge
        n += 1
    return n


def folds(n: int, k: int, seed: int = 0) -> list[np.ndarray]:
    """Seeded split of range(n) into min(k, n) folds of near-equal size."""
    if n < 2:
        raise ValueError(f"calibration needs at least 2 good parts, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(f) for f in np.array_split(order, min(k, n))]


def threshold_for_rate(scores: np.ndarray, rate: float) -> Calibration:
    """Threshold over held-out good-part scores for a target false-alarm `rate`."""
    s = np.asarray(scores, np.float64)
    if s.ndim != 1 or len(s) < 2 or not np.isfinite(s).all():
        raise ValueError(f"need >= 2 finite held-out scores, got {s.shape}")
    if not 0 < rate < 1:
        raise ValueError(f"target false-alarm rate must be in (0, 1), got {rate}")
    if len(s) * rate >= MIN_TAIL:
        k = int(np.floor(len(s) * rate))  # held-out parts allowed to alarm
        srt = np.sort(s)
        thr = float(0.5 * (srt[-k - 1] + srt[-k]))  # between the k-th highest and the next
        method = "empirical"
    else:
        # method-of-moments Gumbel fit: the score is a maximum over a part's pixels
        from scipy.stats import chi2

        # few parts underestimate the spread: take its upper confidence bound instead
        sd = float(s.std(ddof=1)) * np.sqrt((len(s) - 1) / chi2.ppf(1 - SPREAD_CONFIDENCE,
                                                                   len(s) - 1))
        beta = sd * np.sqrt(6.0) / np.pi
        mu = float(s.mean()) - EULER_GAMMA * beta
        thr = mu - beta * float(np.log(-np.log1p(-rate)))
        thr = float(max(thr, np.nextafter(s.max(), np.inf)))
        method = "gumbel-tail"
    return Calibration(
        threshold=thr, target_rate=float(rate), achieved_rate=float(np.mean(s >= thr)),
        n_heldout=len(s), method=method, score_max=float(s.max()),
        score_median=float(np.median(s)),
    )
